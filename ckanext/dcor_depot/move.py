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
3. deletes the old objects (their copies are verified) and
4. switches ``s3_url`` to the copies, then reconciles both buckets.

A crash at any point leaves a state the next run finishes: ``s3_url``
names the old bucket until step 4, so the dataset still counts as pending
(that is how ``--pending`` finds datasets), and a copy whose source is gone
was verified before the source was deleted. A lock per dataset (held by
the database connection, so a killed process releases it) keeps two moves
of one dataset from running at once.
"""
from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import ckan.model as model
import sqlalchemy as sa
from ckan.lib import jobs as ckan_jobs
from rq.job import Job, JobStatus, NoSuchJobError

from . import ckan_data, layout, object_store, transfer, visibility

log = logging.getLogger(__name__)

#: Rounds of "plan, copy, switch" per run: more than one when the dataset
#: changes organization again while it moves.
MAX_ROUNDS = 3
#: Resources copied at once.
MOVE_THREADS = 8
#: Queue and timeout of the move job: a base plus the time to copy and
#: read back the dataset's bytes at a modest rate.
QUEUE = "dcor-normal"
BASE_TIMEOUT = 600
BYTES_PER_SECOND = 20 * 1024 * 1024


class MoveError(object_store.ObjectStoreError):
    """A resource could not be moved; its data stay where they were."""


class MoveBusy(MoveError):
    """Another process is moving the dataset right now."""


@dataclass(frozen=True)
class ResourceMove:
    resource_id: str
    source_org: str
    target_org: str
    sha256: str | None


@dataclass
class MoveOutcome:
    """What a run did: resources moved, and the failures by resource."""
    moved: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)


def pending_moves(dataset_id: str | None = None
                  ) -> dict[str, list[ckan_data.StoredResource]]:
    """Datasets (of all, or the one given) with resources whose ``s3_url``
    is not in their organization's bucket: ``{dataset id: resources}``."""
    pending: dict[str, list[ckan_data.StoredResource]] = {}
    for res in ckan_data.stored_resources(dataset_id):
        if res.owner_org and res.s3_url != object_store.object_url(
                object_store.bucket_name(res.owner_org),
                layout.object_key(res.id)):
            pending.setdefault(res.dataset_id, []).append(res)
    return pending


def plan_moves(dataset_id: str) -> tuple[list[ResourceMove], dict[str, str]]:
    """The resources to move now, and those that cannot be (with why)."""
    moves, unmovable = [], {}
    for res in pending_moves(dataset_id).get(dataset_id, []):
        source = object_store.url_organization(res.s3_url)
        if source is None:
            unmovable[res.id] = (f"its s3_url {res.s3_url} is not in a "
                                 "bucket of this site's object store")
            continue
        moves.append(ResourceMove(res.id, source, str(res.owner_org),
                                  res.sha256))
    return moves, unmovable


def move_dataset(dataset_id: str, *, wait: bool = True,
                 on_resource: Callable[[str, str | None], None] | None = None
                 ) -> MoveOutcome:
    """Move every object of a dataset to its organization's bucket.

    ``on_resource(resource_id, error)`` is called per resource (error None
    when moved). With ``wait=False`` MoveBusy is raised at once if another
    process moves the dataset. Idempotent: nothing to do, nothing done.
    """
    outcome = MoveOutcome()
    with _dataset_lock(dataset_id, wait):
        for _ in range(MAX_ROUNDS):
            moves, unmovable = plan_moves(dataset_id)
            for rid, why in unmovable.items():
                _note(outcome, on_resource, rid, why)
            if not moves:
                break
            if not _move_round(dataset_id, moves, outcome, on_resource):
                break  # failures: retrying at once would fail again
    return outcome


def _note(outcome: MoveOutcome,
          on_resource: Callable[[str, str | None], None] | None,
          resource_id: str, error: str | None) -> None:
    if error is None:
        outcome.moved.append(resource_id)
    else:
        outcome.failed[resource_id] = error
        log.error("Moving resource %s failed: %s", resource_id, error)
    if on_resource is not None:
        on_resource(resource_id, error)


def _move_round(dataset_id: str, moves: list[ResourceMove],
                outcome: MoveOutcome,
                on_resource: Callable[[str, str | None], None] | None
                ) -> bool:
    """Copy, verify, tag, delete, switch. Returns whether all moved."""
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
         for move, artifacts in done.items() for artifact in artifacts],
        assume_closed=())
    _delete_sources(done)
    _switch(dataset_id, done)
    visibility.sync_dataset(dataset_id,
                            extra_orgs={move.source_org for move in done})
    for move in done:
        _note(outcome, on_resource, move.resource_id, None)
    return len(done) == len(moves)


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
    except object_store.ObjectStoreError as exc:
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
            raise MoveError(f"the copy at {target}/{key} has SHA256 {found}"
                            f", expected {expected}, and its source is gone")
        return found
    expected = expected or transfer.object_sha256(source, key)
    if object_store.object_exists(target, key):
        found = transfer.object_sha256(target, key)
        if found == expected:
            return found  # copied by an earlier, interrupted run
    return transfer.copy_verified(source, key, target,
                                  expected_sha256=expected)


def _delete_sources(done: dict[ResourceMove, dict[str, str]]) -> None:
    by_bucket: dict[str, list[str]] = {}
    for move, artifacts in done.items():
        by_bucket.setdefault(object_store.bucket_name(move.source_org),
                             []).extend(
            layout.object_key(move.resource_id, artifact)
            for artifact in artifacts)
    for bucket, keys in by_bucket.items():
        object_store.delete_objects(bucket, keys)


def _switch(dataset_id: str, done: dict[ResourceMove, dict[str, str]]
            ) -> None:
    """Point ``s3_url`` at the copies (and record a missing sha256)."""
    fields = {}
    for move, artifacts in done.items():
        url = object_store.object_url(
            object_store.bucket_name(move.target_org),
            layout.object_key(move.resource_id))
        fields[move.resource_id] = {"s3_url": url}
        if not move.sha256:
            fields[move.resource_id]["sha256"] = artifacts["resource"]
    ckan_data.merge_resource_fields({dataset_id: fields})
    ckan_data.reindex_dataset(dataset_id)


@contextlib.contextmanager
def _dataset_lock(dataset_id: str, wait: bool) -> Iterator[None]:
    """A PostgreSQL advisory lock on the dataset, held by a connection of
    its own: released when the process dies, whatever the way."""
    key = f"dcor-depot-move:{dataset_id}"
    with model.meta.engine.connect() as conn:
        if wait:
            conn.execute(sa.text(
                "SELECT pg_advisory_lock(hashtextextended(:k, 0))"),
                {"k": key})
        elif not conn.execute(sa.text(
                "SELECT pg_try_advisory_lock(hashtextextended(:k, 0))"),
                {"k": key}).scalar():
            raise MoveBusy(f"dataset {dataset_id} is being moved by another "
                           "process; try again when it has finished")
        conn.commit()  # no transaction stays open while the data move
        try:
            yield
        finally:
            conn.execute(sa.text(
                "SELECT pg_advisory_unlock(hashtextextended(:k, 0))"),
                {"k": key})
            conn.commit()


# --- the background job ----------------------------------------------------

def move_job_id(dataset_id: str, again: bool = False) -> str:
    return f"{layout.check_id(dataset_id)}-move{'-again' if again else ''}"


def move_dataset_job(dataset_id: str) -> list[str]:
    """Background job queued after a dataset changed organization."""
    outcome = move_dataset(dataset_id)
    if outcome.failed:
        raise MoveError(
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
    for jid in (move_job_id(dataset_id), move_job_id(dataset_id, True)):
        status = _job_status(jid)
        if status in (JobStatus.QUEUED, JobStatus.DEFERRED,
                      JobStatus.SCHEDULED):
            return None  # reads the state when it starts
        if status == JobStatus.STARTED:
            continue  # may have planned already: queue a second one
        ckan_jobs.enqueue(move_dataset_job, [dataset_id],
                          title=f"Move the data of dataset {dataset_id}",
                          queue=QUEUE, rq_kwargs={
                              "job_id": jid,
                              "timeout": move_timeout(dataset_id)})
        return jid
    return None


def move_timeout(dataset_id: str) -> int:
    size = sum(res.size for res in ckan_data.stored_resources(dataset_id))
    # Each byte is copied once and read back once (sometimes twice).
    return BASE_TIMEOUT + 3 * size // BYTES_PER_SECOND


def _job_status(jid: str) -> JobStatus | None:
    try:
        job = Job.fetch(jid, connection=ckan_jobs.connect_to_redis())
    except NoSuchJobError:
        return None
    return job.get_status(refresh=False)


def request_move_if_needed(dataset_id: str) -> str | None:
    """Queue the move job if the dataset has data outside its bucket (a
    resource recorded while the dataset changed organization)."""
    if pending_moves(dataset_id):
        return enqueue_move(dataset_id)
    return None
