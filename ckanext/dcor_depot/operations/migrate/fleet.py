"""Migration by the site's workers (``--via-workers``): queue, run, follow.

:func:`queue_run` plans the selected resources as a local run does
(skips and errors are decided at once) and queues the rest as jobs of
the site's workers (``ckan dcor-depot-worker``, on any host that mounts
the same storage), small resources batched so that a job's fixed cost
does not dominate. Each job (:func:`migrate_batch`) runs the bulk engine
of a local run on its resources and reports one outcome per resource to
the run's list in Redis (:mod:`~ckanext.dcor_depot.records.migration_runs`);
:func:`follow_run` reads those lists and RQ's job states until every
resource has its outcome, so the command prints what a local run prints.

A resource whose job (with the same options) is queued, running or
ended without failing it is not queued again: the run follows that job.
A job whose worker died runs again (RQ's retries); it repeats the
resources it had done, which costs a look at the store each.
"""
from __future__ import annotations

import collections
import datetime
import hashlib
import logging
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict
from typing import Any

from ckan.lib import jobs as ckan_jobs
from rq.job import Job, JobStatus

from ckanext.dcor_depot import errors
from ckanext.dcor_depot.operations.migrate.plan import (
    MigrationOptions,
    plan_resource,
    skip_reason,
)
from ckanext.dcor_depot.operations.migrate.record import (
    ResourceOutcome,
    Status,
)
from ckanext.dcor_depot.operations.migrate.run import migrate_resources
from ckanext.dcor_depot.records import (
    inventory,
    job_queue,
    migration_runs,
    search_index,
)
from ckanext.dcor_depot.records.migration_runs import JobRef, Run
from ckanext.dcor_depot.storage import layout

log = logging.getLogger(__name__)

MiB = 2**20
#: A job takes resources until their files hold this many bytes ...
BATCH_BYTES = 1024 * MiB
#: ... or it has this many: a job costs a fork, a few queries and the
#: bucket's settings checked again (~0.3 s; 300 x 16 MiB with two
#: workers: 256 MiB jobs 0.86 x a local run, 1 GiB jobs 0.95 x).
BATCH_RESOURCES = 50
#: Seconds a job may take beyond its bytes at :data:`ASSUMED_RATE`.
JOB_TIMEOUT_BASE = 600
ASSUMED_RATE = 20 * MiB
#: Seconds between two looks at a run's outcomes, and between two looks
#: at its jobs' states.
POLL_INTERVAL = 0.2
JOB_CHECK_INTERVAL = 5.0
ENDED = frozenset({JobStatus.FINISHED, JobStatus.FAILED, JobStatus.STOPPED,
                   JobStatus.CANCELED})

Outcome = dict[str, Any]


def signature(options: MigrationOptions) -> str:
    """Names the work a job does for a resource: equal options, equal
    work (a dry run is never queued)."""
    return "".join(flag for flag, on in (
        ("e", options.verify_existence), ("c", options.verify_checksum),
        ("d", options.delete_local)) if on) or "plain"


def outcome_dict(outcome: ResourceOutcome) -> Outcome:
    """A resource's outcome as the run's list keeps it."""
    return {"id": outcome.record.id, "status": outcome.status.value,
            "line": outcome.describe(), "deleted": outcome.deleted}


def batch_job_id(options: MigrationOptions, resource_ids: list[str]) -> str:
    """The job id of resources: derived from them and the options."""
    if len(resource_ids) == 1:
        return f"dcor-migrate-{signature(options)}-{resource_ids[0]}"
    digest = hashlib.sha256("\n".join(sorted(resource_ids)).encode())
    return (f"dcor-migrate-{signature(options)}-{len(resource_ids)}-"
            f"{digest.hexdigest()[:16]}")


def file_size(resource_id: str) -> int:
    try:
        return layout.ckan_upload_path(resource_id).stat().st_size
    except OSError:
        return 0


def batches(records: Iterable[inventory.ResourceRecord],
            size_of: Callable[[str], int] = file_size
            ) -> Iterator[list[inventory.ResourceRecord]]:
    """Records in jobs: one bucket per job, in key order, at most
    :data:`BATCH_RESOURCES` or :data:`BATCH_BYTES` (a larger file alone)."""
    ordered = sorted(records, key=lambda r: (r.owner_org or "", r.id))
    batch: list[inventory.ResourceRecord] = []
    size = 0
    for record in ordered:
        record_size = size_of(record.id)
        if batch and (record.owner_org != batch[0].owner_org
                      or len(batch) >= BATCH_RESOURCES
                      or size + record_size > BATCH_BYTES):
            yield batch
            batch, size = [], 0
        batch.append(record)
        size += record_size
    if batch:
        yield batch


# --- the job ---------------------------------------------------------------

def migrate_batch(run_id: str, resource_ids: list[str],
                  options: dict[str, bool], threads: int,
                  dataset_ids: list[str] | None = None) -> int:
    """The job: migrate these resources as a local run would, reporting
    each outcome to the run's list at once. Returns how many failed.

    The resources are read anew (a resource deleted meanwhile is
    reported skipped); the engine verifies, records and, with
    ``delete_local``, deletes only verified files. ``dataset_ids`` are the
    datasets the job was counted for at queueing (index updates).
    """
    migration = MigrationOptions(**options)
    records = inventory.resource_records(resource_ids=resource_ids)
    found = {record.id for record in records}
    migration_runs.add_outcomes(run_id, [
        {"id": rid, "status": Status.SKIPPED.value, "deleted": 0,
         "line": "not migrated: the resource or its dataset was deleted"}
        for rid in resource_ids if rid not in found])
    failed = 0

    def report(outcome: ResourceOutcome) -> None:
        nonlocal failed
        failed += outcome.status is Status.FAILED
        migration_runs.add_outcomes(run_id, [outcome_dict(outcome)])

    changed: list[str] = []
    try:
        changed = migrate_resources(records, migration, report,
                                    jobs=threads, hold_index=True).ready
    finally:
        # A dataset is reindexed once, by the run's last job with it
        # (per job, a dataset spread over many jobs would be reindexed
        # again and again while the run goes on).
        counted = (dataset_ids if dataset_ids is not None
                   else [record.dataset_id for record in records])
        _done_with(run_id, counted, changed)
    return failed


def _done_with(run_id: str, dataset_ids: Iterable[str],
               changed: Iterable[str]) -> None:
    for dataset_id in migration_runs.job_done_with(run_id, dataset_ids,
                                                   changed):
        search_index.reindex_later(dataset_id)


# --- queueing --------------------------------------------------------------

def queue_run(records: list[inventory.ResourceRecord],
              options: MigrationOptions, queue: str, threads: int,
              now: datetime.datetime | None = None) -> Run:
    """Plan the resources, queue their jobs; return the saved run.

    Skips and planning errors are reported to the run's list at once.
    """
    if options.dry_run:
        raise ValueError("a dry run is not queued")
    now = now or datetime.datetime.now(datetime.timezone.utc)
    run = Run(run_id=migration_runs.new_run_id(now),
              created=now.isoformat(), queue=queue, options=asdict(options),
              total=len(records))
    decided, todo = _decide_here(records, options)
    migration_runs.save(run)
    migration_runs.add_outcomes(run.run_id, decided)
    fresh = _join_earlier(run, todo, options)
    cut = list(batches(fresh))
    # Before the jobs: each counts itself off when done (index updates).
    migration_runs.count_dataset_jobs(run.run_id, collections.Counter(
        dataset_id for batch in cut
        for dataset_id in {record.dataset_id for record in batch}))
    for batch in cut:
        _queue_batch(run, batch, options, threads)
    migration_runs.save(run)
    return run


def _decide_here(records: list[inventory.ResourceRecord],
                 options: MigrationOptions
                 ) -> tuple[list[Outcome], list[inventory.ResourceRecord]]:
    """(outcomes of resources no job is needed for, resources to queue)"""
    decided: list[Outcome] = []
    todo: list[inventory.ResourceRecord] = []
    for record in records:
        outcome = ResourceOutcome(record)
        try:
            plan = plan_resource(record, options)
        except (errors.StoreError, ValueError) as exc:
            outcome.errors.append(str(exc))
            decided.append(outcome_dict(outcome))
            continue
        if plan is None:
            outcome.skipped_reason = skip_reason(record, options)
            decided.append(outcome_dict(outcome))
        else:
            todo.append(record)
    return decided, todo


def _join_earlier(run: Run, records: list[inventory.ResourceRecord],
                  options: MigrationOptions
                  ) -> list[inventory.ResourceRecord]:
    """Follow the resources an earlier job has (or is doing); return the
    others."""
    refs = migration_runs.jobs_of(signature(options),
                                  [record.id for record in records])
    judge = _EarlierJobs()
    fresh = []
    for record in records:
        ref = refs.get(record.id)
        if ref is not None and judge.still_counts(ref, record.id):
            run.joined.setdefault(ref.run_id, {})[record.id] = ref.job_id
        else:
            fresh.append(record)
    return fresh


class _EarlierJobs:
    """Whether a resource's earlier job will do (or did) its work."""

    def __init__(self) -> None:
        self.states: dict[str, JobStatus | None] = {}
        self.failed_in: dict[str, set[str]] = {}

    def still_counts(self, ref: JobRef, resource_id: str) -> bool:
        if ref.job_id not in self.states:
            self.states[ref.job_id] = job_queue.job_status(ref.job_id)
        state = self.states[ref.job_id]
        if state in job_queue.PENDING:
            return True
        if state != JobStatus.FINISHED:
            return False  # failed (retries spent), stopped or expired
        if ref.run_id not in self.failed_in:
            self.failed_in[ref.run_id] = {
                item["id"] for item in migration_runs.outcomes(ref.run_id)
                if item["status"] == Status.FAILED.value}
        reported = self.failed_in[ref.run_id]
        return resource_id not in reported


def _queue_batch(run: Run, batch: list[inventory.ResourceRecord],
                 options: MigrationOptions, threads: int) -> None:
    ids = [record.id for record in batch]
    datasets = sorted({record.dataset_id for record in batch})
    planned = batch_job_id(options, ids)
    # The pointers first: a rerun after a crash here finds no job behind
    # them and queues the resources again.
    migration_runs.set_jobs_of(signature(options),
                               {rid: JobRef(run.run_id, planned)
                                for rid in ids})
    size = sum(file_size(rid) for rid in ids)
    queued = job_queue.enqueue_once(
        migrate_batch, [run.run_id, ids, asdict(options), threads,
                        datasets],
        job_id=planned, queue=run.queue,
        timeout=JOB_TIMEOUT_BASE + size // ASSUMED_RATE,
        title=f"Migrate {len(ids)} resources to the object store "
              f"(run {run.run_id})")
    if queued is None:
        # Another run queued the same batch a moment ago: follow its job.
        other = _run_of_waiting_job(planned)
        if other is not None and other != run.run_id:
            run.joined.setdefault(other, {}).update(
                dict.fromkeys(ids, planned))
            migration_runs.set_jobs_of(signature(options),
                                       {rid: JobRef(other, planned)
                                        for rid in ids})
            _done_with(run.run_id, datasets, ())  # no job of this run
            return
    job_id = queued or planned
    if job_id != planned:
        migration_runs.set_jobs_of(signature(options),
                                   {rid: JobRef(run.run_id, job_id)
                                    for rid in ids})
    run.jobs[job_id] = ids


def _run_of_waiting_job(job_id: str) -> str | None:
    """The run a queued migration job reports to (None: no such job)."""
    try:
        job = Job.fetch(job_id, connection=ckan_jobs.connect_to_redis())
        return str(job.args[0])
    except Exception:  # noqa: BLE001 - gone meanwhile, or not ours
        return None


# --- following -------------------------------------------------------------

class RunFollower:
    """Reads a run's outcomes (and those of the earlier runs it joined)
    and its jobs' states: :meth:`poll` returns what is new."""

    def __init__(self, run: Run) -> None:
        self.run = run
        #: resource -> the job that reports it (None: reported at queueing)
        self.job_of: dict[str, str | None] = {}
        for job_id, ids in run.jobs.items():
            self.job_of.update(dict.fromkeys(ids, job_id))
        for resources in run.joined.values():
            self.job_of.update(resources)
        self.read_from = {run.run_id: 0, **dict.fromkeys(run.joined, 0)}
        self.seen: dict[str, Outcome] = {}
        self.last_job_check = -JOB_CHECK_INTERVAL

    @property
    def done(self) -> bool:
        return len(self.seen) >= self.run.total

    def poll(self, now: float) -> list[Outcome]:
        """New outcomes; failures for resources whose job ended without
        reporting them (checked every :data:`JOB_CHECK_INTERVAL` s)."""
        new = self._read()
        if not self.done and now - self.last_job_check >= JOB_CHECK_INTERVAL:
            self.last_job_check = now
            ended = self._ended_jobs()
            if ended:
                new += self._read()  # what they reported before ending
                new += self._unreported(ended)
        return new

    def _read(self) -> list[Outcome]:
        new = []
        for run_id, start in self.read_from.items():
            items = migration_runs.outcomes(run_id, start)
            self.read_from[run_id] = start + len(items)
            for item in items:
                rid = item["id"]
                ours = run_id == self.run.run_id or rid in self.job_of
                if ours and rid not in self.seen:
                    self.seen[rid] = item
                    new.append(item)
        return new

    def _ended_jobs(self) -> dict[str, str]:
        """{job id: why it ended} of the jobs with unreported resources."""
        waiting = sorted({job for rid, job in self.job_of.items()
                          if job is not None and rid not in self.seen})
        connection = ckan_jobs.connect_to_redis()
        ended = {}
        for job_id, job in zip(waiting, Job.fetch_many(
                waiting, connection=connection), strict=True):
            state = job_queue.current_status(job) if job else None
            if state is None:
                ended[job_id] = f"job {job_id} is gone"
            elif state in ENDED:
                ended[job_id] = f"job {job_id} {state.value}" + (
                    f": {_last_line(job.exc_info)}" if job.exc_info else
                    " without reporting it")
        return ended

    def _unreported(self, ended: dict[str, str]) -> list[Outcome]:
        new = []
        for rid, job_id in self.job_of.items():
            if job_id in ended and rid not in self.seen:
                item = {"id": rid, "status": Status.FAILED.value,
                        "line": ended[job_id], "deleted": 0}
                self.seen[rid] = item
                new.append(item)
        return new


def _last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1].strip() if lines else "failed"


def follow_run(run_id: str, on_outcome: Callable[[Outcome], None],
               sleep: Callable[[float], None] = time.sleep,
               clock: Callable[[], float] = time.monotonic) -> Run:
    """Call ``on_outcome`` for each resource of the run, in the order the
    outcomes arrive, until every resource has one. Raises ValueError for
    an unknown (or expired) run. Interrupting it leaves the jobs be."""
    run = migration_runs.load(run_id)
    if run is None:
        raise ValueError(f"no run {run_id} (runs are kept "
                         f"{migration_runs.KEEP // 86400} days)")
    follower = RunFollower(run)
    while True:
        for item in follower.poll(clock()):
            on_outcome(item)
        if follower.done:
            return run
        sleep(POLL_INTERVAL)
