"""``ckan dcor-migrate-resources-to-object-store``."""
from __future__ import annotations

import datetime
import hashlib
import os
import time

import ckan.model as model
import ckan.plugins.toolkit as tk
import pytest
from ckan.tests import helpers

from ckanext.dcor_depot.operations import migrate
from ckanext.dcor_depot.records import inventory
from ckanext.dcor_depot.storage import layout, transfer
from ckanext.dcor_depot.storage.upload import Upload
from tests.support.access import fresh_resource
from tests.support.cli import (
    bucket_keys,
    bucket_of,
    invoke,
    resource_object,
    summary,
)
from tests.support.data import flip_first_byte
from tests.support.stack import anonymous_get, sysadmin_context
from tests.support.store import s3_requests

pytestmark = pytest.mark.usefixtures("with_extended_cli")

COMMAND = "dcor-migrate-resources-to-object-store"


def record_uploads(patch) -> list[str]:
    """Keys the transfer routine writes from now on (PUT or multipart).

    Tagging moves an object's LastModified on RGW, so that cannot tell
    whether an object was written again.
    """
    written: list[str] = []
    for name in ("put_single", "put_multipart"):
        real = getattr(Upload, name)

        def wrapper(self, *args, _real=real, **kwargs):
            written.append(self.key)
            return _real(self, *args, **kwargs)
        patch.setattr(Upload, name, wrapper)
    return written


def replace_object(owner, rid, data: bytes) -> None:
    """Change the bytes in the store behind the plugin's back."""
    from ckanext.dcor_depot.storage import object_store
    object_store.get_client().put_object(
        Bucket=bucket_of(owner), Key=layout.object_key(rid), Body=data)


def test_migrates_all_artifacts_and_records_s3_state(
        cli, owner, on_block_storage):
    first, second = on_block_storage(2, artifacts=True, private=False)
    second["files"].pop("preview")
    layout.artifact_local_path(second["id"], "preview").unlink()

    result = invoke(cli, COMMAND)

    assert result.exit_code == 0, result.output
    assert summary(result) == f"{COMMAND}: 2 uploaded, 0 skipped, 0 failed"
    assert f"{first['id']}: resource uploaded; condensed uploaded; " \
           f"preview uploaded" in result.stdout
    for item in (first, second):
        for artifact, data in item["files"].items():
            assert resource_object(owner, item["id"], artifact) == data
        res = fresh_resource(item["id"])
        assert tk.asbool(res["s3_available"])
        assert res["sha256"] == hashlib.sha256(
            item["files"]["resource"]).hexdigest()
        # public dataset: the objects are public
        resp = anonymous_get(res["s3_url"])
        assert resp.status_code == 200
        assert resp.content == item["files"]["resource"]
        # nothing deleted without being asked
        assert layout.ckan_upload_path(item["id"]).read_bytes() \
            == item["files"]["resource"]
    assert resource_object(owner, second["id"], "preview") is None

    again = invoke(cli, COMMAND)
    assert again.exit_code == 0, again.output
    assert summary(again) == f"{COMMAND}: 0 uploaded, 2 skipped, 0 failed"
    assert "already in S3" in again.stdout


def test_private_and_draft_datasets_are_migrated_and_stay_private(
        cli, owner, on_block_storage, make_dataset):
    private, = on_block_storage(1, private=True)
    draft, = on_block_storage(1, dataset=make_dataset(private=False))
    helpers.call_action("package_patch", id=draft["dataset"]["id"],
                        state="draft")

    result = invoke(cli, COMMAND)

    assert result.exit_code == 0, result.output
    assert summary(result) == f"{COMMAND}: 2 uploaded, 0 skipped, 0 failed"
    for item in (private, draft):
        res = fresh_resource(item["id"])
        assert tk.asbool(res["s3_available"])
        # private or draft: never readable anonymously
        assert anonymous_get(res["s3_url"]).status_code == 403


def test_interrupted_migration_is_finished_by_a_rerun(
        cli, owner, on_block_storage, monkeypatch):
    items = on_block_storage(4)
    real_upload = transfer.upload_verified
    calls = []

    def upload_then_interrupt(*args, **kwargs):
        calls.append(args[0])
        if len(calls) == 3:
            raise KeyboardInterrupt  # the operator pressed Ctrl-C
        return real_upload(*args, **kwargs)

    # A patch context of its own: undoing the test's monkeypatch would
    # also undo CKAN's config changes on CKAN 2.11.
    with monkeypatch.context() as patch:
        patch.setattr(transfer, "upload_verified", upload_then_interrupt)
        interrupted = invoke(cli, COMMAND, "--jobs", 1)

    assert interrupted.exit_code == 130
    assert "interrupted after 2 of 4 resources" in interrupted.stderr
    assert summary(interrupted) == \
        f"{COMMAND} (interrupted): 2 uploaded, 0 skipped, 0 failed"
    done = [i for i in items if resource_object(owner, i["id"])]
    # The resource queued behind the interrupted one may still finish.
    assert 2 <= len(done) <= 3
    written = record_uploads(monkeypatch)

    rerun = invoke(cli, COMMAND, "--jobs", 1)

    assert rerun.exit_code == 0, rerun.output
    missing = 4 - len(done)
    assert summary(rerun) == \
        f"{COMMAND}: {missing} uploaded, {4 - missing} skipped, 0 failed"
    for item in items:
        assert resource_object(owner, item["id"]) == item["files"]["resource"]
        assert tk.asbool(fresh_resource(item["id"])["s3_available"])
    # what was done is not uploaded again
    assert not {layout.object_key(i["id"]) for i in done} & set(written)


def test_crash_between_upload_and_record_does_not_reupload(
        cli, owner, on_block_storage, monkeypatch):
    items = on_block_storage(2)
    real_record = migrate.record.record_resource
    calls = []

    def record_then_crash(plan, outcomes, batch=None):
        calls.append(plan.record.id)
        if len(calls) == 2:
            raise KeyboardInterrupt  # killed after the upload
        return real_record(plan, outcomes, batch)

    with monkeypatch.context() as patch:
        patch.setattr(migrate.record, "record_resource", record_then_crash)
        assert invoke(cli, COMMAND, "--jobs", 1).exit_code == 130
    crashed = calls[1]
    assert not fresh_resource(crashed).get("s3_available")
    written = record_uploads(monkeypatch)

    rerun = invoke(cli, COMMAND)

    assert rerun.exit_code == 0, rerun.output
    assert f"{crashed}: resource already in store" in rerun.stdout
    assert summary(rerun) == f"{COMMAND}: 0 uploaded, 2 skipped, 0 failed"
    assert written == []
    assert all(tk.asbool(fresh_resource(i["id"])["s3_available"])
               for i in items)


def test_verify_existence_uploads_missing_objects(cli, owner,
                                                  on_block_storage):
    lost, kept = on_block_storage(2)
    assert invoke(cli, COMMAND).exit_code == 0
    from ckanext.dcor_depot.storage import object_store
    object_store.get_client().delete_object(
        Bucket=bucket_of(owner), Key=layout.object_key(lost["id"]))

    default = invoke(cli, COMMAND)
    assert summary(default) == f"{COMMAND}: 0 uploaded, 2 skipped, 0 failed"
    assert resource_object(owner, lost["id"]) is None

    result = invoke(cli, COMMAND, "--verify-existence")

    assert result.exit_code == 0, result.output
    assert f"{lost['id']}: resource missing in store, uploaded" \
        in result.stdout
    assert f"{kept['id']}: resource exists" in result.stdout
    assert summary(result) == f"{COMMAND}: 1 uploaded, 1 skipped, 0 failed"
    assert resource_object(owner, lost["id"]) == lost["files"]["resource"]


def test_verify_existence_reads_a_listing_not_each_object(
        cli, owner, on_block_storage, monkeypatch):
    """With many resources of a bucket, existence comes from one listing
    (one request per 1000 objects), not a HEAD per artifact; a missing
    object is still found and uploaded."""
    from ckanext.dcor_depot.operations.migrate import plan
    from ckanext.dcor_depot.storage import object_store
    items = on_block_storage(plan.LISTING_MIN_RESOURCES + 2)
    assert invoke(cli, COMMAND).exit_code == 0
    lost = items[0]
    object_store.get_client().delete_object(
        Bucket=bucket_of(owner), Key=layout.object_key(lost["id"]))
    heads = []
    real_head = object_store.head_object

    def counted_head(bucket, key):
        heads.append(key)
        return real_head(bucket, key)

    monkeypatch.setattr(object_store, "head_object", counted_head)
    result = invoke(cli, COMMAND, "--verify-existence")

    assert result.exit_code == 0, result.output
    assert heads == []
    assert f"{lost['id']}: resource missing in store, uploaded" \
        in result.stdout
    assert summary(result) == (f"{COMMAND}: 1 uploaded, {len(items) - 1} "
                               "skipped, 0 failed")
    assert resource_object(owner, lost["id"]) == lost["files"]["resource"]
    # Nothing left to do: the listing only (no lookup, no tagging).
    with s3_requests() as sent:
        again = invoke(cli, COMMAND, "--verify-existence")
    assert summary(again) == f"{COMMAND}: 0 uploaded, {len(items)} " \
                             "skipped, 0 failed"
    assert set(sent) == {"ListBuckets", "ListObjectsV2"}  # + connection check


def test_verify_checksum_repairs_a_changed_object(cli, owner,
                                                  on_block_storage):
    damaged, intact = on_block_storage(2, private=False)
    assert invoke(cli, COMMAND).exit_code == 0
    data = damaged["files"]["resource"]
    replace_object(owner, damaged["id"], flip_first_byte(data))

    # Existence alone does not notice changed bytes.
    shallow = invoke(cli, COMMAND, "--verify-existence")
    assert summary(shallow) == f"{COMMAND}: 0 uploaded, 2 skipped, 0 failed"

    result = invoke(cli, COMMAND, "--verify-checksum")

    assert result.exit_code == 0, result.output
    expected = hashlib.sha256(data).hexdigest()
    found = hashlib.sha256(flip_first_byte(data)).hexdigest()
    assert (f"{damaged['id']}: resource checksum mismatch (expected "
            f"{expected}, found {found}), uploaded") in result.stdout
    assert f"{intact['id']}: resource verified" in result.stdout
    assert summary(result) == f"{COMMAND}: 1 uploaded, 1 skipped, 0 failed"
    assert resource_object(owner, damaged["id"]) == data
    # the repaired object is public again, like its dataset
    url = fresh_resource(damaged["id"])["s3_url"]
    assert anonymous_get(url).content == data


def test_verify_checksum_without_local_copy_reports_failure(
        cli, owner, on_block_storage):
    damaged, intact = on_block_storage(2)
    assert invoke(cli, COMMAND, "--delete-after-migration").exit_code == 0
    data = damaged["files"]["resource"]
    replace_object(owner, damaged["id"], flip_first_byte(data))

    result = invoke(cli, COMMAND, "--verify-checksum")

    assert result.exit_code == 1
    expected = hashlib.sha256(data).hexdigest()
    found = hashlib.sha256(flip_first_byte(data)).hexdigest()
    error = result.stderr
    assert damaged["id"] in error
    assert f"expected SHA256 {expected}, found {found}" in error
    assert "no local file to repair it from" in error
    assert summary(result) == f"{COMMAND}: 0 uploaded, 1 skipped, 1 failed"


def test_delete_after_migration_removes_depot_file_and_symlink(
        cli, owner, on_block_storage):
    item, = on_block_storage(1, artifacts=True)
    upload_path = layout.ckan_upload_path(item["id"])
    depot_file = upload_path.resolve()
    assert upload_path.is_symlink() and depot_file.is_file()

    result = invoke(cli, COMMAND, "--delete-after-migration")

    assert result.exit_code == 0, result.output
    assert summary(result) == \
        f"{COMMAND}: 1 uploaded, 0 skipped, 0 failed, 3 local files deleted"
    assert not os.path.lexists(upload_path)
    assert not depot_file.exists()
    for artifact, data in item["files"].items():
        assert not layout.artifact_local_path(item["id"], artifact).exists()
        assert resource_object(owner, item["id"], artifact) == data
    assert tk.asbool(fresh_resource(item["id"])["s3_available"])

    again = invoke(cli, COMMAND, "--delete-after-migration")
    assert again.exit_code == 0, again.output
    assert summary(again) == f"{COMMAND}: 0 uploaded, 1 skipped, 0 failed"

    # Without local files, the deep check uses the checksums on record
    # (the resource's sha256, the sha256 stored with each object).
    check = invoke(cli, COMMAND, "--verify-checksum")
    assert check.exit_code == 0, check.output
    assert (f"{item['id']}: resource verified; condensed verified; "
            "preview verified") in check.stdout


def test_verify_checksum_of_objects_without_any_checksum(
        cli, owner, on_block_storage):
    item, = on_block_storage(1)
    assert invoke(cli, COMMAND).exit_code == 0
    # Another DCOR plugin put a preview into the store, with no checksum
    # and no local file.
    from ckanext.dcor_depot.storage import object_store
    object_store.get_client().put_object(
        Bucket=bucket_of(owner), Body=b"JPEG",
        Key=layout.object_key(item["id"], "preview"))

    result = invoke(cli, COMMAND, "--verify-checksum")

    assert result.exit_code == 0, result.output
    assert "preview exists (no SHA256 to compare with)" in result.stdout


def test_delete_after_earlier_migration_deletes_verified_files(
        cli, owner, on_block_storage):
    item, = on_block_storage(1)
    assert invoke(cli, COMMAND).exit_code == 0
    # Someone changed the object since: the file must be uploaded again
    # before it may go.
    replace_object(owner, item["id"],
                   flip_first_byte(item["files"]["resource"]))

    result = invoke(cli, COMMAND, "--delete-after-migration")

    assert result.exit_code == 0, result.output
    assert "resource uploaded, local file deleted" in result.stdout
    assert resource_object(owner, item["id"]) == item["files"]["resource"]
    assert not os.path.lexists(layout.ckan_upload_path(item["id"]))


@pytest.mark.parametrize("verify", [[], ["--verify-existence"],
                                    ["--verify-checksum"]])
@pytest.mark.parametrize("left", ["no file", "dangling symlink"])
def test_crash_after_delete_before_record_is_recorded_by_rerun(
        cli, owner, on_block_storage, monkeypatch, left, verify):
    item, = on_block_storage(1)
    upload_path = layout.ckan_upload_path(item["id"])
    depot_file = upload_path.resolve()

    def crash(plan, outcomes, batch=None):
        raise KeyboardInterrupt  # killed after the local file went

    with monkeypatch.context() as patch:
        patch.setattr(migrate.record, "record_resource", crash)
        assert invoke(cli, COMMAND,
                      "--delete-after-migration").exit_code == 130
    assert not os.path.lexists(upload_path)
    assert not fresh_resource(item["id"]).get("s3_available")
    if left == "dangling symlink":
        # Killed between the deletion of the depot file and the symlink's.
        os.symlink(depot_file, upload_path)

    rerun = invoke(cli, COMMAND, "--delete-after-migration", *verify)

    assert rerun.exit_code == 0, rerun.output
    if not verify:
        action = ("dangling symlink removed" if left == "dangling symlink"
                  else "in store, no local file")
        assert f"{item['id']}: resource {action}" in rerun.stdout
    assert not os.path.lexists(upload_path)
    res = fresh_resource(item["id"])
    assert tk.asbool(res["s3_available"])
    # The SHA256 the dead run computed is read again from the object.
    data = item["files"]["resource"]
    assert res["sha256"] == hashlib.sha256(data).hexdigest()
    assert resource_object(owner, item["id"]) == data


def test_delete_never_when_the_object_differs(cli, owner, on_block_storage,
                                              monkeypatch):
    item, = on_block_storage(1)
    data = item["files"]["resource"]
    real_upload = transfer.upload_verified

    def upload_then_object_changes(*args, **kwargs):
        result = real_upload(*args, **kwargs)
        # Another writer replaces the object between upload and delete.
        replace_object(owner, item["id"], flip_first_byte(data))
        return result

    with monkeypatch.context() as patch:
        patch.setattr(transfer, "upload_verified",
                      upload_then_object_changes)
        result = invoke(cli, COMMAND, "--delete-after-migration")

    assert result.exit_code == 1
    assert "local file kept" in result.stderr
    assert summary(result) == f"{COMMAND}: 0 uploaded, 0 skipped, 1 failed"
    upload_path = layout.ckan_upload_path(item["id"])
    assert upload_path.is_symlink()
    assert upload_path.read_bytes() == data
    # not marked as being in S3 either
    assert not fresh_resource(item["id"]).get("s3_available")


def test_delete_never_when_the_local_file_is_not_the_recorded_one(
        cli, owner, on_block_storage):
    item, = on_block_storage(1)
    assert invoke(cli, COMMAND).exit_code == 0
    depot_file = layout.ckan_upload_path(item["id"]).resolve()
    depot_file.write_bytes(flip_first_byte(item["files"]["resource"]))

    result = invoke(cli, COMMAND, "--verify-checksum",
                    "--delete-after-migration")

    assert result.exit_code == 1
    assert "does not match the recorded checksum" in result.stderr
    assert depot_file.exists()
    assert os.path.lexists(layout.ckan_upload_path(item["id"]))
    assert resource_object(owner, item["id"]) == item["files"]["resource"]


def test_missing_local_file_is_reported_not_fatal(cli, owner,
                                                  on_block_storage):
    gone, present = on_block_storage(2)
    layout.ckan_upload_path(gone["id"]).resolve().unlink()
    layout.ckan_upload_path(gone["id"]).unlink()

    result = invoke(cli, COMMAND)

    assert result.exit_code == 0, result.output
    assert f"{gone['id']}: resource missing: no local file" in result.stdout
    assert summary(result) == \
        f"{COMMAND}: 1 uploaded, 0 skipped, 1 missing, 0 failed"
    assert not fresh_resource(gone["id"]).get("s3_available")
    assert resource_object(owner, present["id"]) is not None


def test_dry_run_changes_nothing(cli, owner, on_block_storage):
    items = on_block_storage(2)

    result = invoke(cli, COMMAND, "--dry-run", "--delete-after-migration")

    assert result.exit_code == 0, result.output
    assert "resource would upload" in result.stdout
    assert summary(result) == \
        f"{COMMAND} (dry run): 2 to upload, 0 skipped, 0 failed"
    assert bucket_keys(bucket_of(owner)) == []
    for item in items:
        assert not fresh_resource(item["id"]).get("s3_available")
        assert layout.ckan_upload_path(item["id"]).read_bytes() \
            == item["files"]["resource"]


def test_parallel_jobs_report_every_resource_once(cli, owner,
                                                  on_block_storage):
    items = on_block_storage(6)

    result = invoke(cli, COMMAND, "--jobs", 3)

    assert result.exit_code == 0, result.output
    assert summary(result) == f"{COMMAND}: 6 uploaded, 0 skipped, 0 failed"
    lines = result.stdout.strip().splitlines()[:-1]
    assert sorted(line.split("]")[0] for line in lines) == \
        sorted(f"[{n}/6" for n in range(1, 7))
    for item in items:
        assert sum(item["id"] in line for line in lines) == 1
        assert resource_object(owner, item["id"]) == item["files"]["resource"]


def test_modified_days_limits_the_datasets(cli, owner, on_block_storage):
    old, = on_block_storage(1)
    recent, = on_block_storage(1)
    pkg = model.Package.get(old["dataset"]["id"])
    pkg.metadata_modified = (datetime.datetime.utcnow()
                             - datetime.timedelta(days=10))
    model.Session.commit()

    result = invoke(cli, COMMAND, "--modified-days", 2)

    assert result.exit_code == 0, result.output
    assert summary(result) == f"{COMMAND}: 1 uploaded, 0 skipped, 0 failed"
    assert resource_object(owner, recent["id"]) is not None
    assert resource_object(owner, old["id"]) is None

    everything = invoke(cli, COMMAND, "--modified-days", -1)
    assert summary(everything) == \
        f"{COMMAND}: 1 uploaded, 1 skipped, 0 failed"


def test_modified_days_counts_whole_utc_dates(cli, owner, on_block_storage,
                                              monkeypatch):
    """N=0: modified today (UTC); N=1: since 00:00 UTC yesterday."""
    now = datetime.datetime(2020, 6, 15, 9, 30,
                            tzinfo=datetime.timezone.utc)
    monkeypatch.setattr(inventory, "utc_now", lambda: now)
    late, early = on_block_storage(1)[0], on_block_storage(1)[0]
    for item, when in ((late, datetime.datetime(2020, 6, 14, 23, 59)),
                       (early, datetime.datetime(2020, 6, 15, 0, 0))):
        model.Package.get(item["dataset"]["id"]).metadata_modified = when
    model.Session.commit()

    today = invoke(cli, COMMAND, "--dry-run", "--modified-days", 0)

    assert today.exit_code == 0, today.output
    assert early["id"] in today.stdout and late["id"] not in today.stdout
    both = invoke(cli, COMMAND, "--dry-run", "--modified-days", 1)
    assert early["id"] in both.stdout and late["id"] in both.stdout
    assert summary(both) == \
        f"{COMMAND} (dry run): 2 to upload, 0 skipped, 0 failed"


@pytest.mark.parametrize("args, message", [
    (["--modified-days", -2], "--modified-days must be -1"),
    (["--jobs", 0], "--jobs must be at least 1"),
])
def test_bad_options_are_refused(cli, owner, on_block_storage, args,
                                 message):
    item, = on_block_storage(1)
    result = invoke(cli, COMMAND, *args)
    assert result.exit_code == 2
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith(f"{COMMAND}: {message}")
    assert bucket_keys(bucket_of(owner)) == []


def test_link_resources_are_skipped(cli, owner, on_block_storage):
    item, = on_block_storage(1)
    link = helpers.call_action("resource_create",
                               package_id=item["dataset"]["id"],
                               url="https://example.org/data.csv")

    result = invoke(cli, COMMAND)

    assert result.exit_code == 0, result.output
    assert f"{link['id']}: not an upload" in result.stdout
    assert summary(result) == f"{COMMAND}: 1 uploaded, 1 skipped, 0 failed"


@pytest.fixture
def listening_worker(pipeline):
    """A worker of the test site registered on the search-index queue, as
    on a production site (it takes no jobs: the test runs them)."""
    import rq
    from ckan.lib import jobs

    from ckanext.dcor_depot.records import search_index
    worker = rq.Worker([jobs.get_queue(search_index.QUEUE)],
                       connection=jobs.connect_to_redis(),
                       name=f"test-{os.getpid()}-{time.time_ns()}")
    worker.register_birth()
    yield worker
    worker.register_death()


def test_search_index_update_is_handed_to_a_listening_worker(
        cli, owner, on_block_storage, listening_worker):
    from ckan.lib import jobs
    from rq.job import JobStatus

    from ckanext.dcor_depot.records import search_index
    first, second = on_block_storage(2)
    other, = on_block_storage(1)

    result = invoke(cli, COMMAND, "--jobs", 2)

    assert result.exit_code == 0, result.output
    assert summary(result) == f"{COMMAND}: 3 uploaded, 0 skipped, 0 failed"
    assert "search index: 2 datasets queued for the background workers" \
        in result.stdout
    # The database is current at once; only the index follows later.
    for item in (first, second, other):
        assert tk.asbool(fresh_resource(item["id"])["s3_available"])
    queued = [job for job in jobs.get_queue(search_index.QUEUE).jobs
              if job.func is search_index.reindex_datasets]
    assert len(queued) == 1
    assert list(queued[0].args) == [sorted([first["dataset"]["id"],
                                            other["dataset"]["id"]])]
    from tests.support.stack import run_jobs
    run_jobs()
    assert queued[0].get_status() == JobStatus.FINISHED


def test_search_index_is_updated_here_without_a_worker(
        cli, owner, on_block_storage):
    import rq
    from ckan.lib import jobs

    from ckanext.dcor_depot.records import search_index
    queue = jobs.get_queue(search_index.QUEUE)
    for worker in rq.Worker.all(queue=queue):
        worker.register_death()  # e.g. one a fault test killed
    item, = on_block_storage(1)

    result = invoke(cli, COMMAND)

    assert result.exit_code == 0, result.output
    assert "search index" not in result.stdout
    assert not [job for job in jobs.get_queue(search_index.QUEUE).jobs
                if job.func is search_index.reindex_datasets]
    assert tk.asbool(fresh_resource(item["id"])["s3_available"])


def test_reindex_job_skips_a_purged_dataset(owner, make_dataset, caplog):
    from ckanext.dcor_depot.records import search_index
    kept, purged = make_dataset(), make_dataset()
    helpers.call_action("dataset_purge", id=purged["id"])

    with caplog.at_level("INFO", logger=search_index.log.name):
        search_index.reindex_datasets([purged["id"], kept["id"]])
    messages = [record.getMessage() for record in caplog.records
                if record.name == search_index.log.name]
    # the purged one is skipped by name, the kept one does not fail
    assert messages == [f"Dataset {purged['id']} is gone; not reindexed"]


def test_recording_keeps_every_other_resource_field(
        cli, owner, on_block_storage):
    item, = on_block_storage(1)
    sha = hashlib.sha256(item["files"]["resource"]).hexdigest()
    helpers.call_action("resource_patch", context=sysadmin_context(),
                        id=item["id"], sha256=sha,
                        **{"dc:setup:channel width": "20",
                           "description": "beads"})

    result = invoke(cli, COMMAND)

    assert result.exit_code == 0, result.output
    res = fresh_resource(item["id"])
    assert tk.asbool(res["s3_available"])
    assert res["s3_url"].endswith(layout.object_key(item["id"]))
    assert res["sha256"] == sha
    assert res["dc:setup:channel width"] == "20"
    assert res["description"] == "beads"
    assert res["name"] == "file0.bin"


def test_merge_reports_resources_it_could_not_find(owner, make_dataset,
                                                   upload):
    from ckanext.dcor_depot.records import ckan_data
    dataset, other = make_dataset(), make_dataset()
    res = upload(dataset, b"x" * 100)

    changed = ckan_data.merge_resource_fields({
        dataset["id"]: {res["id"]: {"s3_available": True}},
        # wrong dataset: must not be touched
        other["id"]: {res["id"] + "-gone": {"s3_available": True}},
    })

    assert changed == {res["id"]}
    assert tk.asbool(fresh_resource(res["id"])["s3_available"])


@pytest.mark.parametrize("change", ["replaced", "rewritten", "relinked"])
def test_delete_keeps_a_file_that_changed_after_verification(
        cli, owner, on_block_storage, monkeypatch, tmp_path, change):
    item, = on_block_storage(1)
    data = item["files"]["resource"]
    upload_path = layout.ckan_upload_path(item["id"])
    depot_file = upload_path.resolve()
    newer = os.urandom(len(data))
    real_object_sha256 = transfer.object_sha256

    def deep_check_then_file_changes(bucket, key, *args, **kwargs):
        found = real_object_sha256(bucket, key, *args, **kwargs)
        if key == layout.object_key(item["id"]):
            # Someone stores new data at the path while the (long) deep
            # check of the uploaded object runs.
            if change == "replaced":
                fresh = depot_file.with_name("fresh")
                fresh.write_bytes(newer)
                os.replace(fresh, depot_file)
            elif change == "rewritten":
                with open(depot_file, "r+b") as fh:
                    fh.write(newer)
            else:
                other = tmp_path / "other-file"
                other.write_bytes(newer)
                link = upload_path.with_name("new-link")
                os.symlink(other, link)
                os.replace(link, upload_path)
        return found

    with monkeypatch.context() as patch:
        patch.setattr(transfer, "object_sha256",
                      deep_check_then_file_changes)
        result = invoke(cli, COMMAND, "--delete-after-migration")

    assert result.exit_code == 1
    assert "changed after it was verified" in result.stderr
    assert "local file kept" in result.stderr
    assert str(upload_path) in result.stderr
    assert upload_path.read_bytes() == newer
    if change != "relinked":
        assert depot_file.read_bytes() == newer
    else:
        assert depot_file.read_bytes() == data
    # The verified object is in the store, untouched.
    assert resource_object(owner, item["id"]) == data
