"""Services crashing under the plugin's feet: the Ceph gateway in the
middle of an upload (single PUT and multipart), Redis with jobs queued
and running (its memory is lost: nothing is kept on disk), PostgreSQL
while jobs record their results. Each scenario ends with the work rerun
as an operator would and the closing check of tests.support.faults."""
from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from ckan import model
from ckan.lib import jobs as ckan_jobs

from ckanext.dcor_depot.operations import symlink
from ckanext.dcor_depot.operations.migrate import migrate_resource_to_s3
from tests.support import faults
from tests.support.access import fresh_resource
from tests.support.data import sha256
from tests.support.services import crash, start_services
from tests.support.stack import run_jobs

MiB = 2**20
#: Crashing and starting a service takes a while: fewer iterations.
SERVICE_ITERATIONS = max(1, faults.iterations() // 4)


def in_thread(func: Callable[[], Any]) -> tuple[threading.Thread,
                                                 list[Any]]:
    """Run ``func`` in a thread with a request context of its own;
    returns the thread and a list that gets its result or exception."""
    import flask
    app = flask.current_app._get_current_object()
    outcome: list[Any] = []

    def target() -> None:
        with app.test_request_context():
            try:
                outcome.append(func())
            except Exception as exc:  # reported to the test
                outcome.append(exc)
            finally:
                model.Session.remove()
    thread = threading.Thread(target=target)
    thread.start()
    return thread, outcome


def new_upload(make_dataset, upload, size: int, private: bool
               ) -> tuple[str, str]:
    """A resource in its depot, not in the store yet: (id, sha256)."""
    data = os.urandom(size)
    res = upload(make_dataset(private=private), data)
    ckan_jobs.get_queue("dcor-normal").empty()  # the test runs the upload
    symlink.symlink_user_dataset(res["id"])
    return res["id"], sha256(data)


@pytest.mark.parametrize("route,low,high", [
    ("single PUT", 8 * MiB, 15 * MiB),
    ("multipart", 64 * MiB, 160 * MiB)])
def test_gateway_crashes_mid_upload(route, low, high, make_dataset, upload,
                                    cli, with_extended_cli):
    rng = faults.rng(f"rgw-{route}")
    ledger = faults.Ledger(
        f"Ceph gateway crashed during a {route} upload",
        how="radosgw SIGKILLed at a seeded point of the upload job, "
            "started again, the job rerun",
        guarantee="nothing is recorded for a cut upload; the rerun "
                  "completes it and aborts the cut upload's parts")
    expected: dict[str, str] = {}
    rid, sha = new_upload(make_dataset, upload, high, private=False)
    started = time.monotonic()
    assert migrate_resource_to_s3(rid)
    duration = time.monotonic() - started
    expected[rid] = sha
    for index in range(SERVICE_ITERATIONS):
        rid, sha = new_upload(make_dataset, upload, rng.randint(low, high),
                              private=index % 2 == 1)
        expected[rid] = sha
        thread, outcome = in_thread(lambda rid=rid: migrate_resource_to_s3(
            rid))
        time.sleep(rng.uniform(0.05, 0.9) * duration)
        crash("rgw")
        thread.join(300)
        ledger.iterations += 1
        ledger.faults += isinstance(outcome[0], Exception)
        assert fresh_resource(rid).get("s3_available") in (None, False,
                                                          "False") \
            or outcome[0] is True
        start_services()
        assert migrate_resource_to_s3(rid) in (True, False)  # the rerun
        assert fresh_resource(rid)["s3_available"] in (True, "True")
    faults.check_intact(cli, expected, ledger)
    ledger.write()


def test_redis_crashes_with_jobs_queued_and_running(make_dataset, upload, cli,
                                        with_extended_cli):
    """Redis comes back empty: the queued jobs are gone. By design the
    operator's repair commands find and finish the work from the
    database and the disks."""
    rng = faults.rng("redis")
    ledger = faults.Ledger(
        "Redis crashed with jobs queued and running (memory lost)",
        how="redis-server SIGKILLed (no persistence) while a worker runs "
            "the jobs of new uploads; started again empty",
        guarantee="run-jobs-dcor-depot and dcor-depot-audit --fix find "
                  "and finish all lost work from the database and disks")
    expected: dict[str, str] = {}
    for index in range(3 * SERVICE_ITERATIONS):
        data = os.urandom(rng.randint(MiB, 8 * MiB))
        res = upload(make_dataset(private=index % 2 == 0), data)
        expected[res["id"]] = sha256(data)
    model.Session.commit()
    thread, _outcome = in_thread(run_jobs)  # some jobs running
    time.sleep(rng.uniform(0.2, 1.0))
    crash("redis")
    start_services()  # the worker waits for Redis to come back
    thread.join(600)
    assert not thread.is_alive()
    ledger.iterations += 1
    ledger.faults += 1
    assert ckan_jobs.get_queue("dcor-short").count == 0  # all forgotten

    faults.repair(cli, expected)
    run_jobs()
    faults.check_intact(cli, expected, ledger)
    ledger.write()


def test_postgres_crashes_while_jobs_record(make_dataset, upload, cli,
                                            with_extended_cli):
    rng = faults.rng("postgres")
    ledger = faults.Ledger(
        "PostgreSQL crashed while jobs record results",
        how="pg_ctl stop -m immediate at a seeded point while a worker "
            "runs jobs, started again",
        guarantee="no result is half recorded; the repair commands "
                  "complete the work")
    expected: dict[str, str] = {}
    for index in range(SERVICE_ITERATIONS):
        rids = []
        for _ in range(3):
            data = os.urandom(rng.randint(MiB, 16 * MiB))
            res = upload(make_dataset(private=index % 2 == 0), data)
            expected[res["id"]] = sha256(data)
            rids.append(res["id"])
        model.Session.commit()
        thread, outcome = in_thread(run_jobs)
        time.sleep(rng.uniform(0.1, 1.5))
        crash("postgres")
        start_services()
        thread.join(600)
        assert not thread.is_alive()
        model.Session.remove()
        model.meta.engine.dispose()  # connections cut by the crash
        ledger.iterations += 1
        ledger.faults += 1
    faults.repair(cli, expected)
    faults.check_intact(cli, expected, ledger)
    ledger.write()
