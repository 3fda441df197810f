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
#: The plain worker's queue: no other worker of the test serves it.
PLAIN_QUEUE = "dcor-short"


# About 95 s, most of it waiting for RQ's heartbeat (monitoring interval
# 30 s + 60 s) to expire: `make test-slow`.
@pytest.mark.slow
def test_killed_workers_jobs_are_queued_again_and_run_again(
        pipeline, start_worker, tmp_path):
    """Two workers are SIGKILLed mid-job at the same moment (one wait for
    both heartbeats to expire, about 90 s):

    - CKAN's plain worker: its job does not block its re-queueing until
      its timeout; once its heartbeat expired it counts as failed and
      can be queued again (RQ alone would notice only at a worker's next
      maintenance).
    - ``dcor-depot-worker``: the plugin's jobs are queued with retries
      and its worker cleans RQ's registries every minute, so the job
      runs again within minutes (RQ alone: when the timeout ends, 2 h).
    """
    plain_job = "killed-worker-job"
    ckan_jobs.enqueue(time.sleep, [3600], queue=PLAIN_QUEUE, title="sleeps",
                      rq_kwargs={"job_id": plain_job, "timeout": 7200})
    first_run, second_run = tmp_path / "first", tmp_path / "second"
    # A job the worker can import: it sleeps on its first run only.
    script = (f"if [ -e {first_run} ]; then touch {second_run}; "
              f"else touch {first_run}; sleep 3600; fi")
    plugin_job = job_queue.enqueue_once(
        subprocess.check_call, [["sh", "-c", script]],
        job_id="dead-worker-job", queue=QUEUE, timeout=7200,
        title="sleeps on its first run")
    assert plugin_job == "dead-worker-job"
    plain = start_worker(PLAIN_QUEUE)
    plugins = start_worker(QUEUE, command=("dcor-depot-worker",))
    wait_for(lambda: job_queue.job_status(plain_job) == JobStatus.STARTED,
             timeout=120, what="the plain worker's job to start")
    wait_for(first_run.exists, timeout=120, what="the first run to start")
    for worker in (plain, plugins):
        kill_tree(worker.pid)  # the worker and its work horse, no goodbye
        worker.wait(30)
    assert job_queue.is_pending(plain_job)  # its heartbeat is still fresh
    start_worker(QUEUE, command=("dcor-depot-worker",))

    # The heartbeat lasts the monitoring interval (30 s) + 60 s.
    wait_for(lambda: not job_queue.is_pending(plain_job), timeout=180,
             interval=2, what="the killed job to count as failed")
    assert job_queue.job_status(plain_job) == JobStatus.FAILED
    queued = job_queue.enqueue_once(time.sleep, [0], job_id=plain_job,
                                    queue=PLAIN_QUEUE, timeout=60,
                                    title="again")
    assert queued == plain_job
    assert job_queue.job_status(plain_job) == JobStatus.QUEUED

    wait_for(lambda: job_queue.job_status(plugin_job) == JobStatus.FINISHED,
             timeout=300, interval=2, what="the plugin's job to run again")
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
