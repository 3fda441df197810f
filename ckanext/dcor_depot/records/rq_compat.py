"""What RQ 1.x (CKAN 2.11) and RQ 2.x (CKAN 2.12) do differently, in one
place. Everything here goes when CKAN 2.11 support ends.

- RQ 1.x fails a job abandoned for good (its worker died, no retries
  left) but leaves the jobs that depend on it deferred for ever; the
  plugin's follow-up jobs allow failure, so they are queued here.
- RQ 2.x cannot delete a job whose execution record expired with its
  killed worker: its keys are deleted directly.
- The two name a worker's maintenance settings apart.
"""
from __future__ import annotations

from typing import Any

from rq import Queue
from rq.job import Job, JobStatus


def release_dependents(job: Job) -> None:
    """Queue the follow-ups of ``job``'s failed parents (RQ 1.x leaves
    them deferred)."""
    for parent in job.fetch_dependencies():
        if parent.get_status() == JobStatus.FAILED:
            Queue(parent.origin,
                  connection=job.connection).enqueue_dependents(parent)


def queue_dependents_of_failed(queue: Queue, job_ids: list[str]) -> None:
    """Queue the follow-ups of those of ``job_ids`` that failed (RQ 2
    queued them already; then this finds none)."""
    for job in Job.fetch_many(job_ids, connection=queue.connection):
        if job is not None and job.get_status() == JobStatus.FAILED:
            queue.enqueue_dependents(job)


def delete_job(job: Job) -> None:
    """Delete an ended job, also one whose worker was killed (RQ 2 raises
    ValueError for it, after it took the job out of its registries)."""
    try:
        job.delete()
    except ValueError:
        executions = getattr(job, "execution_registry", None)
        keys = [job.key, job.dependents_key, job.dependencies_key]
        if executions is not None:
            keys.append(executions.key)
        job.connection.delete(*keys)


def set_worker_timing(worker: Any, maintenance_interval: int,
                      ttl: int) -> None:
    """Set a worker's maintenance interval and key lifetime: attributes,
    since RQ 1 and RQ 2 name the arguments apart."""
    worker.maintenance_interval = maintenance_interval
    worker.worker_ttl = ttl
