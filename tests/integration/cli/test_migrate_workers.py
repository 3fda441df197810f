"""``dcor-migrate-resources-to-object-store --via-workers``: the work done
by real ``ckan dcor-depot-worker`` processes, followed by the command."""
from __future__ import annotations

import re
import uuid

import ckan.model as model
import ckan.plugins.toolkit as tk
import pytest
import sqlalchemy as sa
from ckan.tests import helpers

from ckanext.dcor_depot.operations.migrate import fleet
from ckanext.dcor_depot.records import job_queue
from ckanext.dcor_depot.storage import layout
from tests.support.access import fresh_resource
from tests.support.cli import invoke, resource_object, summary
from tests.support.stack import kill_tree, sysadmin_context, wait_for

pytestmark = pytest.mark.usefixtures("with_extended_cli")

COMMAND = "dcor-migrate-resources-to-object-store"
QUEUE = "dcor-normal"
WORKER = ("dcor-depot-worker",)
RUN_LINE = re.compile(r"^run (\S+): (\d+) jobs queued on (\S+) for (\d+) "
                      r"resources, (\d+) already with a job", re.M)


@pytest.fixture
def start_fleet_worker(request, start_worker, ckan_config, tmp_path):
    """Start a `ckan dcor-depot-worker` on this test's site: CKAN 2.11's
    upload fixture gives the test process a storage path of its own, so
    the worker reads a copy of the tests' ini with the test's paths."""
    from tests.support.fault_ini import write_fault_ini

    def start():
        ini = write_fault_ini(request.config.getoption("--ckan-ini"),
                              tmp_path / f"worker-{uuid.uuid4().hex}.ini",
                              ckan_config)
        return start_worker(QUEUE, command=WORKER, ini_file=ini)
    return start


def rq_job_keys() -> set[bytes]:
    from ckan.lib import jobs as ckan_jobs
    return set(ckan_jobs.connect_to_redis().scan_iter(match="rq:job:*"))


def migration_jobs(keys: set[bytes]) -> set[bytes]:
    """The migration jobs among RQ job keys (other jobs come and go: the
    uploads' own jobs, index updates, expiring results)."""
    return {key for key in keys if b"dcor-migrate-" in key}


def queued(result) -> tuple[str, int, int]:
    """(run id, jobs queued, resources joined) of a --via-workers run."""
    match = RUN_LINE.search(result.stdout)
    assert match, result.output
    return match[1], int(match[2]), int(match[5])


def scenario(on_block_storage) -> dict[str, str]:
    """Three uploads with artifacts, one whose file is gone, one link:
    {resource id: label} (labels are equal in every copy)."""
    items = on_block_storage(4, artifacts=True)
    gone = items[0]["id"]
    layout.ckan_upload_path(gone).resolve().unlink()
    layout.ckan_upload_path(gone).unlink()
    link = helpers.call_action("resource_create",
                               package_id=items[0]["dataset"]["id"],
                               url="https://example.org/data.csv")
    labels = {item["id"]: f"item{n}" for n, item in enumerate(items)}
    labels[link["id"]] = "link"
    return labels


def lines_by_label(result, labels: dict[str, str]) -> list[str]:
    """The per-resource lines, ids replaced by labels, in label order."""
    found = []
    for line in (result.stdout + result.stderr).splitlines():
        match = re.match(r"^\[\d+/(\d+)\] (\S+): (.*)$", line)
        if match and match[2] in labels:
            text = match[3].replace(str(layout.ckan_upload_path(match[2])),
                                    "PATH")
            found.append(f"{match[1]} {labels[match[2]]}: {text}")
    return sorted(found)


def test_the_workers_print_what_a_local_run_prints(
        cli, owner, on_block_storage, start_fleet_worker):
    labels = scenario(on_block_storage)
    local = invoke(cli, COMMAND)
    assert local.exit_code == 0, local.output
    local_lines = lines_by_label(local, labels)
    assert len(local_lines) == 5
    dataset_id = fresh_resource(next(iter(labels)))["package_id"]
    helpers.call_action("dataset_purge", context=sysadmin_context(),
                        id=dataset_id)
    labels = scenario(on_block_storage)
    for _ in range(2):
        start_fleet_worker()

    result = invoke(cli, COMMAND, "--via-workers", "--jobs", 2)

    assert result.exit_code == local.exit_code, result.output
    run_id, jobs, joined = queued(result)
    assert (jobs, joined) == (1, 0)
    assert lines_by_label(result, labels) == local_lines
    assert summary(result) == summary(local) == \
        f"{COMMAND}: 3 uploaded, 1 skipped, 1 missing, 0 failed"
    for rid, label in labels.items():
        if label in ("item1", "item2", "item3"):
            assert tk.asbool(fresh_resource(rid)["s3_available"])
            assert resource_object(owner, rid) == \
                layout.ckan_upload_path(rid).read_bytes()
    # Following the run again prints the same.
    again = invoke(cli, COMMAND, "--follow", run_id)
    assert again.exit_code == 0, again.output
    assert lines_by_label(again, labels) == local_lines
    assert summary(again) == summary(local)


def test_a_rerun_queues_nothing_queued_running_or_done(
        cli, owner, on_block_storage, start_fleet_worker, monkeypatch):
    monkeypatch.setattr(fleet, "BATCH_RESOURCES", 2)
    items = on_block_storage(6)
    first = invoke(cli, COMMAND, "--via-workers", "--no-wait")
    assert first.exit_code == 0, first.output
    assert queued(first)[1:] == (3, 0)
    jobs = rq_job_keys()

    rerun = invoke(cli, COMMAND, "--via-workers", "--no-wait")

    assert rerun.exit_code == 0, rerun.output
    run_id, jobs_queued, joined = queued(rerun)
    assert (jobs_queued, joined) == (0, 6)
    assert migration_jobs(rq_job_keys() - jobs) == set()
    start_fleet_worker()
    start_fleet_worker()
    followed = invoke(cli, COMMAND, "--follow", run_id)
    assert followed.exit_code == 0, followed.output
    assert summary(followed) == f"{COMMAND}: 6 uploaded, 0 skipped, 0 failed"
    for item in items:
        assert resource_object(owner, item["id"]) == item["files"]["resource"]

    # Done with these options: not queued again ...
    verified = invoke(cli, COMMAND, "--via-workers", "--verify-existence")
    assert summary(verified) == f"{COMMAND}: 0 uploaded, 6 skipped, 0 failed"
    jobs = rq_job_keys()
    done = invoke(cli, COMMAND, "--via-workers", "--verify-existence")
    assert queued(done)[1:] == (0, 6)
    assert summary(done) == f"{COMMAND}: 0 uploaded, 6 skipped, 0 failed"
    assert migration_jobs(rq_job_keys() - jobs) == set()
    # ... unless the job failed the resource.
    lost = items[0]
    layout.ckan_upload_path(lost["id"]).resolve().unlink()
    layout.ckan_upload_path(lost["id"]).unlink()
    from ckanext.dcor_depot.storage import object_store
    object_store.get_client().delete_object(
        Bucket=object_store.bucket_name(owner["org"]["id"]),
        Key=layout.object_key(lost["id"]))
    failing = invoke(cli, COMMAND, "--via-workers", "--verify-checksum")
    assert failing.exit_code == 1
    assert summary(failing) == f"{COMMAND}: 0 uploaded, 5 skipped, 1 failed"
    retried = invoke(cli, COMMAND, "--via-workers", "--verify-checksum")
    assert queued(retried)[1:] == (1, 5)
    assert f"{lost['id']}: " in retried.stderr
    assert retried.exit_code == 1


def test_the_jobs_delete_local_files_once_their_copy_is_verified(
        cli, owner, on_block_storage, start_fleet_worker):
    items = on_block_storage(3)
    depot_files = {item["id"]: layout.ckan_upload_path(item["id"]).resolve()
                   for item in items}
    start_fleet_worker()

    result = invoke(cli, COMMAND, "--via-workers",
                    "--delete-after-migration")

    assert result.exit_code == 0, result.output
    assert summary(result) == (f"{COMMAND}: 3 uploaded, 0 skipped, "
                               "0 failed, 3 local files deleted")
    for item in items:
        rid = item["id"]
        assert f"{rid}: resource uploaded, local file deleted" \
            in result.stdout
        assert resource_object(owner, rid) == item["files"]["resource"]
        assert not layout.ckan_upload_path(rid).is_symlink()
        assert not depot_files[rid].exists()


def test_a_dataset_spread_over_jobs_is_reindexed_once_at_the_end(
        cli, owner, on_block_storage, start_fleet_worker, monkeypatch):
    """Each job recording it would reindex the dataset again and again;
    the run's last job with it queues one update, which the search
    index then shows."""
    monkeypatch.setattr(fleet, "BATCH_RESOURCES", 2)
    items = on_block_storage(6)
    dataset_id = items[0]["dataset"]["id"]
    start_fleet_worker()

    result = invoke(cli, COMMAND, "--via-workers")

    assert result.exit_code == 0, result.output
    assert queued(result)[1] == 3
    reindex_jobs = sorted(key.decode() for key in rq_job_keys()
                          if dataset_id.encode() in key)
    assert reindex_jobs == [f"rq:job:{dataset_id}-reindex"]

    def indexed() -> bool:
        found = helpers.call_action("package_search", fq=f"id:{dataset_id}",
                                    include_private=True)["results"]
        return bool(found) and all(
            tk.asbool(res.get("s3_available"))
            for res in found[0]["resources"])

    wait_for(indexed, timeout=60, what="the search index to show the run")


def test_bad_option_combinations_are_refused(cli, owner, on_block_storage):
    on_block_storage(1)
    jobs = rq_job_keys()
    for args, message in (
            (("--via-workers", "--dry-run"), "--dry-run runs here"),
            (("--no-wait",), "only go with --via-workers"),
            (("--queue", "x"), "only go with --via-workers"),
            (("--follow", "r", "--verify-existence"),
             "--follow takes no other option"),
            (("--follow", "no-such-run"), "no run no-such-run")):
        result = invoke(cli, COMMAND, *args)
        assert result.exit_code == 2, (args, result.output)
        assert message in result.stderr
    assert migration_jobs(rq_job_keys() - jobs) == set()


# SIGKILL, then RQ's heartbeat (about 90 s) must expire: `make test-slow`.
@pytest.mark.slow
def test_a_killed_workers_job_runs_again(cli, owner, on_block_storage,
                                         start_fleet_worker, monkeypatch):
    monkeypatch.setattr(fleet, "BATCH_RESOURCES", 2)
    items = on_block_storage(4)
    dataset_id = items[0]["dataset"]["id"]
    first = invoke(cli, COMMAND, "--via-workers", "--no-wait")
    run_id, jobs, _ = queued(first)
    assert jobs == 2
    # The dataset locked: the first job blocks when it records.
    connection = model.meta.engine.connect()
    lock = connection.begin()
    connection.execute(sa.text("SELECT id FROM package WHERE id = :id "
                               "FOR UPDATE"), {"id": dataset_id})
    doomed = start_fleet_worker()
    job_ids = [key.decode().removeprefix("rq:job:")
               for key in rq_job_keys() if b"dcor-migrate-" in key]
    wait_for(lambda: any(job_queue.job_status(j) == "started"
                         for j in job_ids),
             timeout=120, what="a migration job to start")
    kill_tree(doomed.pid)
    doomed.wait(30)
    lock.rollback()
    connection.close()
    start_fleet_worker()

    followed = invoke(cli, COMMAND, "--follow", run_id)

    assert followed.exit_code == 0, followed.output
    assert summary(followed).endswith(", 0 failed")
    for item in items:
        assert tk.asbool(fresh_resource(item["id"])["s3_available"])
        assert resource_object(owner, item["id"]) == item["files"]["resource"]
