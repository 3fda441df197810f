"""A job whose worker was killed does not block its re-queueing until its
timeout: once its heartbeat expired it counts as failed and can be queued
again (RQ alone would notice only at a worker's next maintenance)."""
from __future__ import annotations

import subprocess
import time
import uuid
from collections.abc import Iterator

import pytest
import rq
from ckan.lib import jobs as ckan_jobs
from rq import Queue
from rq.job import Dependency, Job, JobStatus
from rq.registry import StartedJobRegistry

from ckanext.dcor_depot.cli.worker import PreloadedWorker
from ckanext.dcor_depot.records import job_queue
from tests.support.stack import kill_tree, wait_for

QUEUE = "dcor-normal"


def test_a_killed_workers_job_can_be_queued_again(pipeline, start_worker):
    job_id = "killed-worker-job"
    ckan_jobs.enqueue(time.sleep, [3600], queue=QUEUE, title="sleeps",
                      rq_kwargs={"job_id": job_id, "timeout": 7200})
    worker = start_worker(QUEUE)
    wait_for(lambda: job_queue.job_status(job_id) == JobStatus.STARTED,
             timeout=120, what="the job to start")
    kill_tree(worker.pid)  # the worker and its work horse, no goodbye
    worker.wait(30)
    assert job_queue.is_pending(job_id)  # its heartbeat is still fresh

    # The heartbeat lasts the monitoring interval (30 s) + 60 s.
    wait_for(lambda: not job_queue.is_pending(job_id), timeout=180,
             interval=2, what="the killed job to count as failed")
    assert job_queue.job_status(job_id) == JobStatus.FAILED
    queued = job_queue.enqueue_once(time.sleep, [0], job_id=job_id,
                                    queue=QUEUE, timeout=60, title="again")
    assert queued == job_id
    assert job_queue.job_status(job_id) == JobStatus.QUEUED


def test_the_plugins_worker_runs_a_dead_workers_job_again(
        pipeline, start_worker, tmp_path):
    """The plugin's jobs are queued with retries and its worker cleans
    RQ's registries every minute: a job whose worker was SIGKILLed runs
    again within minutes (RQ alone: when the timeout ends, here 2 h)."""
    first_run, second_run = tmp_path / "first", tmp_path / "second"
    # A job the worker can import: it sleeps on its first run only.
    script = (f"if [ -e {first_run} ]; then touch {second_run}; "
              f"else touch {first_run}; sleep 3600; fi")
    job_id = job_queue.enqueue_once(
        subprocess.check_call, [["sh", "-c", script]],
        job_id="dead-worker-job", queue=QUEUE, timeout=7200,
        title="sleeps on its first run")
    assert job_id == "dead-worker-job"
    first = start_worker(QUEUE, command=("dcor-depot-worker",))
    wait_for(first_run.exists, timeout=120, what="the first run to start")
    kill_tree(first.pid)
    first.wait(30)
    killed_at = time.monotonic()

    start_worker(QUEUE, command=("dcor-depot-worker",))
    wait_for(lambda: job_queue.job_status(job_id) == JobStatus.FINISHED,
             timeout=300, interval=2, what="the job to run again")
    assert time.monotonic() - killed_at < 300
    assert second_run.exists()


def abandoned_with_follow_up(queue: Queue) -> tuple[Job, Job]:
    """A job left "started" by a worker SIGKILLed mid-job, no retries
    left, its heartbeat expired; and its follow-up job (queued with
    ``allow_failure``, as the plugin's chains are)."""
    parent = queue.enqueue("os.getcwd")
    follow_up = queue.enqueue("os.getcwd", depends_on=Dependency(
        jobs=[parent], allow_failure=True))
    assert follow_up.get_status() == JobStatus.DEFERRED
    queue.remove(parent)
    parent.set_status(JobStatus.STARTED)
    entry = parent.id if rq.VERSION.startswith("1.") else f"{parent.id}:gone"
    queue.connection.zadd(StartedJobRegistry(queue=queue).key, {entry: 1})
    return parent, follow_up


SCRATCH = f"dcor-test-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def scratch_queue(pipeline) -> Iterator[Queue]:
    """A queue of the site's (CKAN prefixes its name) no worker serves."""
    queue = ckan_jobs.get_queue(SCRATCH)
    yield queue
    queue.empty()


def test_the_follow_up_of_a_job_abandoned_for_good_runs(scratch_queue):
    """Found by the plugin (a status query), with RQ 1.x (CKAN 2.11)
    too, which leaves the follow-up deferred for ever."""
    parent, follow_up = abandoned_with_follow_up(scratch_queue)

    assert job_queue.job_status(parent.id) == JobStatus.FAILED
    assert follow_up.get_status(refresh=True) == JobStatus.QUEUED
    assert follow_up.id in scratch_queue.get_job_ids()


def test_the_workers_maintenance_queues_the_follow_up(scratch_queue):
    """Found first by the maintenance of `dcor-depot-worker` (RQ 1.x's
    own cleaning would fail the job and leave the follow-up deferred)."""
    parent, follow_up = abandoned_with_follow_up(scratch_queue)

    PreloadedWorker([SCRATCH]).clean_registries()

    assert parent.get_status(refresh=True) == JobStatus.FAILED
    assert follow_up.get_status(refresh=True) == JobStatus.QUEUED


def test_a_follow_up_left_deferred_by_rq_is_released(scratch_queue):
    """RQ's own maintenance (`ckan jobs worker`) got there first: on RQ
    1.x the follow-up stays deferred; asking the plugin releases it, so
    `run-jobs-dcor-depot` never counts it as waiting."""
    parent, follow_up = abandoned_with_follow_up(scratch_queue)
    StartedJobRegistry(queue=scratch_queue).cleanup()
    assert parent.get_status(refresh=True) == JobStatus.FAILED

    assert job_queue.job_status(follow_up.id) == JobStatus.QUEUED
    assert follow_up.id in scratch_queue.get_job_ids()
