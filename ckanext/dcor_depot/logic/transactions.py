"""When objects open and close: SQLAlchemy events around CKAN's commits.

CKAN has no plugin hook after the commit of a dataset change, and its
``after_dataset_update`` runs before the commit (and before anything later
in the request that may still roll it back). The plugin therefore follows
the database session itself:

- While changes are flushed, it notes the datasets whose visibility may
  change (``private``, ``state`` or ``owner_org`` changed, dataset purged)
  and the resources created, deleted or moved.
- **Before the commit** it removes the public tag of every noted object
  that will not be public once the commit stands (read inside the
  committing transaction). If the store fails, the commit fails with a
  clear message: data never stay readable behind a private dataset.
  The dataset's sync job is queued first: if the process dies before
  the commit, the job reopens what the state that stands makes public.
- **After the commit** it sets every noted object's tag from the database
  state read in a fresh transaction (opening happens only here), with the
  re-check of :func:`visibility.reconcile`; objects it closed before the
  commit are not closed again (a tagger racing with the commit re-reads
  after it, see :mod:`visibility`), so a click costs one request per
  object either way. A store failure does not fail the request (it has
  committed); a sync job with a fixed id repairs it.
- **After a rollback** the objects closed before the failed commit are
  reconciled with the state that stands.

New upload resources get their background jobs after the commit, however
they were created (``resource_create``, ``package_create``,
``package_update``, ``package_revise``).
"""
from __future__ import annotations

import datetime
import logging
from dataclasses import dataclass, field
from typing import Any

import ckan.model as model
import ckan.plugins as plugins
import ckan.plugins.toolkit as tk
import sqlalchemy as sa
from sqlalchemy import event, orm

from ckanext.dcor_depot import config, errors, names
from ckanext.dcor_depot.operations import jobs, move, visibility
from ckanext.dcor_depot.records import ckan_data, job_queue
from ckanext.dcor_depot.storage import object_store

log = logging.getLogger(__name__)

INFO_KEY = "dcor_depot_pending"
PLUGIN_NAME = "dcor_depot"
#: Package columns that decide whether its objects may be public.
_PACKAGE_FIELDS = ("private", "state", "owner_org")
_RESOURCE_FIELDS = ("state", "package_id", "extras")
#: Resource extras that say where its data are (see visibility).
_LOCATION_FIELDS = ("s3_url", ckan_data.MOVED_FROM)


@dataclass
class TouchedDataset:
    #: the dataset itself changed: all of its objects are concerned
    whole: bool = False
    #: resources deleted or moved (and those of a purged dataset)
    resources: set[str] = field(default_factory=set)
    #: resources created: their objects, if any, were never opened (every
    #: tagger closes objects of resources that do not exist), so nothing
    #: needs closing before the commit nor a request unless they open
    new_resources: set[str] = field(default_factory=set)
    #: organizations that owned the dataset before (their buckets)
    old_orgs: set[str] = field(default_factory=set)
    #: noted by a bulk action of this organization only: dropped at the
    #: commit unless the dataset belongs to it (CKAN changes no other)
    required_org: str | None = None
    #: objects were closed before the commit
    pre_closed: bool = False
    #: the objects closed before the commit (not closed again after it)
    closed: set[visibility.ObjectRef] = field(default_factory=set)
    #: the dataset changed organization: its data move after the commit
    owner_changed: bool = False
    #: changed by SQL behind the ORM, which left ``metadata_modified`` as
    #: it was: stamped at the commit (the rolling audit looks for changes
    #: there)
    stamp: bool = False


@dataclass
class Pending:
    datasets: dict[str, TouchedDataset] = field(default_factory=dict)
    #: new upload resources: id -> the fields the job planning needs
    new_uploads: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: ids of new resources chosen by the caller (a sysadmin): objects
    #: may exist under them, so they are not assumed closed
    chosen_ids: set[str] = field(default_factory=set)
    #: those of them that are new resources of this transaction: their
    #: objects belonged to no resource before it
    new_chosen: set[str] = field(default_factory=set)


def _loaded() -> bool:
    return plugins.plugin_loaded(PLUGIN_NAME)


def _enabled() -> bool:
    """Visibility work is done: the plugin is loaded and S3 is on."""
    return _loaded() and config.s3_available()


def _pending(session: orm.Session) -> Pending:
    return session.info.setdefault(INFO_KEY, Pending())


def touch(session: orm.Session, dataset_id: str, *, whole: bool = False,
          resources: set[str] | frozenset[str] = frozenset(),
          new_resources: set[str] | frozenset[str] = frozenset(),
          old_orgs: set[str] | frozenset[str] = frozenset(),
          required_org: str | None = None,
          owner_changed: bool = False, stamp: bool = False) -> None:
    """Note that a dataset's objects may have to change at the commit."""
    datasets = _pending(session).datasets
    if dataset_id not in datasets:
        datasets[dataset_id] = TouchedDataset(required_org=required_org)
    entry = datasets[dataset_id]
    if required_org is None:
        entry.required_org = None  # noted for another reason too
    entry.whole = entry.whole or whole
    entry.owner_changed = entry.owner_changed or owner_changed
    entry.stamp = entry.stamp or stamp
    entry.resources.update(resources)
    entry.new_resources.update(new_resources)
    entry.old_orgs.update(org for org in old_orgs if org)


def note_chosen_ids(resource_ids: set[str]) -> None:
    """Ids of new resources the caller chose (see Pending.chosen_ids)."""
    if resource_ids:
        _pending(model.Session()).chosen_ids.update(resource_ids)


def touch_datasets(dataset_ids: list[str],
                   required_org: str | None = None) -> None:
    """Note datasets changed by SQL statements that bypass the ORM (CKAN
    2.11's bulk actions and organization deletion), with their current
    owners, whose buckets hold their objects. With ``required_org`` a
    dataset counts only if it belongs to that organization at the
    commit."""
    if not _enabled() or not dataset_ids:
        return
    session = model.Session()
    pkg = model.package_table
    rows = session.execute(sa.select(pkg.c.id, pkg.c.owner_org)
                           .where(pkg.c.id.in_(dataset_ids)))
    for dataset_id, owner_org in rows:
        touch(session, dataset_id, whole=True,
              old_orgs={owner_org} if owner_org else set(),
              required_org=required_org, stamp=True)


def _changed(obj: Any, names: tuple[str, ...]) -> dict[str, list[Any]]:
    """Old values of the attributes of ``obj`` that changed."""
    state = sa.inspect(obj)
    old: dict[str, list[Any]] = {}
    for name in names:
        history = state.attrs[name].history
        if history.has_changes():
            old[name] = list(history.deleted)
    return old


def _before_flush(session: orm.Session, flush_context: Any,
                  instances: Any) -> None:
    if not _enabled():
        return
    for obj in list(session.dirty):
        if isinstance(obj, model.Package):
            _note_changed_dataset(session, obj)
        elif isinstance(obj, model.Resource):
            _note_changed_resource(session, obj)
    for obj in list(session.deleted):
        if isinstance(obj, model.Package):
            rids, orgs = _stored_where(session, obj.id)
            if obj.owner_org:
                orgs.add(obj.owner_org)
            touch(session, obj.id, whole=True, resources=rids, old_orgs=orgs)
        elif isinstance(obj, model.Resource) and obj.package_id:
            touch(session, obj.package_id, resources={obj.id})


def _note_changed_dataset(session: orm.Session, pkg: model.Package) -> None:
    old = _changed(pkg, _PACKAGE_FIELDS)
    if old:
        touch(session, pkg.id, whole=True,
              old_orgs=set(old.get("owner_org", [])),
              owner_changed="owner_org" in old)


def _note_changed_resource(session: orm.Session,
                           resource: model.Resource) -> None:
    old = _changed(resource, _RESOURCE_FIELDS)
    moved_data = _old_data_orgs(resource, old)
    if not old:
        return
    for dataset_id in {resource.package_id, *old.get("package_id", [])}:
        if dataset_id:
            touch(session, dataset_id, resources={resource.id},
                  old_orgs=moved_data)


def _after_flush(session: orm.Session, flush_context: Any) -> None:
    if not _loaded():
        return
    enabled = config.s3_available()
    for obj in list(session.new):
        if isinstance(obj, model.Resource) and obj.package_id:
            if enabled and obj.id in _pending(session).chosen_ids:
                _pending(session).new_chosen.add(obj.id)
                touch(session, obj.package_id, resources={obj.id})
            elif enabled:
                touch(session, obj.package_id, new_resources={obj.id})
            if obj.url_type in names.FILE_URL_TYPES:
                extras = obj.extras or {}
                _pending(session).new_uploads[obj.id] = {
                    "id": obj.id, "url_type": obj.url_type,
                    "size": obj.size or 0,
                    "s3_available": extras.get("s3_available", False)}


def _old_data_orgs(resource: model.Resource,
                   old: dict[str, list[Any]]) -> set[str]:
    """Organizations whose buckets held a resource's data before this
    change of its ``s3_url`` (by a sysadmin): closed at the commit."""
    if "extras" not in old:
        return set()
    before = (old["extras"] or [{}])[0] or {}
    after = resource.extras or {}
    if all(before.get(f) == after.get(f) for f in _LOCATION_FIELDS):
        del old["extras"]  # another extra changed: nothing to tag
        return set()
    return object_store.url_organizations(
        before.get(f) for f in _LOCATION_FIELDS)


def _stored_where(session: orm.Session, dataset_id: str
                  ) -> tuple[set[str], set[str]]:
    """Ids of a dataset's resources and the organizations whose buckets
    their ``s3_url`` / ``s3_moved_from`` name (a purged dataset's objects
    are closed wherever they are)."""
    res = model.resource_table
    rids, orgs = set(), set()
    with session.no_autoflush:
        for rid, extras in session.execute(
                sa.select(res.c.id, res.c.extras)
                .where(res.c.package_id == dataset_id)):
            rids.add(rid)
            values = ckan_data.resource_extras(extras)
            orgs |= object_store.url_organizations(
                values.get(f) for f in _LOCATION_FIELDS)
    return rids, orgs


def _is_nested(session: orm.Session) -> bool:
    return session.get_nested_transaction() is not None


def _refs(dataset_id: str, touched: TouchedDataset,
          states: dict[str, ckan_data.DatasetState]
          ) -> list[visibility.ObjectRef]:
    state = states.get(dataset_id)
    resources = touched.resources | touched.new_resources
    if touched.whole or state is None:
        return visibility.dataset_refs(state, dataset_id, touched.old_orgs,
                                       resources)
    orgs = touched.old_orgs | object_store.url_organizations(
        state.s3_urls.get(rid) for rid in resources)
    if state.owner_org:
        orgs.add(state.owner_org)
    return visibility.dataset_refs(None, dataset_id, orgs, resources)


def _only_new(touched: TouchedDataset, ref: visibility.ObjectRef) -> bool:
    return (ref.resource_id in touched.new_resources
            and ref.resource_id not in touched.resources
            and not touched.whole)


def _before_commit(session: orm.Session) -> None:
    if not _enabled() or _is_nested(session):
        return
    session.flush()  # notes made by the final flush count too
    pending = session.info.get(INFO_KEY)
    if pending is None or not pending.datasets:
        return
    # Taggers' re-reads wait for this commit (visibility.reconcile): hold
    # the rows even if CKAN wrote none of them (package_update may not).
    pkg = model.package_table
    session.execute(sa.select(pkg.c.id)
                    .where(pkg.c.id.in_(sorted(pending.datasets)))
                    .order_by(pkg.c.id).with_for_update())
    states = ckan_data.dataset_states(pending.datasets,
                                      connection=session.connection())
    for dataset_id in [d for d, t in pending.datasets.items()
                       if t.required_org is not None]:
        state = states.get(dataset_id)
        if state is None or state.owner_org != pending.datasets[
                dataset_id].required_org:
            del pending.datasets[dataset_id]  # not the organization's
    _stamp(session, [dataset_id for dataset_id, touched
                     in pending.datasets.items() if touched.stamp])
    for dataset_id, touched in pending.datasets.items():
        to_close = [ref for ref in _refs(dataset_id, touched, states)
                    if not visibility.should_be_public(ref, states)
                    and not _only_new(touched, ref)]
        if not to_close:
            continue
        if any(ref.resource_id not in touched.new_resources
               and ref.resource_id not in pending.new_chosen
               for ref in to_close):
            # Objects that were the dataset's before this commit (those of
            # new resources under chosen ids belonged to nothing).
            _queue_sync_before_closing(dataset_id, touched)
        touched.pre_closed = True
        try:
            visibility.close(to_close)
            touched.closed.update(to_close)
        except errors.StoreError as exc:
            state = states.get(dataset_id)
            name = state.name if state is not None else dataset_id
            raise tk.ValidationError({"private": [
                f"could not close access to the data of dataset "
                f"{name} in the object store ({exc}); nothing was "
                "changed, try again"]}) from exc


def _stamp(session: orm.Session, dataset_ids: list[str]) -> None:
    """Set ``metadata_modified`` of datasets changed behind the ORM (their
    rows are locked already)."""
    if dataset_ids:
        pkg = model.package_table
        session.execute(sa.update(pkg).where(pkg.c.id.in_(dataset_ids))
                        .values(metadata_modified=datetime.datetime.utcnow()))


def _queue_sync_before_closing(dataset_id: str,
                               touched: TouchedDataset) -> None:
    """Queue the dataset's sync job before its objects are closed.

    If this process dies after closing and the commit is lost, no
    after-rollback listener runs: the job then reopens what the state
    that stands makes public. It reads the database when it runs (its
    re-read waits for this commit), so after a commit that stands it
    changes nothing. Not queued (Redis away): logged, and the closing
    goes on, since a request to make data private must not wait for
    the queue.
    """
    try:
        job_queue.enqueue_once(
            visibility.sync_dataset_job,
            [dataset_id, sorted(touched.old_orgs),
             sorted(touched.resources | touched.new_resources)],
            job_id=jobs.visibility_sync_job_id(dataset_id),
            queue=jobs.SYMLINK.queue, timeout=3600,
            title=f"Sync object visibility of dataset {dataset_id}")
    except Exception:  # noqa: BLE001 - closing must not depend on it
        log.exception("Could not queue the visibility sync of dataset %s "
                      "before closing its objects; if this commit is "
                      "lost, run dcor-depot-sync-visibility --dataset %s",
                      dataset_id, dataset_id)

def _after_commit(session: orm.Session) -> None:
    if _is_nested(session):
        return
    pending: Pending | None = session.info.pop(INFO_KEY, None)
    if pending is None or not _loaded():
        return
    if config.s3_available():
        _reconcile(pending.datasets)
        _queue_moves([dataset_id for dataset_id, touched
                      in pending.datasets.items() if touched.owner_changed])
    for resource in pending.new_uploads.values():
        try:
            jobs.enqueue_resource_jobs(resource)
        except Exception:  # noqa: BLE001 - the request has committed
            log.exception("Could not queue the jobs of resource %s; "
                          "run-jobs-dcor-depot will do them",
                          resource["id"])


def _queue_moves(dataset_ids: list[str]) -> None:
    """Data follow their dataset to its new organization's bucket."""
    for dataset_id in dataset_ids:
        try:
            move.enqueue_move(dataset_id)
        except Exception:  # noqa: BLE001 - the request has committed
            log.exception("Could not queue the move of dataset %s: run "
                          "dcor-depot-move-dataset %s", dataset_id,
                          dataset_id)


def _after_transaction_end(session: orm.Session,
                           transaction: orm.SessionTransaction) -> None:
    if transaction.parent is not None:
        return
    pending: Pending | None = session.info.pop(INFO_KEY, None)
    if pending is None or not _enabled():
        return
    # Rolled back (a commit would have taken the notes): objects closed
    # for the failed commit follow the state that stands.
    _reconcile({dataset_id: touched for dataset_id, touched
                in pending.datasets.items() if touched.pre_closed})


def _reconcile(datasets: dict[str, TouchedDataset]) -> None:
    if not datasets:
        return
    try:
        states = ckan_data.dataset_states(datasets)
    except Exception:  # noqa: BLE001 - never fail a committed request
        log.exception("Could not read the state of %d datasets",
                      len(datasets))
        states = None
    for dataset_id, touched in datasets.items():
        try:
            if states is None:
                raise errors.StoreError("no database state")
            refs = _refs(dataset_id, touched, states)
            visibility.reconcile(refs, assume_closed=[
                ref for ref in refs
                if _only_new(touched, ref) or ref in touched.closed])
        except Exception:  # noqa: BLE001 - handed to the sync job
            log.exception("Tagging the objects of dataset %s failed; "
                          "queueing the sync job", dataset_id)
            try:
                jobs.enqueue_visibility_sync(
                    dataset_id, sorted(touched.old_orgs),
                    sorted(touched.resources | touched.new_resources))
            except Exception:  # noqa: BLE001
                log.exception("Could not queue the visibility sync of "
                              "dataset %s: run dcor-depot-sync-visibility "
                              "--dataset %s", dataset_id, dataset_id)


_LISTENERS = (
    ("before_flush", _before_flush),
    ("after_flush", _after_flush),
    ("before_commit", _before_commit),
    ("after_commit", _after_commit),
    ("after_transaction_end", _after_transaction_end),
)


def install() -> None:
    """Listen to CKAN's sessions; called once the plugin is configured
    (idempotent; inert while S3 is off)."""
    for target in (model.Session, model.meta.create_local_session):
        for name, listener in _LISTENERS:
            if not event.contains(target, name, listener):
                event.listen(target, name, listener)
