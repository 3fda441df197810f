"""How far each organization's files have come: counted in the database.

For the operator page: per organization, the active file resources
(``upload`` and ``s3_upload``) of active and draft datasets, by where
their data are. One query for the whole site, counted by PostgreSQL, so
the cost does not grow with the resources in Python.
"""
from __future__ import annotations

from dataclasses import dataclass

import ckan.model as model
import sqlalchemy as sa

from ckanext.dcor_depot.records import ckan_data
from ckanext.dcor_depot.records.inventory import (
    DATASET_STATES,
    FILE_URL_TYPES,
)

#: The values ``tk.asbool`` takes for true, as ``s3_available`` may be a
#: JSON boolean (the atomic merge) or a string (a sysadmin's edit).
_TRUE_TEXTS = ("true", "yes", "on", "y", "t", "1")


@dataclass(frozen=True)
class StateCounts:
    """Active file resources of one organization (name "" for datasets
    without one)."""
    organization: str
    #: every active file resource of an active or draft dataset
    files: int = 0
    #: not in the object store (``s3_available`` not set)
    depot_only: int = 0
    in_store: int = 0
    #: with ``s3_verified_at``: the stored bytes were checked
    verified: int = 0
    #: of a public, active dataset
    public: int = 0


_COUNTS = sa.text(f"""
WITH files AS (
  SELECT COALESCE(g.name, '') AS organization,
         {ckan_data.IS_PUBLIC_SQL} AS public,
         COALESCE(NULLIF(r.extras, ''), '{{}}')::jsonb AS fields
  FROM resource AS r
  JOIN package AS p ON p.id = r.package_id
  LEFT JOIN "group" AS g ON g.id = p.owner_org
  WHERE r.state = 'active' AND p.state IN :dataset_states
    AND r.url_type IN :url_types
), marked AS (
  SELECT organization, public,
         COALESCE(lower(fields->>'s3_available') IN :true_texts, false)
           AS stored,
         COALESCE(fields->>:verified_at, '') <> '' AS verified
  FROM files
)
SELECT organization, count(*) AS files,
       count(*) FILTER (WHERE NOT stored) AS depot_only,
       count(*) FILTER (WHERE stored) AS in_store,
       count(*) FILTER (WHERE verified) AS verified,
       count(*) FILTER (WHERE public) AS public
FROM marked GROUP BY organization ORDER BY organization
""").bindparams(sa.bindparam("dataset_states", expanding=True),
                sa.bindparam("url_types", expanding=True),
                sa.bindparam("true_texts", expanding=True))


def state_counts() -> dict[str, StateCounts]:
    """``{organization name: counts}`` as committed now (organizations
    without file resources are not listed)."""
    with model.meta.engine.connect() as fresh:
        rows = fresh.execute(_COUNTS, {
            "dataset_states": list(DATASET_STATES),
            "url_types": list(FILE_URL_TYPES),
            "true_texts": list(_TRUE_TEXTS),
            "verified_at": ckan_data.VERIFIED_AT})
        return {row.organization: StateCounts(
            organization=row.organization, files=row.files,
            depot_only=row.depot_only, in_store=row.in_store,
            verified=row.verified, public=row.public) for row in rows}
