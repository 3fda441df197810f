"""Fresh CKAN state for jobs and commands, read and written as the site user.

Jobs receive ids only and fetch everything here, so they never act on a
stale copy. The plugin's own fields are written with
:func:`merge_resource_fields`, one statement merging them into the
resources' extras in the database, followed by a search-index update.
Unlike ``package_update``/``package_revise``, which write back the whole
dataset as read at the start, it cannot undo a change committed
meanwhile (a dataset made private while a job ran stays private), and
several jobs updating one dataset keep each other's fields.
"""
from __future__ import annotations

import contextlib
import dataclasses
import datetime
import json
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import ckan.model as model
import ckan.plugins.toolkit as tk
import sqlalchemy as sa
from ckan.lib import search

from ckanext.dcor_depot import names

#: Plugin-owned resource field: the ``s3_url`` of the data before a move
#: switched ``s3_url`` to the copies, until the old objects are deleted.
MOVED_FROM = "s3_moved_from"
#: When the stored object's bytes were last checked against ``sha256``
#: (ISO 8601, UTC): by the verified upload, the SHA256 job or the deep audit.
VERIFIED_AT = "s3_verified_at"


def verified_now() -> dict[str, str]:
    """The field recording that the stored bytes matched ``sha256`` now."""
    return {VERIFIED_AT: datetime.datetime.now(
        datetime.timezone.utc).isoformat(timespec="seconds")}

#: Organizations whose data are placed in depots by hand.
HAND_MANAGED_ORGANIZATIONS = names.HAND_MANAGED_ORGANIZATIONS


def site_context(**extra: Any) -> dict[str, Any]:
    site_user = tk.get_action("get_site_user")({"ignore_auth": True}, {})
    context = {"ignore_auth": True, "user": site_user["name"]}
    context.update(extra)
    return context


def package_show(dataset_id: str) -> dict[str, Any]:
    return tk.get_action("package_show")(site_context(), {"id": dataset_id})


@dataclass(frozen=True)
class ResourceFacts:
    """What a job needs to know of a resource and its dataset."""
    id: str
    name: str
    state: str
    #: the resource's extras (plugin fields such as ``s3_url``)
    extras: Mapping[str, Any]
    dataset_id: str
    dataset_name: str
    owner_org: str | None
    #: the name of the owner organization ("" without one)
    org_name: str
    #: the name of the dataset's creator ("" if unknown)
    creator_name: str


def resource_facts(resource_id: str) -> ResourceFacts | None:
    """A resource and its dataset as committed now (None: no such
    resource), in one query: unlike ``resource_show``, which dictizes the
    whole dataset, the cost does not grow with the dataset's resources."""
    res, pkg = model.resource_table, model.package_table
    grp, usr = model.group_table, model.user_table
    query = (sa.select(res.c.id, res.c.name, res.c.state, res.c.extras,
                       pkg.c.id.label("dataset_id"),
                       pkg.c.name.label("dataset_name"), pkg.c.owner_org,
                       grp.c.name.label("org_name"),
                       usr.c.name.label("creator_name"))
             .join(pkg, pkg.c.id == res.c.package_id)
             .outerjoin(grp, grp.c.id == pkg.c.owner_org)
             .outerjoin(usr, usr.c.id == pkg.c.creator_user_id)
             .where(res.c.id == resource_id))
    with model.meta.engine.connect() as fresh:
        row = fresh.execute(query).first()
    if row is None:
        return None
    return ResourceFacts(
        id=row.id, name=row.name or "", state=row.state,
        extras=resource_extras(row.extras), dataset_id=row.dataset_id,
        dataset_name=row.dataset_name, owner_org=row.owner_org or None,
        org_name=row.org_name or "", creator_name=row.creator_name or "")


def revise_resource(dataset_id: str, resource_id: str,
                    changes: dict[str, Any]) -> None:
    """Change a few fields of one resource without touching the rest,
    then update the dataset's search-index entry."""
    merge_resource_fields({dataset_id: {resource_id: changes}})
    reindex_dataset(dataset_id)


def merge_resource_fields(changes: dict[str, dict[str, dict[str, Any]]]
                          ) -> set[str]:
    """Merge fields into resources' extras: ``{dataset id: {resource id:
    fields}}``. Returns the ids of the resources changed (a resource
    deleted or moved meanwhile is not).

    One statement updates every resource, merging the JSON in the
    database: other fields are kept, also those another atomic merge
    writes at the same time. One transaction covers all datasets. For bulk
    work where a ``package_revise`` per resource would dominate; the
    search index is the caller's (:func:`reindex_dataset` once it has
    changed everything of a dataset).
    """
    changes = {dataset_id: fields for dataset_id, fields in changes.items()
               if fields}
    if not changes:
        return set()
    rows = {resource_id: {"dataset": dataset_id, "fields": fields}
            for dataset_id, resources in changes.items()
            for resource_id, fields in resources.items()}
    now = datetime.datetime.utcnow()
    with _locked_datasets(changes):
        # The parentheses matter: || and -> bind equally, left to right.
        changed = {row[0] for row in model.Session.execute(sa.text(
            "UPDATE resource AS r SET extras = (COALESCE(NULLIF(r.extras, "
            "''), '{}')::jsonb || (c.value->'fields'))::text, "
            "metadata_modified = :now "
            "FROM jsonb_each(CAST(:rows AS jsonb)) AS c "
            "WHERE r.id = c.key AND r.package_id = c.value->>'dataset' "
            "RETURNING r.id"),
            {"rows": json.dumps(rows), "now": now})}
        model.Session.execute(sa.text(
            "UPDATE package SET metadata_modified = :now WHERE id IN "
            "(SELECT jsonb_array_elements_text(CAST(:ids AS jsonb)))"),
            {"ids": json.dumps(sorted(changes)), "now": now})
    return changed


def remove_resource_field(dataset_id: str, resource_ids: Iterable[str],
                          field: str) -> None:
    """Remove a plugin field from resources' extras (one statement, with
    the locks :func:`merge_resource_fields` takes)."""
    ids = sorted(set(resource_ids))
    if not ids:
        return
    with _locked_datasets([dataset_id]):
        model.Session.execute(sa.text(
            "UPDATE resource SET extras = (COALESCE(NULLIF(extras, ''), "
            "'{}')::jsonb - CAST(:field AS text))::text "
            "WHERE package_id = :dataset AND id IN "
            "(SELECT jsonb_array_elements_text(CAST(:ids AS jsonb)))"),
            {"dataset": dataset_id, "ids": json.dumps(ids), "field": field})
        # A new metadata_modified: package_show must not serve the search
        # index's copy (which still has the field) until it is reindexed.
        model.Session.execute(sa.text(
            "UPDATE package SET metadata_modified = :now WHERE id = :dataset"),
            {"dataset": dataset_id, "now": datetime.datetime.utcnow()})


@contextlib.contextmanager
def _locked_datasets(dataset_ids: Iterable[str]) -> Iterator[None]:
    """One transaction writing resources behind the ORM, committed at the
    end (rolled back on any error, also Ctrl-C).

    The datasets are locked first, in the order CKAN's updates do (package
    row, then its resources): no deadlock with a user's edit, and an edit
    that read the resource before waits and sees the write.
    """
    try:
        model.Session.execute(sa.text(
            "SELECT id FROM package WHERE id IN "
            "(SELECT jsonb_array_elements_text(CAST(:ids AS jsonb))) "
            "ORDER BY id FOR UPDATE"),
            {"ids": json.dumps(sorted(set(dataset_ids)))})
        yield
        model.Session.commit()
    except BaseException:
        # No half-done transaction stays on the session.
        model.Session.rollback()
        raise
    # Objects loaded before are stale now (written behind the ORM).
    model.Session.expire_all()


def reindex_dataset(dataset_id: str) -> None:
    """Update the search index of one dataset from the database."""
    search.rebuild(dataset_id)


def is_public(private: Any, state: Any, owner_org: Any) -> bool:
    """The one rule of a dataset's visibility: its data may be public if
    it is not private, active, and belongs to an organization (which has
    a bucket). Which objects open is decided from it by
    :func:`..operations.visibility.should_be_public`."""
    return bool(not private and state == "active" and owner_org)


#: :func:`is_public` in SQL, for a query that names the package table
#: ``p``.
IS_PUBLIC_SQL = ("(NOT COALESCE(p.private, false) AND p.state = 'active' "
                 "AND COALESCE(p.owner_org, '') <> '')")


@dataclass(frozen=True)
class DatasetState:
    """What decides whether a dataset's objects may be public."""
    name: str
    #: :func:`is_public`
    public: bool
    owner_org: str | None
    #: ids of the dataset's active resources
    active_resources: frozenset[str]
    #: ids of all its resources, deleted ones included
    all_resources: frozenset[str]
    #: ``s3_url`` of the resources that have one (where their data are
    #: stored; another organization's bucket while the dataset moves)
    s3_urls: Mapping[str, str] = dataclasses.field(default_factory=dict)
    #: where the data of resources were before a move that is not finished
    #: (``s3_moved_from``): never public, deleted by the move
    moved_from: Mapping[str, str] = dataclasses.field(default_factory=dict)


def dataset_states(dataset_ids: Iterable[str],
                   connection: sa.engine.Connection | None = None,
                   settled: bool = False) -> dict[str, DatasetState]:
    """The visibility-relevant state of datasets (absent: no such dataset).

    Read in a transaction of its own on a fresh connection, so that it
    shows what is committed now, never a session's cached objects; pass
    ``connection`` to read inside a transaction instead (before a commit).
    With ``settled`` the read waits for transactions that have changed the
    datasets but not committed yet (share locks on their rows): a tagger
    that re-reads this way cannot miss a commit whose closing ran before
    its own tagging (see visibility.reconcile).
    """
    wanted = sorted(set(dataset_ids))
    if not wanted:
        return {}
    if connection is not None:
        return _dataset_states(connection, wanted)
    # An explicit transaction (SQLAlchemy 1.4 of CKAN 2.11 would
    # autocommit each statement, and SET LOCAL would not hold).
    with model.meta.engine.connect() as fresh, fresh.begin():
        if settled:
            # Never wait forever (a caller holding a lock itself): the
            # error hands the work to the sync job.
            fresh.execute(sa.text("SET LOCAL lock_timeout = '30s'"))
        return _dataset_states(fresh, wanted, settled)


def _dataset_states(connection: sa.engine.Connection,
                    dataset_ids: list[str], settled: bool = False
                    ) -> dict[str, DatasetState]:
    pkg, res = model.package_table, model.resource_table
    query = (sa.select(pkg.c.id, pkg.c.name, pkg.c.private, pkg.c.state,
                       pkg.c.owner_org)
             .where(pkg.c.id.in_(dataset_ids)))
    if settled:
        query = query.order_by(pkg.c.id).with_for_update(read=True)
    packages = connection.execute(query).all()
    active: dict[str, set[str]] = {}
    every: dict[str, set[str]] = {}
    urls: dict[str, dict[str, str]] = {}
    previous: dict[str, dict[str, str]] = {}
    for rid, dataset_id, state, raw_extras in connection.execute(
            sa.select(res.c.id, res.c.package_id, res.c.state, res.c.extras)
            .where(res.c.package_id.in_(dataset_ids))):
        every.setdefault(dataset_id, set()).add(rid)
        if state == "active":
            active.setdefault(dataset_id, set()).add(rid)
        extras = resource_extras(raw_extras)
        for field, found in (("s3_url", urls), (MOVED_FROM, previous)):
            if isinstance(extras.get(field), str) and extras[field]:
                found.setdefault(dataset_id, {})[rid] = extras[field]
    return {
        row.id: DatasetState(
            name=row.name,
            public=is_public(row.private, row.state, row.owner_org),
            owner_org=row.owner_org or None,
            active_resources=frozenset(active.get(row.id, ())),
            all_resources=frozenset(every.get(row.id, ())),
            s3_urls=urls.get(row.id, {}),
            moved_from=previous.get(row.id, {}))
        for row in packages}


def resource_extras(value: Any) -> dict[str, Any]:
    """A resource's extras (CKAN's column type decodes the JSON)."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            return {}
    return value if isinstance(value, dict) else {}


def resource_datasets(resource_ids: Iterable[str]) -> dict[str, str]:
    """``{resource id: dataset id}`` of the resources that exist (any
    state), freshly read."""
    wanted = sorted(set(resource_ids))
    if not wanted:
        return {}
    res = model.resource_table
    with model.meta.engine.connect() as fresh:
        return {row.id: row.package_id for row in fresh.execute(
            sa.select(res.c.id, res.c.package_id)
            .where(res.c.id.in_(wanted)))}


def organization_ids() -> set[str]:
    """Ids of every organization of this site (any state)."""
    return set(organization_names())


def organization_names() -> dict[str, str]:
    """``{id: name}`` of every organization of this site (any state)."""
    grp = model.group_table
    with model.meta.engine.connect() as fresh:
        return {row.id: row.name for row in fresh.execute(
            sa.select(grp.c.id, grp.c.name)
            .where(grp.c.is_organization.is_(True)))}


@dataclass(frozen=True)
class StoredResource:
    """A resource whose data are in the object store (it has ``s3_url``)."""
    id: str
    dataset_id: str
    dataset_name: str
    owner_org: str | None
    s3_url: str
    sha256: str | None
    size: int
    #: ``s3_moved_from``: where the data were before an unfinished move
    moved_from: str | None = None


def stored_resources(dataset_id: str | None = None) -> list[StoredResource]:
    """Resources (any state) with an ``s3_url``: of one dataset, or of
    every dataset; freshly read."""
    res, pkg = model.resource_table, model.package_table
    query = (sa.select(res.c.id, res.c.package_id, pkg.c.name,
                       pkg.c.owner_org, res.c.extras, res.c.size)
             .join(pkg, pkg.c.id == res.c.package_id)
             .where(sa.cast(res.c.extras, sa.Text).like('%"s3_url"%')))
    if dataset_id is not None:
        query = query.where(res.c.package_id == dataset_id)
    found = []
    with model.meta.engine.connect() as fresh:
        for row in fresh.execute(query.order_by(res.c.id)):
            extras = resource_extras(row.extras)
            url = extras.get("s3_url")
            if not isinstance(url, str) or not url:
                continue
            found.append(StoredResource(
                id=row.id, dataset_id=row.package_id,
                dataset_name=row.name, owner_org=row.owner_org or None,
                s3_url=url, sha256=extras.get("sha256") or None,
                size=int(row.size or 0),
                moved_from=extras.get(MOVED_FROM) or None))
    return found
