"""Queueing the plugin's background jobs at most once.

Every job reads the state it acts on when it starts, so a job that is
still waiting will see any later change: queueing a second one is waste.
A job that already started may have read too early; then one follow-up
job (``{id}-again``) is queued. If that one has started too, a job under
a unique id is queued: a change is never left without a job that reads
it after the change.
"""
from __future__ import annotations

import contextlib
import logging
import secrets
import time
from collections.abc import Callable, Sequence
from typing import Any

from ckan.lib import jobs as ckan_jobs
from redis.exceptions import LockError
from rq import Queue, Retry
from rq.job import Dependency, Job, JobStatus, NoSuchJobError
from rq.registry import StartedJobRegistry

from ckanext.dcor_depot.records import rq_compat

log = logging.getLogger(__name__)

#: States in which a job has not read anything yet.
WAITING = frozenset({JobStatus.QUEUED, JobStatus.DEFERRED,
                     JobStatus.SCHEDULED})
#: States in which a job will still run or is running.
PENDING = WAITING | {JobStatus.STARTED}
#: How often RQ runs a job again whose worker died (or that raised):
#: every job of the plugin is idempotent and reads its state anew.
RETRIES = 2


def retry_policy() -> Retry:
    """RQ's retry of the plugin's jobs: at once, with no scheduler."""
    return Retry(max=RETRIES)


def recover_abandoned(queue_names: Sequence[str]) -> None:
    """Have RQ re-queue the jobs whose worker died, now.

    RQ notices a dead worker's job only when a worker cleans its
    registries (every 10 minutes); cleaning them before each job and on
    each enqueue runs such a job again about 90 s after its worker died
    (its heartbeat's lifetime). Never raises: it runs in the worker.
    """
    for name in queue_names:
        recover_abandoned_of(ckan_jobs.get_queue(name))


def recover_abandoned_of(queue: Queue) -> None:
    """:func:`recover_abandoned` for one queue object."""
    try:
        _cleanup(queue)
    except Exception as exc:  # noqa: BLE001 - a worker must go on
        log.warning("Cleaning the registry of queue %s failed: %s",
                    queue.name, exc)


def job_status(job_id: str) -> JobStatus | None:
    """The status of a job (None: no such job)."""
    try:
        job = Job.fetch(job_id, connection=ckan_jobs.connect_to_redis())
    except NoSuchJobError:
        return None
    return current_status(job)


def current_status(job: Job) -> JobStatus:
    """The job's status, with a killed job's "started" corrected.

    A worker killed with its job (SIGKILL, OOM, a lost machine) leaves the
    job "started"; RQ only notices at a worker's next maintenance (every
    10 minutes) once the job's heartbeat expired (about 90 s). Until then
    the job would look pending and block its re-queueing: here the
    registry is cleaned by RQ's own means as soon as the heartbeat expired.
    """
    status = job.get_status(refresh=False)
    if status == JobStatus.DEFERRED:
        return _deferred_status(job)
    if status != JobStatus.STARTED:
        return status
    registry = StartedJobRegistry(job.origin, connection=job.connection)
    if job.id not in registry.get_expired_job_ids():
        return status
    # Marks it failed (or re-queues it, with retries).
    _cleanup(Queue(job.origin, connection=job.connection))
    return job.get_status(refresh=True)


def _deferred_status(job: Job) -> JobStatus:
    """The status of a follow-up job, released if a job it waits for has
    failed (the plugin's chains allow failure)."""
    rq_compat.release_dependents(job)
    return job.get_status(refresh=True)


def _cleanup(queue: Queue) -> None:
    """Clean the queue's registry of started jobs under RQ's maintenance
    lock, as RQ's workers do: two cleanings at once would both re-queue
    an abandoned job, which would then run twice at the same time."""
    # RQ's own lock key, held for at most a minute (RQ: 15 minutes) in
    # case this process dies while it holds it; redis-py's lock releases
    # it only while it is still ours.
    lock = queue.connection.lock(queue.registry_cleaning_key, timeout=60)
    if not lock.acquire(blocking=False):
        return  # another process cleans it right now
    try:
        registry = StartedJobRegistry(queue=queue)
        # One moment for both: a job expiring in between would be failed
        # without its follow-ups being queued.
        now = time.time()
        expired = registry.get_expired_job_ids(now)
        registry.cleanup(now)
        rq_compat.queue_dependents_of_failed(queue, expired)
    finally:
        with contextlib.suppress(LockError):
            lock.release()


def is_pending(job_id: str) -> bool:
    return job_status(job_id) in PENDING


def last_pending(job_id: str) -> str:
    """The job of ``job_id`` that will run last: its follow-up
    (:func:`enqueue_once`) if that is pending, else ``job_id``."""
    again = f"{job_id}-again"
    return again if is_pending(again) else job_id


def enqueue_once(func: Callable[..., Any], args: Sequence[Any], *,
                 job_id: str, queue: str, timeout: int, title: str,
                 after: str | None = None) -> str | None:
    """Queue ``func(*args)`` as ``job_id`` unless a job that has not
    started yet will do the same; returns the id queued (or None).

    Every job of the plugin is queued here. With ``after``, the job runs
    once the job of that id ended, also if it failed.
    """
    connection = ckan_jobs.connect_to_redis()
    unique = f"{job_id}-{secrets.token_hex(4)}"
    for jid in (job_id, f"{job_id}-again", unique):
        try:
            job: Job | None = Job.fetch(jid, connection=connection)
        except NoSuchJobError:
            job = None
        status = current_status(job) if job else None
        if status in WAITING:
            return None  # reads the state when it starts
        if status == JobStatus.STARTED:
            continue  # may have read already: queue a follow-up
        if job is not None:
            # An ended job's key expires; a new job under its id would
            # inherit the expiry and could vanish before it runs.
            rq_compat.delete_job(job)
        rq_kwargs: dict[str, Any] = {"job_id": jid, "timeout": timeout,
                                     "retry": retry_policy()}
        if after is not None and is_pending(after):
            rq_kwargs["depends_on"] = Dependency(jobs=[after],
                                                 allow_failure=True)
        ckan_jobs.enqueue(func, list(args), title=title, queue=queue,
                          rq_kwargs=rq_kwargs)
        return jid
    raise AssertionError("unreachable: the unique id is never taken")
