"""Every resource of the site, read straight from the database.

The commands must see drafts and private datasets, and must not depend on
the search index (which may lag behind or, in development, be a stub), so
they list resources with one query on CKAN's model.
"""
from __future__ import annotations

import datetime
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass
from typing import Any

import ckan.model as model
import ckan.plugins.toolkit as tk
import sqlalchemy as sa

from ckanext.dcor_depot import names
from ckanext.dcor_depot.records import ckan_data

#: Dataset states whose resources the commands handle (deleted ones not).
DATASET_STATES = ("active", "draft")
#: ``url_type`` of resources with a file (the others are links).
FILE_URL_TYPES = names.FILE_URL_TYPES


@dataclass(frozen=True, slots=True)
class ResourceRecord:
    """What the commands need to know about a resource and its dataset."""
    id: str
    name: str
    dataset_id: str
    dataset_name: str
    owner_org: str | None
    #: "upload" for files stored by CKAN; empty for links
    url_type: str
    s3_available: bool
    s3_url: str | None
    sha256: str | None
    #: when the stored bytes were last verified (``s3_verified_at``)
    verified_at: str | None = None


def check_modified_days(days: int) -> int:
    """Return ``days`` if it is -1 (all) or not negative, else raise."""
    if days < -1:
        raise ValueError(f"--modified-days must be -1 (all datasets) or at "
                         f"least 0, not {days}")
    return days


def utc_now() -> datetime.datetime:
    """The clock of ``--modified-days`` (tests replace it)."""
    return datetime.datetime.now(datetime.timezone.utc)


def modified_since(days: int, now: datetime.datetime | None = None
                   ) -> datetime.datetime | None:
    """Cut-off of ``--modified-days``: midnight (UTC) of the date ``days``
    days before today (0: today), naive UTC as CKAN stores
    ``metadata_modified``; None for -1 (all datasets).

    ``now`` (default :func:`utc_now`; naive means UTC) decides "today".
    Whole dates, not hours: a daily run with N=1 sees everything since
    the start of yesterday, whenever it starts.
    """
    check_modified_days(days)
    if days == -1:
        return None
    now = utc_now() if now is None else now
    if now.tzinfo is not None:
        now = now.astimezone(datetime.timezone.utc).replace(tzinfo=None)
    midnight = datetime.datetime.combine(now.date(), datetime.time())
    return midnight - datetime.timedelta(days=days)


def resource_records(modified_days: int = -1,
                     dataset_id: str | None = None,
                     now: datetime.datetime | None = None,
                     resource_ids: Collection[str] | None = None
                     ) -> list[ResourceRecord]:
    """Active resources of active and draft datasets, public or private.

    ``modified_days`` limits them to datasets whose ``metadata_modified``
    is on or after midnight (UTC) of the date N days before today (see
    :func:`modified_since`, ``now`` is its clock); ``dataset_id`` to one
    dataset; ``resource_ids`` to these resources. The list is complete
    before the caller starts changing things, so updates made while
    working through it do not disturb the iteration.

    Read as rows, not as CKAN's model objects: at 100,000 resources
    those would hold about 5 KiB each in the session.
    """
    res, pkg = model.resource_table, model.package_table
    query = (sa.select(res.c.id, res.c.name, res.c.url_type, res.c.extras,
                       pkg.c.id.label("pid"), pkg.c.name.label("pname"),
                       pkg.c.owner_org)
             .join(pkg, pkg.c.id == res.c.package_id)
             .where(res.c.state == "active")
             .where(pkg.c.state.in_(DATASET_STATES)))
    since = modified_since(modified_days, now)
    if since is not None:
        query = query.where(pkg.c.metadata_modified >= since)
    if dataset_id is not None:
        query = query.where(pkg.c.id == dataset_id)
    if resource_ids is not None:
        query = query.where(res.c.id.in_(list(resource_ids)))
    query = query.order_by(pkg.c.name, res.c.position, res.c.id)
    return [_record(row) for row in model.Session.execute(query)]


def resource_ids() -> list[str]:
    """Ids of every resource the commands handle."""
    res, pkg = model.resource_table, model.package_table
    query = (sa.select(res.c.id)
             .join(pkg, pkg.c.id == res.c.package_id)
             .where(res.c.state == "active")
             .where(pkg.c.state.in_(DATASET_STATES))
             .order_by(pkg.c.name, res.c.position, res.c.id))
    return [row.id for row in model.Session.execute(query)]


def _record(row: Any) -> ResourceRecord:
    extras = ckan_data.resource_extras(row.extras)
    return ResourceRecord(
        id=row.id,
        name=row.name or "",
        dataset_id=row.pid,
        dataset_name=row.pname,
        owner_org=row.owner_org,
        url_type=row.url_type or "",
        s3_available=tk.asbool(extras.get("s3_available", False)),
        s3_url=extras.get("s3_url") or None,
        sha256=extras.get("sha256") or None,
        verified_at=extras.get(ckan_data.VERIFIED_AT) or None,
    )


@dataclass(frozen=True, slots=True)
class AuditRecord:
    """A resource (any state) as the audit compares it with the storage."""
    id: str
    state: str
    url_type: str
    size: int | None
    #: naive UTC, as CKAN stores it
    created: datetime.datetime | None
    dataset_id: str
    dataset_name: str
    dataset_state: str
    private: bool
    dataset_modified: datetime.datetime | None
    owner_org: str | None
    org_name: str | None
    s3_available: bool
    s3_url: str | None
    sha256: str | None
    moved_from: str | None
    verified_at: str | None
    #: the resource's own ``metadata_modified`` (naive UTC)
    resource_modified: datetime.datetime | None = None

    @property
    def has_file(self) -> bool:
        """An uploaded file (not a link), in an active resource of an
        active or draft dataset."""
        return (self.state == "active" and self.dataset_state in
                DATASET_STATES and self.url_type in FILE_URL_TYPES)


def audit_records(org_ids: Iterable[str] | None = None
                  ) -> list[AuditRecord]:
    """Every resource of the site (of the organizations ``org_ids``),
    deleted ones included, freshly read in one query."""
    res, pkg, grp = model.resource_table, model.package_table, \
        model.group_table
    query = (sa.select(res.c.id, res.c.state, res.c.url_type, res.c.size,
                       res.c.created, res.c.extras,
                       res.c.metadata_modified.label("rmodified"),
                       pkg.c.id.label("pid"),
                       pkg.c.name.label("pname"),
                       pkg.c.state.label("pstate"), pkg.c.private,
                       pkg.c.metadata_modified, pkg.c.owner_org,
                       grp.c.name.label("gname"))
             .join(pkg, pkg.c.id == res.c.package_id)
             .outerjoin(grp, grp.c.id == pkg.c.owner_org)
             .order_by(pkg.c.name, res.c.position, res.c.id))
    if org_ids is not None:
        query = query.where(pkg.c.owner_org.in_(sorted(set(org_ids))))
    # The dataset's values once per dataset, not once per resource
    # (100,000 resources of 1,000 datasets: tens of MiB).
    shared: dict[Any, Any] = {}
    # Streamed (a server-side cursor in a transaction): the rows and their
    # decoded extras are not all in memory at once.
    with model.meta.engine.connect() as fresh, fresh.begin():
        rows = fresh.execution_options(stream_results=True,
                                       max_row_buffer=1000).execute(query)
        return [_audit_record(row, shared.setdefault) for row in rows]


def _audit_record(row: Any, same: Callable[[Any, Any], Any]
                  ) -> AuditRecord:
    extras = ckan_data.resource_extras(row.extras)

    def text(name: str) -> str | None:
        value = extras.get(name)
        return value if isinstance(value, str) and value else None

    return AuditRecord(
        id=row.id, state=same(row.state or "", row.state or ""),
        url_type=same(row.url_type or "", row.url_type or ""),
        size=row.size, created=row.created,
        dataset_id=same(row.pid, row.pid),
        dataset_name=same(row.pname, row.pname),
        dataset_state=same(row.pstate or "", row.pstate or ""),
        private=bool(row.private),
        dataset_modified=same(row.metadata_modified, row.metadata_modified),
        owner_org=same(row.owner_org or None, row.owner_org or None),
        org_name=same(row.gname, row.gname),
        s3_available=tk.asbool(extras.get("s3_available", False)),
        s3_url=text("s3_url"), sha256=text("sha256"),
        moved_from=text(ckan_data.MOVED_FROM),
        verified_at=text(ckan_data.VERIFIED_AT),
        resource_modified=row.rmodified)

