"""Keep the ``public=true`` object tags in step with the database.

An object is public exactly when its dataset is public (not private),
active and owned by the organization whose bucket holds the object, and
its resource is active. Everything here decides from the database state
*at that moment* and follows one protocol, so that racing writers (a web
request closing a dataset, a job opening a fresh upload) always end in
the state the database demands:

1. read the datasets' and resources' state in a fresh transaction;
2. set the tags of the objects accordingly;
3. read the state again in a new transaction, waiting for transactions
   that changed the datasets and have not committed yet; if it changed
   meanwhile, set the tags of the affected objects again (and re-check).

Whoever tags last has read the state after its own tagging, so a tag set
from a stale read is always undone. Because the re-read waits for pending
commits, a commit that closed objects before it committed (see
:mod:`logic.transactions`) need not close them again afterwards: a tagger
that opened them after that closing re-reads after the commit. When to
call it (before and after a commit) is decided by :mod:`logic.transactions`.
"""
from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from ckanext.dcor_depot import config, errors
from ckanext.dcor_depot.records import ckan_data
from ckanext.dcor_depot.storage import layout, object_store, survey

log = logging.getLogger(__name__)

#: Rounds of "tag, re-read" before giving up on a dataset whose state keeps
#: changing (it is then left to the sync job / command).
MAX_ROUNDS = 5
#: Tagging requests in flight at once (each is a round trip to the store).
TAGGING_THREADS = 16
#: Objects of one bucket from which on their existence is learnt from a
#: listing instead of from one failed tagging request per missing object.
LISTING_THRESHOLD = 32


@dataclass(frozen=True)
class ObjectRef:
    """One object in the store, with what decides whether it may be public."""
    #: organization whose bucket holds the object
    org_id: str
    dataset_id: str
    resource_id: str
    artifact: str = "resource"

    @property
    def bucket(self) -> str:
        return object_store.bucket_name(self.org_id)

    @property
    def key(self) -> str:
        return layout.object_key(self.resource_id, self.artifact)


def home_org(state: ckan_data.DatasetState, resource_id: str) -> str | None:
    """The organization whose bucket ``s3_url`` names (None: no URL)."""
    return object_store.url_organization(state.s3_urls.get(resource_id))


def should_be_public(ref: ObjectRef,
                     states: Mapping[str, ckan_data.DatasetState]) -> bool:
    """The one visibility predicate: may anybody read this object?

    Yes if its dataset is public and active, its resource active, and it
    lies in the bucket of the dataset's organization or in the bucket its
    ``s3_url`` names (while a moved dataset's data are copied, both).
    """
    state = states.get(ref.dataset_id)
    if (state is None or not state.public or not state.owner_org
            or ref.resource_id not in state.active_resources):
        return False
    return ref.org_id in (state.owner_org,
                          home_org(state, ref.resource_id))


def dataset_refs(state: ckan_data.DatasetState | None, dataset_id: str,
                 extra_orgs: Iterable[str] = (),
                 extra_resources: Iterable[str] = ()) -> list[ObjectRef]:
    """Every object a dataset may have: all artifacts of all its resources
    (deleted ones too) in its bucket, the buckets its resources' ``s3_url``
    name, and the buckets of ``extra_orgs`` (organizations that owned it
    before)."""
    resources = set(extra_resources)
    orgs = {org for org in extra_orgs if org}
    if state is not None:
        resources |= state.all_resources
        orgs |= object_store.url_organizations(
            [*state.s3_urls.values(), *state.moved_from.values()])
        if state.owner_org:
            orgs.add(state.owner_org)
    usable = set()
    for rid in resources:
        try:
            usable.add(layout.check_id(rid))
        except ValueError:  # an id from before the plugin checked them
            log.warning("Resource id %r cannot have objects; skipped", rid)
    return [ObjectRef(org, dataset_id, rid, artifact)
            for org in sorted(orgs) for rid in sorted(usable)
            for artifact in layout.ARTIFACTS]


def reconcile(refs: Iterable[ObjectRef],
              assume_closed: Iterable[ObjectRef] = ()) -> int:
    """Tag ``refs`` as the database says now, re-checking after tagging.

    ``assume_closed`` are objects known to carry no public tag (fresh
    uploads): no request is spent on them while they are to stay closed.
    Returns the number of tagging requests sent to existing objects. Raises
    StoreError when the store fails (tags may then be half done:
    the caller retries or queues the sync job).
    """
    pending = list(dict.fromkeys(refs))
    known_closed = set(assume_closed)
    changed = 0
    for _ in range(MAX_ROUNDS):
        if not pending:
            return changed
        dataset_ids = {ref.dataset_id for ref in pending}
        # Settled: a commit in flight (one that closed the objects before
        # committing) is waited for, not tagged against and undone by the
        # re-read only (its objects would be open meanwhile).
        states = ckan_data.dataset_states(dataset_ids, settled=True)
        wanted = _per_object({ref: should_be_public(ref, states)
                              for ref in pending})
        changed += _set_tags({ref: public for ref, public in wanted.items()
                              if public or ref not in known_closed},
                             present=_present(wanted, states))
        known_closed.clear()  # what we tagged is no longer "known"
        states = _read_again_or_close(dataset_ids, wanted)
        again = _per_object({ref: should_be_public(ref, states)
                             for ref in pending})
        moved = {(ref.bucket, ref.key) for ref, public in wanted.items()
                 if again[ref] != public}
        pending = [ref for ref in pending if (ref.bucket, ref.key) in moved]
    if pending:
        log.warning("Visibility of %d objects kept changing; left to the "
                    "sync job", len(pending))
        raise errors.StoreError(
            "the visibility of the datasets kept changing while their "
            "objects were tagged; run dcor-depot-sync-visibility")
    return changed


def _read_again_or_close(dataset_ids: set[str],
                         wanted: Mapping[ObjectRef, bool]
                         ) -> dict[str, ckan_data.DatasetState]:
    """The re-read of :func:`reconcile`. If it fails (a lock wait timed
    out, the database went away), what was just opened is closed again:
    it may rest on a stale read, and a commit that closed it before
    committing will not close it again."""
    try:
        return ckan_data.dataset_states(dataset_ids, settled=True)
    except Exception:
        with contextlib.suppress(Exception):
            close([ref for ref, public in wanted.items() if public])
        raise


def _per_object(wanted: dict[ObjectRef, bool]) -> dict[ObjectRef, bool]:
    """One decision per stored object: several refs may name the same
    bucket and key (a resource seen in two datasets); closing wins."""
    by_object: dict[tuple[str, str], ObjectRef] = {}
    decided: dict[ObjectRef, bool] = {}
    for ref, public in wanted.items():
        first = by_object.setdefault((ref.bucket, ref.key), ref)
        decided[first] = decided.get(first, True) and public
    return decided


def close(refs: Iterable[ObjectRef]) -> int:
    """Remove the public tag of ``refs`` without looking at the database.

    Used before a commit that makes objects private: whatever the
    outcome, closing is never a leak. Returns the number of objects.
    """
    return _set_tags(dict.fromkeys(refs, False))


def _set_tags(wanted: Mapping[ObjectRef, bool],
              present: Iterable[ObjectRef] = ()) -> int:
    """One tagging request per existing object; the number sent.

    ``present`` are objects known to exist (a resource's object where its
    ``s3_url`` points): they are tagged at once, while one listing finds
    out which of the others exist.
    """
    if not wanted:
        return 0
    for bucket in {ref.bucket for ref, public in wanted.items() if public}:
        object_store.ensure_bucket(bucket)  # repairs a missing policy
    known = set(present) & wanted.keys()

    def apply(item: tuple[ObjectRef, bool]) -> bool:
        ref, public = item
        return object_store.set_public(ref.bucket, ref.key, public)

    with ThreadPoolExecutor(TAGGING_THREADS,
                            thread_name_prefix="dcor-tags") as pool:
        others = pool.submit(_without_missing, {
            ref: public for ref, public in wanted.items()
            if ref not in known})
        done = sum(pool.map(apply, [(ref, wanted[ref]) for ref in known]))
        return done + sum(pool.map(apply, others.result()))


def _present(refs: Iterable[ObjectRef],
             states: Mapping[str, ckan_data.DatasetState]
             ) -> set[ObjectRef]:
    """Refs of resource objects where the resources' ``s3_url`` point."""
    found = set()
    for ref in refs:
        state = states.get(ref.dataset_id)
        if (ref.artifact == "resource" and state is not None
                and state.s3_urls.get(ref.resource_id)
                == object_store.object_url(ref.bucket, ref.key)):
            found.add(ref)
    return found


def _without_missing(wanted: Mapping[ObjectRef, bool]
                     ) -> list[tuple[ObjectRef, bool]]:
    """``wanted`` without the objects a bucket listing shows missing.

    Most resources have no condensed or preview artifact; for many refs
    in a bucket, one listing (a request per 1000 objects, bounded to a
    hundredth of the tagging requests) is cheaper than a failed tagging
    request per missing object. An object created after the listing is
    untagged (closed) and tagged by its creator, so skipping it is safe.
    """
    # Listed per artifact (its key prefix): where most resources have no
    # condensed or preview object those listings are short, whatever the
    # bucket holds besides.
    by_prefix: dict[tuple[str, str], list[tuple[ObjectRef, bool]]] = {}
    for ref, public in wanted.items():
        by_prefix.setdefault(
            (ref.bucket, layout.object_key_prefix(ref.artifact)), []
        ).append((ref, public))
    kept: list[tuple[ObjectRef, bool]] = []
    for (bucket, prefix), items in by_prefix.items():
        if len(items) < LISTING_THRESHOLD:
            kept += items
            continue
        listing = object_store.BucketListing(
            bucket, max_pages=max(1, len(items) // 100), prefix=prefix)
        kept += [(ref, public) for ref, public in items
                 if not listing.knows(ref.key) or listing.get(ref.key)]
    return kept


def sync_dataset(dataset_id: str, extra_orgs: Iterable[str] = (),
                 extra_resources: Iterable[str] = ()) -> int:
    """Bring every object of a dataset in line with the database.

    ``extra_orgs`` / ``extra_resources`` name buckets and resources the
    database no longer links to the dataset (moved away, purged): their
    objects are closed. Returns the number of objects changed.
    """
    if not config.s3_available():
        return 0
    state = ckan_data.dataset_states([dataset_id]).get(dataset_id)
    return reconcile(dataset_refs(state, dataset_id, extra_orgs,
                                  extra_resources))


def sync_dataset_job(dataset_id: str, extra_orgs: list[str] | None = None,
                     extra_resources: list[str] | None = None) -> int:
    """Background job queued when tagging after a commit failed."""
    changed = sync_dataset(dataset_id, extra_orgs or (),
                           extra_resources or ())
    log.info("Synced visibility of dataset %s: %d objects changed",
             dataset_id, changed)
    return changed


@dataclass(frozen=True)
class TagChange:
    ref: ObjectRef
    #: the object carries the public tag now
    public_now: bool
    #: the database says it should
    wanted: bool


def dataset_tag_changes(dataset_id: str) -> list[TagChange]:
    """The objects of a dataset whose tags differ from the database (a dry
    run of :func:`sync_dataset`; missing objects are left out)."""
    state = ckan_data.dataset_states([dataset_id]).get(dataset_id)
    states = {dataset_id: state} if state is not None else {}
    return _tag_changes(dataset_refs(state, dataset_id), states)


def bucket_tag_changes(bucket: str, org_id: str) -> list[TagChange]:
    """Every object of a bucket whose tag differs from the database,
    wherever it came from (former owners, purged datasets, unowned ones,
    objects written by hand): one listing, one tag request per object."""
    keys = object_store.list_keys(bucket)
    parsed = {}
    for key in keys:
        try:
            parsed[key] = layout.parse_object_key(key)
        except ValueError:
            continue  # not an artifact of this plugin: not ours to judge
    owners = ckan_data.resource_datasets(rid for _, rid in parsed.values())
    refs = [ObjectRef(org_id, owners.get(rid, ""), rid, artifact)
            for artifact, rid in parsed.values()]
    states = ckan_data.dataset_states({ref.dataset_id for ref in refs
                                       if ref.dataset_id})
    return _tag_changes(refs, states)


def _tag_changes(refs: list[ObjectRef],
                 states: Mapping[str, ckan_data.DatasetState]
                 ) -> list[TagChange]:
    public = survey.public_flags([(ref.bucket, ref.key) for ref in refs],
                                 threads=TAGGING_THREADS)
    changes = []
    for ref in refs:
        now = public[(ref.bucket, ref.key)]
        wanted = should_be_public(ref, states)
        if now is not None and now != wanted:  # None: no such object
            changes.append(TagChange(ref, now, wanted))
    return changes
