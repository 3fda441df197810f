"""Search-index updates: coalesced for jobs, batched for bulk commands.

A job records its result with :func:`record_resource_fields`: the fields
are merged into the database at once (atomically, keeping every other
field) and the dataset's search-index entry follows in one background
job per dataset, however many jobs of its resources record meanwhile. A
job's cost therefore does not grow with the number of resources in its
dataset (reindexing a dataset dictizes all of them).

Bulk commands use :class:`IndexUpdates`: by the workers, or right here.

Reindexing a dataset (CKAN validates and dictizes it twice) costs about
as much CPU as moving 15 small files to the store. A bulk command whose
transfer threads share one interpreter lock with it therefore hands the
updates to the background workers when one listens on the queue, and
updates the index itself only when none does, so the index is never left
stale.
"""
from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Iterable, Mapping

import ckan.plugins.toolkit as tk
import redis
import rq
from ckan.lib import jobs as ckan_jobs

from ckanext.dcor_depot import names
from ckanext.dcor_depot.records import ckan_data, job_queue

log = logging.getLogger(__name__)

#: Behind the uploads' jobs (workers take dcor-short first): in a burst
#: of uploads a waiting update absorbs the changes of the jobs before it,
#: so a dataset is reindexed about once per burst, not once per upload.
QUEUE = names.QUEUE_NORMAL
JOB_TIMEOUT = 600
#: Seconds between two jobs of one command: a worker forks a process for
#: each job, which costs more than reindexing a few datasets.
JOB_INTERVAL = 30.0


def reindex_datasets(dataset_ids: list[str]) -> None:
    """Update the search index of datasets (also run as a background job).

    A dataset purged meanwhile is skipped; one that fails does not keep
    the others from being reindexed (the first error is raised at the end).
    """
    first_error: Exception | None = None
    for dataset_id in dataset_ids:
        try:
            ckan_data.reindex_dataset(dataset_id)
        except tk.ObjectNotFound:
            log.info("Dataset %s is gone; not reindexed", dataset_id)
        except Exception as exc:  # noqa: BLE001 - raised after the rest
            log.exception("Reindexing dataset %s failed", dataset_id)
            first_error = first_error or exc
    if first_error is not None:
        raise first_error


def reindex_job_id(dataset_id: str) -> str:
    """Fixed id of a dataset's search-index job (follow-up: ``…-again``)."""
    return f"{dataset_id}-reindex"


def batch_job_id(dataset_ids: list[str]) -> str:
    """Fixed id of the search-index job of these datasets."""
    digest = hashlib.sha256("\n".join(sorted(dataset_ids)).encode())
    return f"reindex-{len(dataset_ids)}-{digest.hexdigest()[:16]}"


def reindex_later(dataset_id: str) -> str | None:
    """Queue the search-index update of a dataset, unless a waiting one
    will read the change anyway; returns the id queued (or None).

    Without the queue (Redis unreachable) the index is updated here, so a
    recorded change never stays out of the index.
    """
    try:
        return job_queue.enqueue_once(
            reindex_datasets, [[dataset_id]],
            job_id=reindex_job_id(dataset_id), queue=QUEUE,
            timeout=JOB_TIMEOUT,
            title=f"Update the search index of dataset {dataset_id}")
    except redis.exceptions.RedisError as exc:
        log.warning("Cannot queue the search-index update of %s (%s); "
                    "updating it now", dataset_id, exc)
        reindex_datasets([dataset_id])
        return None


def record_resource_fields(dataset_id: str, resource_id: str,
                           fields: Mapping[str, object]) -> bool:
    """Record a job's result: merge ``fields`` into the resource now, and
    update the search index in a coalesced background job. Returns False
    if nothing changed (no fields, or the resource is gone or in another
    dataset).

    Without fields nothing is merged and nothing queued: a job that found
    its work done leaves the site as it was (a job that died between its
    merge and the queueing leaves the index behind until the dataset's
    next change or ``ckan search-index rebuild``; the database is right).
    """
    if not fields:
        return False
    changed = ckan_data.merge_resource_fields(
        {dataset_id: {resource_id: dict(fields)}})
    if changed:
        reindex_later(dataset_id)
    return bool(changed)


def worker_listens(queue_name: str = QUEUE) -> bool:
    """Whether a background worker of this site takes jobs from the queue."""
    queue = ckan_jobs.get_queue(queue_name)
    return bool(rq.Worker.all(queue=queue))


class IndexUpdates:
    """Datasets whose search-index entries are to be updated.

    :meth:`send` reindexes the datasets added so far in this process when
    no worker listens (checked once) or the queue cannot be reached. Else
    it queues them as one job, at most every :data:`JOB_INTERVAL` seconds
    unless ``final``: the index lags behind by at most that much.
    """

    def __init__(self, hold: bool = False) -> None:
        #: keep the datasets for the caller (``ready``) instead of sending
        self.hold = hold
        self._ready: list[str] = []
        self._background: bool | None = None
        self._last_job = time.monotonic()
        #: datasets queued for the workers / reindexed in this process
        self.queued = 0
        self.updated = 0
        #: datasets whose reindexing in this process failed (logged)
        self.failed: list[str] = []
        #: ids of the queued jobs
        self.job_ids: list[str] = []

    def add(self, dataset_ids: Iterable[str]) -> None:
        self._ready.extend(dataset_ids)

    @property
    def ready(self) -> list[str]:
        """The datasets added and not sent yet."""
        return sorted(set(self._ready))

    def send(self, final: bool = False) -> None:
        if not self._ready or self.hold:
            return
        if self._background is None:
            self._background = self._workers_available()
        if (self._background and not final
                and time.monotonic() - self._last_job < JOB_INTERVAL):
            return
        dataset_ids = sorted(set(self._ready))
        if self._background:
            self._last_job = time.monotonic()
            try:
                queued = job_queue.enqueue_once(
                    reindex_datasets, [dataset_ids],
                    job_id=batch_job_id(dataset_ids), queue=QUEUE,
                    timeout=JOB_TIMEOUT,
                    title=f"Update the search index of {len(dataset_ids)} "
                          "datasets")
                self._ready = []
                self.queued += len(dataset_ids)
                if queued is not None:
                    self.job_ids.append(queued)
                return
            except Exception as exc:  # noqa: BLE001 - fall back, not fail
                log.warning("Queueing a search-index update failed (%s); "
                            "updating it here", exc)
                self._background = False
        for dataset_id in dataset_ids:
            try:
                reindex_datasets([dataset_id])
                self.updated += 1
            except Exception:  # noqa: BLE001 - logged; data are recorded
                self.failed.append(dataset_id)
            # Removed only now: after an interrupt the rest is still here
            # for the final send.
            self._ready = [d for d in self._ready if d != dataset_id]

    @staticmethod
    def _workers_available() -> bool:
        try:
            return worker_listens()
        except Exception as exc:  # noqa: BLE001 - e.g. Redis unreachable
            log.warning("Cannot reach the job queue (%s); updating the "
                        "search index here", exc)
            return False
