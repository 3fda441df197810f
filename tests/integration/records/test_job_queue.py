"""A job is queued once, and a change is never left without a job that
reads it (real Redis, real RQ jobs)."""
from __future__ import annotations

import uuid

import pytest
from ckan.lib import jobs as ckan_jobs
from rq.job import Job, JobStatus

from ckanext.dcor_depot.records import job_queue, search_index


@pytest.fixture
def queue_once(clean_queues, with_plugins):
    base = f"test-{uuid.uuid4().hex[:8]}-reindex"

    def enqueue() -> str | None:
        return job_queue.enqueue_once(
            search_index.reindex_datasets, [["no-such-dataset"]],
            job_id=base, queue=search_index.QUEUE, timeout=60,
            title="test")
    return base, enqueue


def set_status(job_id: str, status: JobStatus) -> None:
    job = Job.fetch(job_id, connection=ckan_jobs.connect_to_redis())
    job.set_status(status)


def test_a_waiting_job_is_not_queued_twice(queue_once):
    base, enqueue = queue_once
    assert enqueue() == base
    assert job_queue.job_status(base) == JobStatus.QUEUED
    assert enqueue() is None  # it will read the change when it starts


def test_a_started_job_gets_one_follow_up(queue_once):
    base, enqueue = queue_once
    enqueue()
    set_status(base, JobStatus.STARTED)
    assert enqueue() == f"{base}-again"
    assert enqueue() is None  # the follow-up waits


def test_when_both_started_a_unique_job_is_queued(queue_once):
    base, enqueue = queue_once
    enqueue()
    set_status(base, JobStatus.STARTED)
    enqueue()
    set_status(f"{base}-again", JobStatus.STARTED)
    third = enqueue()
    assert third is not None and third.startswith(f"{base}-")
    assert third not in (base, f"{base}-again")
    assert job_queue.job_status(third) == JobStatus.QUEUED


def test_an_ended_job_is_replaced_under_its_id(queue_once):
    base, enqueue = queue_once
    enqueue()
    set_status(base, JobStatus.FINISHED)
    assert enqueue() == base
    assert job_queue.job_status(base) == JobStatus.QUEUED
