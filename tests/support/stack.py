"""Helpers of the integration tests: jobs, processes, HTTP, waiting."""
from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import requests

if TYPE_CHECKING:
    from ckanext.dcor_depot.operations.jobs import JobKind

QUEUES = ["default", "dcor-short", "dcor-normal"]


def anonymous_get(url: str) -> requests.Response:
    """GET without credentials, as a visitor's browser would."""
    return requests.get(url, timeout=30)


def run_jobs() -> None:
    """Run every queued job in this process until the queues are empty."""
    from ckan.lib import jobs
    jobs.Worker(QUEUES).work(burst=True)


def prime_site_user() -> None:
    """Create CKAN's site user now, as `ckan db init` does on a real site.

    After clean_db it is missing, and two threads creating it at once
    would collide in the database (a test artefact, not a plugin issue).
    """
    import ckan.plugins.toolkit as tk
    tk.get_action("get_site_user")({"ignore_auth": True}, {})


def ckan_command() -> str:
    """The `ckan` command of the Python environment running the tests."""
    return str(Path(sys.executable).with_name("ckan"))


def process_children() -> dict[int, list[int]]:
    """Child pids of every process, from /proc."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as fh:
                stat = fh.read()
        except OSError:
            continue  # gone meanwhile
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry))
    return children


def kill_tree(pid: int) -> None:
    """SIGKILL a process and all its descendants, as a crash would.

    RQ's work horses call setsid(), so killing the worker's process group
    would leave a horse running on its own.
    """
    children = process_children()
    pids: list[int] = []
    todo = [pid]
    while todo:
        current = todo.pop()
        pids.append(current)
        todo += children.get(current, [])
    for victim in pids:
        try:
            os.kill(victim, signal.SIGKILL)
        except ProcessLookupError:
            pass


@contextlib.contextmanager
def mounted_tmpfs(mount_point: Path, size: str) -> Iterator[Path]:
    """A fresh tmpfs of ``size`` (e.g. "64m") at ``mount_point``; skips
    the test where mounting is not allowed."""
    import pytest
    made = not mount_point.exists()
    mount_point.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs",
         str(mount_point)], capture_output=True, text=True)
    try:
        if proc.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here: {proc.stderr.strip()}")
        try:
            yield mount_point
        finally:
            if subprocess.run(["umount", str(mount_point)]).returncode != 0:
                subprocess.run(["umount", "-l", str(mount_point)])
    finally:
        if made:
            with contextlib.suppress(OSError):
                mount_point.rmdir()  # only if empty: nothing is lost


def remove_template_buckets() -> None:
    """Delete every bucket of the current bucket template with its
    objects and open uploads (fixtures whose test has a template of its
    own; a whole-site audit would see other tests' buckets)."""
    from ckanext.dcor_depot.storage import object_store
    s3 = object_store.get_client()
    for bucket in object_store.site_buckets():
        for upload in s3.list_multipart_uploads(Bucket=bucket).get(
                "Uploads", []):
            s3.abort_multipart_upload(Bucket=bucket, Key=upload["Key"],
                                      UploadId=upload["UploadId"])
        object_store.delete_objects(bucket, object_store.list_keys(bucket))
        s3.delete_bucket(Bucket=bucket)


def worker_log(tmp_path: Path) -> str:
    """Everything the workers started by ``start_worker`` printed."""
    return "\n".join(p.read_text(errors="replace")
                     for p in sorted(tmp_path.glob("worker-*.log")))


def wait_for(predicate: Callable[[], Any], timeout: float = 60,
             interval: float = 0.2, what: str = "condition") -> Any:
    """Poll ``predicate`` until it returns something truthy, or fail."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for "
                                 f"{what}")
        time.sleep(interval)


def failed_job_error(rid: str, kind: JobKind) -> str:
    """The error RQ recorded for a resource's failed job."""
    from ckan.lib import jobs as ckan_jobs
    from rq.job import Job

    from ckanext.dcor_depot.operations import jobs
    job = Job.fetch(jobs.job_id(rid, kind),
                    connection=ckan_jobs.connect_to_redis())
    assert job.is_failed, job.get_status()
    return job.exc_info or ""


def sysadmin_context() -> dict[str, Any]:
    """Act as the site user (a sysadmin): may set plugin-owned fields."""
    import ckan.plugins.toolkit as tk
    user = tk.get_action("get_site_user")({"ignore_auth": True}, {})
    return {"user": user["name"], "ignore_auth": True}


def stored_in_s3(make_dataset, upload, private: bool,
                 data: bytes = b"data") -> tuple[dict[str, Any],
                                                 dict[str, Any]]:
    """A dataset with one uploaded resource whose jobs have run (its data
    are in the store): ``(dataset, resource as shown now)``."""
    from ckan.tests import helpers
    dataset = make_dataset(private=private)
    res = upload(dataset, data)
    run_jobs()
    return dataset, helpers.call_action("resource_show", id=res["id"])
