"""Data follow their dataset: moving objects to the new organization's bucket.

When a dataset changes organization its objects stay where they are at
first: their ``s3_url`` names the old bucket, and the visibility predicate
keeps them exactly as open as the dataset's state demands (public data stay
reachable, a dataset made private is closed in every bucket). The move job
then, for each resource whose ``s3_url`` names another bucket than the
dataset's organization's:

1. copies every artifact server-side into the organization's bucket
   (untagged, i.e. closed) and verifies the copy by a streamed SHA256
   against ``sha256`` (other artifacts: against the source's);
2. tags the copies from the dataset's state at that moment;
3. switches ``s3_url`` to the copies, recording the old URL in the
   plugin-owned field ``s3_moved_from`` in the same statement;
4. closes the old objects (nothing may open them: they are neither in the
   organization's bucket nor where ``s3_url`` points, and every
   visibility change also closes the objects ``s3_moved_from`` names),
   deletes them and removes ``s3_moved_from``.

The database always points at verified data, and a crash at any point
leaves a state the next run finishes: a resource whose ``s3_url`` is not
in its organization's bucket, or that has ``s3_moved_from``, is *pending*
(that is how ``--pending`` finds it). Old objects in the bucket of the
dataset's organization or where ``s3_url`` points (a dataset moved back
during its move) are never deleted. A lock per dataset (held by a
database connection, so a killed process releases it) keeps two moves of
one dataset from running at once.
"""
from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import ckan.model as model
import sqlalchemy as sa

from ckanext.dcor_depot import errors, names
from ckanext.dcor_depot.operations import visibility
from ckanext.dcor_depot.records import ckan_data, job_queue
from ckanext.dcor_depot.storage import layout, object_store, transfer

log = logging.getLogger(__name__)

#: Rounds of "plan, copy, switch" per run: more than one when the dataset
#: changes organization again while it moves.
MAX_ROUNDS = 3
#: Resources copied at once.
MOVE_THREADS = 8
#: Queue and timeout of the move job: a base plus the time to copy and
#: read back the dataset's bytes at a modest rate.
QUEUE = names.QUEUE_NORMAL
BASE_TIMEOUT = 600
BYTES_PER_SECOND = 20 * 1024 * 1024

OnResource = Callable[[str, str | None], None]


@dataclass(frozen=True)
class ResourceMove:
    resource_id: str
    source_org: str
    target_org: str
    source_url: str
    sha256: str | None


@dataclass
class MoveOutcome:
    """What a run did: resources moved, and the failures by resource."""
    moved: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)


def _home_url(res: ckan_data.StoredResource) -> str | None:
    """Where the resource's data belong: its organization's bucket."""
    if not res.owner_org:
        return None
    return object_store.object_url(object_store.bucket_name(res.owner_org),
                                   layout.object_key(res.id))


def pending_moves(dataset_id: str | None = None
                  ) -> dict[str, list[ckan_data.StoredResource]]:
    """Datasets (of all, or the one given) with resources whose data are
    not (only) in their organization's bucket: ``{dataset id: resources}``.
    """
    pending: dict[str, list[ckan_data.StoredResource]] = {}
    for res in ckan_data.stored_resources(dataset_id):
        home = _home_url(res)
        if res.moved_from or (home is not None and res.s3_url != home):
            pending.setdefault(res.dataset_id, []).append(res)
    return pending


def plan_moves(dataset_id: str) -> tuple[list[ResourceMove], dict[str, str]]:
    """The resources to copy now, and those that cannot be (with why)."""
    moves, unmovable = [], {}
    for res in pending_moves(dataset_id).get(dataset_id, []):
        if res.s3_url == _home_url(res):
            continue  # copied already; only the old objects are left
        parsed = object_store.parse_object_url(res.s3_url)
        source = object_store.url_organization(res.s3_url)
        if parsed is None or source is None:
            unmovable[res.id] = (f"its s3_url {res.s3_url} is not in a "
                                 "bucket of this site's object store")
        elif parsed[1] != layout.object_key(res.id) \
                or source == res.owner_org:
            unmovable[res.id] = (f"its s3_url {res.s3_url} is not where "
                                 "this plugin stores the resource's data")
        else:
            moves.append(ResourceMove(res.id, source, str(res.owner_org),
                                      res.s3_url, res.sha256))
    return moves, unmovable


def move_dataset(dataset_id: str, *, wait: bool = True,
                 on_resource: OnResource | None = None) -> MoveOutcome:
    """Move every object of a dataset to its organization's bucket.

    ``on_resource(resource_id, error)`` is called per resource (error None
    when moved). With ``wait=False`` Busy is raised at once if another
    process moves the dataset. Idempotent: nothing to do, nothing done.
    """
    outcome = MoveOutcome()
    with _dataset_lock(dataset_id, wait):
        _finish(dataset_id, outcome, on_resource)  # an interrupted run's
        for _ in range(MAX_ROUNDS):
            moves, unmovable = plan_moves(dataset_id)
            for rid, why in unmovable.items():
                _note(outcome, on_resource, rid, why)
            if not moves:
                break
            all_moved = _move_round(dataset_id, moves, outcome, on_resource)
            _finish(dataset_id, outcome, on_resource)
            if not all_moved:
                break  # failures: retrying at once would fail again
    return outcome


def _note(outcome: MoveOutcome, on_resource: OnResource | None,
          resource_id: str, error: str | None) -> None:
    if error is None:
        if resource_id in outcome.moved:
            return
        outcome.moved.append(resource_id)
    else:
        if outcome.failed.get(resource_id) == error:
            return  # the same finding in a later round
        outcome.failed[resource_id] = error
        log.error("Moving resource %s failed: %s", resource_id, error)
    if on_resource is not None:
        on_resource(resource_id, error)


def _move_round(dataset_id: str, moves: list[ResourceMove],
                outcome: MoveOutcome, on_resource: OnResource | None
                ) -> bool:
    """Copy, verify, tag, switch. Returns whether all were switched."""
    with ThreadPoolExecutor(min(MOVE_THREADS, len(moves)),
                            thread_name_prefix="dcor-move") as pool:
        copied = list(pool.map(_copy_resource, moves))
    done = {}
    for move, artifacts in zip(moves, copied, strict=True):
        if isinstance(artifacts, str):
            _note(outcome, on_resource, move.resource_id, artifacts)
        else:
            done[move] = artifacts
    if not done:
        return False
    # Copies open only as the dataset's state of this moment demands.
    visibility.reconcile(
        [visibility.ObjectRef(move.target_org, dataset_id, move.resource_id,
                              artifact)
         for move, artifacts in done.items() for artifact in artifacts])
    _switch(dataset_id, done)
    return len(done) == len(moves)


def _finish(dataset_id: str, outcome: MoveOutcome,
            on_resource: OnResource | None) -> None:
    """Close and delete the old objects of switched resources."""
    switched = [res for res in ckan_data.stored_resources(dataset_id)
                if res.moved_from]
    if not switched:
        return
    state = ckan_data.dataset_states([dataset_id]).get(dataset_id)
    refs, keep = [], set()
    for res in switched:
        org = object_store.url_organization(res.moved_from)
        if org is None:
            continue  # not a bucket of this site: nothing of ours to delete
        if state is not None and org in (
                state.owner_org, visibility.home_org(state, res.id)):
            keep.add(res.id)  # moved back meanwhile: these are its data
            continue
        refs += [visibility.ObjectRef(org, dataset_id, res.id, artifact)
                 for artifact in layout.ARTIFACTS]
    visibility.close(refs)
    by_bucket: dict[str, list[str]] = {}
    for ref in refs:
        by_bucket.setdefault(ref.bucket, []).append(ref.key)
    for bucket, keys in by_bucket.items():
        object_store.delete_objects(bucket, keys)
    ckan_data.remove_resource_field(
        dataset_id, [res.id for res in switched], ckan_data.MOVED_FROM)
    for res in switched:
        log.info("Resource %s: %s", res.id, "old objects kept (moved back)"
                 if res.id in keep else "old objects deleted")
        _note(outcome, on_resource, res.id, None)


def _copy_resource(move: ResourceMove) -> dict[str, str] | str:
    """``{artifact: sha256}`` of the verified copies, or an error text."""
    source = object_store.bucket_name(move.source_org)
    target = object_store.bucket_name(move.target_org)
    try:
        object_store.ensure_bucket(target)
        copies = {}
        for artifact in layout.ARTIFACTS:
            key = layout.object_key(move.resource_id, artifact)
            expected = move.sha256 if artifact == "resource" else None
            sha = _copy_artifact(source, target, key, expected)
            if sha is not None:
                copies[artifact] = sha
        if "resource" not in copies:
            key = layout.object_key(move.resource_id)
            return (f"no object at {source}/{key} nor a copy at {target}: "
                    "nothing to move")
        return copies
    except errors.StoreError as exc:
        return str(exc)


def _copy_artifact(source: str, target: str, key: str,
                   expected: str | None) -> str | None:
    """The SHA256 of the verified copy at ``target`` (None: the artifact
    exists nowhere)."""
    in_source = object_store.object_exists(source, key)
    if not in_source:
        if not object_store.object_exists(target, key):
            return None
        # The source is deleted only after its copy was verified (an
        # earlier, interrupted run): check what is recorded, if anything.
        found = transfer.object_sha256(target, key)
        if expected and found != expected:
            raise errors.StoreError(
                f"the copy at {target}/{key} has SHA256 {found}, expected "
                f"{expected}, and its source is gone", code=errors.MISMATCH)
        return found
    expected = expected or transfer.object_sha256(source, key)
    if object_store.object_exists(target, key):
        found = transfer.object_sha256(target, key)
        if found == expected:
            return found  # copied by an earlier, interrupted run
    return transfer.copy_verified(source, key, target,
                                  expected_sha256=expected)


def _switch(dataset_id: str, done: dict[ResourceMove, dict[str, str]]
            ) -> None:
    """Point ``s3_url`` at the verified copies, noting where the data were
    (and record a missing sha256)."""
    fields = {}
    for move, artifacts in done.items():
        url = object_store.object_url(
            object_store.bucket_name(move.target_org),
            layout.object_key(move.resource_id))
        fields[move.resource_id] = {"s3_url": url,
                                    ckan_data.MOVED_FROM: move.source_url}
        if not move.sha256:
            fields[move.resource_id]["sha256"] = artifacts["resource"]
    ckan_data.merge_resource_fields({dataset_id: fields})
    ckan_data.reindex_dataset(dataset_id)


@contextlib.contextmanager
def _dataset_lock(dataset_id: str, wait: bool) -> Iterator[None]:
    """A PostgreSQL advisory lock on the dataset, held by a connection of
    its own: released when the process dies, whatever the way."""
    key = f"dcor-depot-move:{dataset_id}"
    lock = "pg_advisory_lock" if wait else "pg_try_advisory_lock"
    with model.meta.engine.connect() as conn:
        # A session-level lock outlives these short transactions (no
        # transaction stays open while the data move).
        with conn.begin():
            got = conn.execute(sa.text(
                f"SELECT {lock}(hashtextextended(:k, 0))"),
                {"k": key}).scalar()
        if got is False:
            raise errors.Busy(f"dataset {dataset_id} is being moved by "
                              "another process; try again when it has "
                              "finished")
        try:
            yield
        finally:
            try:
                with conn.begin():
                    conn.execute(sa.text(
                        "SELECT pg_advisory_unlock(hashtextextended(:k, 0))"),
                        {"k": key})
            except Exception:
                # The lock must not outlive the move in a pooled connection.
                conn.invalidate()
                raise


# --- the background job ----------------------------------------------------

def move_job_id(dataset_id: str) -> str:
    """Fixed id of a dataset's move job (its follow-up: ``…-again``)."""
    return f"{layout.check_id(dataset_id)}-move"


def move_dataset_job(dataset_id: str) -> list[str]:
    """Background job queued after a dataset changed organization."""
    outcome = move_dataset(dataset_id)
    if outcome.failed:
        raise errors.StoreError(
            f"dataset {dataset_id}: {len(outcome.failed)} resources not "
            f"moved (run dcor-depot-move-dataset {dataset_id}): "
            + "; ".join(f"{rid}: {why}"
                        for rid, why in sorted(outcome.failed.items())))
    log.info("Dataset %s: %d resources moved", dataset_id,
             len(outcome.moved))
    return outcome.moved


def enqueue_move(dataset_id: str) -> str | None:
    """Queue the move job of a dataset; returns its id (None: a queued job
    will see the change anyway)."""
    return job_queue.enqueue_once(
        move_dataset_job, [dataset_id], job_id=move_job_id(dataset_id),
        queue=QUEUE, timeout=move_timeout(dataset_id),
        title=f"Move the data of dataset {dataset_id}")


def move_timeout(dataset_id: str) -> int:
    size = sum(res.size for res in ckan_data.stored_resources(dataset_id))
    # Each byte is copied once and read back once (sometimes twice).
    return BASE_TIMEOUT + 3 * size // BYTES_PER_SECOND


def request_move_if_needed(dataset_id: str) -> str | None:
    """Queue the move job if the dataset has data outside its bucket (a
    resource recorded while the dataset changed organization)."""
    if pending_moves(dataset_id):
        return enqueue_move(dataset_id)
    return None
