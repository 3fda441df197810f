"""Work horses SIGKILLed at seeded random points of every job kind.

A real `ckan dcor-depot-worker` runs the jobs. For each iteration the
test waits until the job under test has started, sleeps a seeded random
part of the job's measured duration and SIGKILLs the work horse (and
anything it started), as the kernel's OOM killer would. RQ re-runs the
job (the plugin queues its jobs with retries); the test waits until it
finished. The scenario ends with the closing check of every resource
(tests.support.faults.check_intact).
"""
from __future__ import annotations

import os
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from ckan.lib import jobs as ckan_jobs
from rq.job import Job, JobStatus

from ckanext.dcor_depot import config
from ckanext.dcor_depot.operations import jobs, move
from ckanext.dcor_depot.records import job_queue
from tests.support import faults
from tests.support.access import (
    Org,
    dataset,
    direct_upload,
    fresh_resource,
    organization,
    upload,
)
from tests.support.data import sha256
from tests.support.live_site import LiveSite, ini_with
from tests.support.stack import (
    ckan_command,
    kill_tree,
    mounted_tmpfs,
    process_children,
    wait_for,
)

MiB = 2**20


@dataclass
class Work:
    """What one iteration made: the job to kill and the data to check."""
    job_id: str
    expected: dict[str, str]


@dataclass
class Scene:
    site: LiveSite
    org: Org
    other_org: Org
    rng: Any
    iteration: int = 0

    def data(self, low: int = 4 * MiB, high: int = 16 * MiB) -> bytes:
        return os.urandom(self.rng.randint(low, high))

    def new_dataset(self) -> dict[str, Any]:
        # Every other dataset public: open objects are checked too.
        self.iteration += 1
        return dataset(self.site, self.org, private=self.iteration % 2 == 0)


def upload_work(kind: jobs.JobKind,
                route: Callable[..., dict[str, Any]] = upload,
                ) -> Callable[[Scene], Work]:
    """A new resource by ``route`` (form upload or direct upload), and
    its ``kind`` job."""
    def make(scene: Scene) -> Work:
        data = scene.data()
        res = route(scene.site, scene.org.editor,
                    scene.new_dataset()["id"], data)
        return Work(jobs.job_id(res["id"], kind),
                    {res["id"]: sha256(data)})
    return make


def move_work(scene: Scene) -> Work:
    ds = scene.new_dataset()
    expected = {}
    for _ in range(2):
        data = scene.data(MiB, 8 * MiB)
        res = upload(scene.site, scene.org.editor, ds["id"], data)
        expected[res["id"]] = sha256(data)
    for rid in expected:
        wait_for(lambda rid=rid: fresh_resource(rid).get("s3_available"),
                 timeout=120, what=f"{rid} in the store")
    scene.site.action("package_patch", scene.org.editor.token, id=ds["id"],
                      owner_org=scene.other_org.id)
    return Work(move.move_job_id(ds["id"]), expected)


SCENES: dict[str, Callable[[Scene], Work]] = {
    "symlink": upload_work(jobs.SYMLINK),
    "s3-upload": upload_work(jobs.UPLOAD_S3),
    "s3-sha256": upload_work(jobs.SHA256_S3, direct_upload),
    "s3-backup": upload_work(jobs.BACKUP_S3, direct_upload),
    "move": move_work,
}


@pytest.fixture
def plugin_worker(request, site, tmp_path, ckan_config, monkeypatch
                  ) -> Iterator[subprocess.Popen]:
    """One `ckan dcor-depot-worker`; its users depot is a filesystem of
    its own, so the symlink job copies (the slow, interruptible way).

    The depot is mounted inside the live site's depots (a users depot
    name of this test's own): the site accepts only upload-path symlinks
    that lead into its depots (CKAN 2.11 checks every resource's path
    on each dataset update).
    """
    name = f"users-faults-{uuid.uuid4().hex[:8]}"
    with mounted_tmpfs(config.depots_path() / name, "1g"):
        yield from _worker(request, tmp_path, name, ckan_config,
                           monkeypatch)


def _worker(request, tmp_path: Path, users_depot_name: str, ckan_config,
            monkeypatch) -> Iterator[subprocess.Popen]:
    option = "ckanext.dcor_depot.users_depot_name"
    monkeypatch.setitem(ckan_config, option, users_depot_name)
    ini = ini_with(Path(request.config.getoption("--ckan-ini")),
                   tmp_path / "worker.ini", {option: users_depot_name})
    with open(tmp_path / "worker.log", "wb") as log:
        proc = subprocess.Popen(
            [ckan_command(), "-c", str(ini), "dcor-depot-worker"],
            stdout=log, stderr=subprocess.STDOUT)
        try:
            yield proc
        finally:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                kill_tree(proc.pid)
                proc.wait(30)


def fetch(job_id: str) -> Job:
    return Job.fetch(job_id, connection=ckan_jobs.connect_to_redis())


def wait_finished(job_id: str) -> Job:
    def ended() -> bool:
        return job_queue.job_status(job_id) in (JobStatus.FINISHED,
                                                JobStatus.FAILED)
    wait_for(ended, timeout=300, interval=0.1, what=f"job {job_id} to end")
    job = fetch(job_id)
    assert job.get_status() == JobStatus.FINISHED, job.exc_info
    return job


def kill_during(job_id: str, worker: subprocess.Popen,
                offset: float) -> bool:
    """SIGKILL the work horse ``offset`` s after the job started; True if
    it was still running the job then."""
    wait_for(lambda: job_queue.job_status(job_id) in (
        JobStatus.STARTED, JobStatus.FINISHED, JobStatus.FAILED),
        timeout=300, interval=0.005, what=f"job {job_id} to start")
    time.sleep(offset)
    horses = process_children().get(worker.pid, [])
    if job_queue.job_status(job_id) != JobStatus.STARTED or not horses:
        return False
    for horse in horses:
        kill_tree(horse)
    return True


#: Also run by `make test` (one iteration), as a sample of the suite.
SAMPLED = {"symlink", "s3-upload"}


@pytest.mark.parametrize("kind", [
    pytest.param(kind, marks=(pytest.mark.fault_sample,)
                 if kind in SAMPLED else ())
    for kind in sorted(SCENES)])
def test_work_horse_killed_at_seeded_points(kind, site, plugin_worker,
                                            cli, with_extended_cli):
    org, other = organization(), organization()
    scene = Scene(site, org, other, faults.rng(f"worker-killed-{kind}"))
    # Moves need the editor in both organizations.
    from ckan.tests import helpers
    helpers.call_action("organization_member_create", id=other.id,
                        username=org.editor.name, role="editor")
    ledger = faults.Ledger(
        f"work horse SIGKILLed during the {kind} job",
        how="real `ckan dcor-depot-worker`; SIGKILL of its work horse at a "
            "seeded random point of the job's measured duration",
        guarantee="a killed job loses and opens nothing; RQ runs it again "
                  "at once (the plugin queues its jobs with retries)")
    expected: dict[str, str] = {}

    calibration = SCENES[kind](scene)
    expected.update(calibration.expected)
    job = wait_finished(calibration.job_id)
    duration = (job.ended_at - job.started_at).total_seconds()
    ledger.notes.append(f"job duration {duration:.2f} s uncut")

    for _ in range(faults.iterations()):
        work = SCENES[kind](scene)
        expected.update(work.expected)
        offset = scene.rng.uniform(0, duration)
        killed = kill_during(work.job_id, plugin_worker, offset)
        ledger.iterations += 1
        ledger.faults += killed
        wait_finished(work.job_id)  # run again by RQ after the kill
        assert plugin_worker.poll() is None  # the worker itself lives on

    # Nothing of any resource is left to do; then the closing check.
    for rid in expected:
        wait_for(lambda rid=rid: fresh_resource(rid).get("sha256"),
                 timeout=300, what=f"{rid} to be complete")
    wait_for(lambda: not ckan_jobs.get_queue("dcor-normal").count
             and not ckan_jobs.get_queue("dcor-short").count,
             timeout=300, what="the queues to empty")
    faults.check_intact(cli, expected, ledger)
    assert ledger.faults >= ledger.iterations // 2, ledger
    ledger.write()
