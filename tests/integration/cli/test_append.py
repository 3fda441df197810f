"""``ckan append-resource PATH DATASET_ID [--delete-source]``."""
from __future__ import annotations

import hashlib
import os

import ckan.plugins.toolkit as tk
import pytest
from ckan.tests import helpers

from ckanext.dcor_depot.operations import append, jobs
from ckanext.dcor_depot.sample_data import make_rtdc_file
from ckanext.dcor_depot.storage import layout, object_store
from tests.support import temp as temp_helpers
from tests.support.access import fresh_resource
from tests.support.cli import (
    bucket_keys,
    bucket_of,
    dataset_resources,
    invoke,
    resource_object,
    summary,
)
from tests.support.data import file_sha256, upstream_id
from tests.support.stack import anonymous_get, run_jobs, sysadmin_context

pytestmark = pytest.mark.usefixtures("with_extended_cli")

NO_S3 = [pytest.mark.ckan_config("dcor_object_store.access_key_id", ""),
         pytest.mark.ckan_config("dcor_object_store.secret_access_key", "")]


@pytest.fixture
def rtdc_file(tmp_path):
    return make_rtdc_file(tmp_path / "M001_data.rtdc", events=50)


def test_append_rtdc_to_active_public_dataset(cli, owner, make_dataset,
                                              rtdc_file):
    dataset = make_dataset(private=False)
    assert dataset["state"] == "active"
    data = rtdc_file.read_bytes()

    result = invoke(cli, "append-resource", rtdc_file, dataset["name"])

    assert result.exit_code == 0, result.output
    rid = append.resource_id_for(dataset["id"], rtdc_file.name,
                                 file_sha256(rtdc_file))
    assert f"resource {rid}: added to dataset {dataset['name']}" \
        in result.stdout
    assert summary(result) == "append-resource: 1 added, 0 skipped, 0 failed"
    res = fresh_resource(rid)
    assert res["package_id"] == dataset["id"]
    assert res["name"] == "M001_data.rtdc"
    assert res["format"] == "RT-DC"
    assert res["mimetype"] == "RT-DC"
    assert res["url_type"] == "upload"
    assert res["size"] == len(data)
    assert res["sha256"] == hashlib.sha256(data).hexdigest()
    assert tk.asbool(res["s3_available"])
    # The bytes are in the store, readable by anyone (public dataset) ...
    assert resource_object(owner, rid) == data
    resp = anonymous_get(res["s3_url"])
    assert resp.status_code == 200
    assert resp.content == data
    # ... not at the upload path, and the source is kept.
    assert not os.path.lexists(layout.ckan_upload_path(rid))
    assert rtdc_file.read_bytes() == data
    # Only the backup job was queued (the S3 route); it backs the file up.
    queued = {job["id"] for job in helpers.call_action("job_list")}
    assert queued == {jobs.job_id(rid, jobs.BACKUP_S3)}
    run_jobs()
    assert layout.backup_path(rid).read_bytes() == data


def test_append_same_file_twice_adds_it_once(cli, owner, make_dataset,
                                             rtdc_file):
    dataset = make_dataset(private=True)
    first = invoke(cli, "append-resource", rtdc_file, dataset["id"])
    assert first.exit_code == 0, first.output

    second = invoke(cli, "append-resource", rtdc_file, dataset["id"])

    assert second.exit_code == 0, second.output
    assert "already there" in second.stdout
    assert summary(second) == \
        "append-resource: 0 added, 1 skipped, 0 failed"
    assert len(dataset_resources(dataset["id"])) == 1


def test_the_resource_id_is_upstreams(cli, owner, make_dataset, rtdc_file):
    dataset = make_dataset()
    result = invoke(cli, "append-resource", rtdc_file, dataset["id"])
    assert result.exit_code == 0, result.output
    (res,) = dataset_resources(dataset["id"])
    assert res["id"] == upstream_id(dataset["id"], "M001_data.rtdc",
                                    file_sha256(rtdc_file))


@pytest.mark.parametrize("private", [True, False])
def test_reappending_over_an_upstream_resource_changes_nothing(
        cli, owner, make_dataset, rtdc_file, private):
    """A file appended by upstream 0.14 (its id, only in S3, with
    s3_available and s3_url): appending it again adds nothing."""
    dataset = make_dataset(private=private)
    data = rtdc_file.read_bytes()
    rid = upstream_id(dataset["id"], rtdc_file.name, file_sha256(rtdc_file))
    bucket, key = bucket_of(owner), layout.object_key(rid)
    object_store.ensure_bucket(bucket)
    object_store.get_client().put_object(Bucket=bucket, Key=key, Body=data)
    helpers.call_action(
        "resource_create", context=sysadmin_context(),
        package_id=dataset["id"], id=rid, name=rtdc_file.name,
        s3_available=True, s3_url=object_store.object_url(bucket, key))
    before = fresh_resource(rid)

    result = invoke(cli, "append-resource", rtdc_file, dataset["name"])

    assert result.exit_code == 0, result.output
    assert "already there" in result.stdout
    assert summary(result) == \
        "append-resource: 0 added, 1 skipped, 0 failed"
    assert [r["id"] for r in dataset_resources(dataset["id"])] == [rid]
    assert fresh_resource(rid)["metadata_modified"] == \
        before["metadata_modified"]
    assert bucket_keys(bucket) == [key]
    assert resource_object(owner, rid) == data


def test_append_to_private_dataset_keeps_object_private(
        cli, owner, make_dataset, rtdc_file):
    dataset = make_dataset(private=True)
    result = invoke(cli, "append-resource", rtdc_file, dataset["id"])
    assert result.exit_code == 0, result.output
    (res,) = dataset_resources(dataset["id"])
    assert anonymous_get(res["s3_url"]).status_code == 403


def test_other_file_names_make_other_resources(cli, owner, make_dataset,
                                               rtdc_file, tmp_path):
    dataset = make_dataset()
    copy = tmp_path / "copy.rtdc"
    copy.write_bytes(rtdc_file.read_bytes())
    for path in (rtdc_file, copy):
        assert invoke(cli, "append-resource", path,
                      dataset["id"]).exit_code == 0
    assert sorted(r["name"] for r in dataset_resources(dataset["id"])) \
        == ["M001_data.rtdc", "copy.rtdc"]


def test_delete_source_after_verified_upload(cli, owner, make_dataset,
                                             rtdc_file):
    dataset = make_dataset()
    data = rtdc_file.read_bytes()

    result = invoke(cli, "append-resource", rtdc_file, dataset["id"],
                    "--delete-source")

    assert result.exit_code == 0, result.output
    assert f"deleted {rtdc_file}" in result.stdout
    assert not rtdc_file.exists()
    (res,) = dataset_resources(dataset["id"])
    assert resource_object(owner, res["id"]) == data


def test_plain_file_is_appended_without_rtdc_format(cli, owner,
                                                    make_dataset, tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("measured at 21 °C\n")
    dataset = make_dataset()
    result = invoke(cli, "append-resource", path, dataset["id"])
    assert result.exit_code == 0, result.output
    (res,) = dataset_resources(dataset["id"])
    assert res["format"] != "RT-DC"
    assert resource_object(owner, res["id"]) == path.read_bytes()


@pytest.mark.ckan_config("dcor_object_store.access_key_id", "")
@pytest.mark.ckan_config("dcor_object_store.secret_access_key", "")
def test_without_s3_the_file_is_handled_like_an_upload(
        cli, owner, make_dataset, rtdc_file):
    dataset = make_dataset()
    data = rtdc_file.read_bytes()

    result = invoke(cli, "append-resource", rtdc_file, dataset["id"],
                    "--delete-source")

    assert result.exit_code == 0, result.output
    (res,) = dataset_resources(dataset["id"])
    upload_path = layout.ckan_upload_path(res["id"])
    assert upload_path.read_bytes() == data
    assert not rtdc_file.exists()
    assert not res.get("s3_available")
    assert res["sha256"] == hashlib.sha256(data).hexdigest()
    assert res["format"] == "RT-DC"
    # The normal pipeline takes over: the symlink job.
    queued = {job["id"] for job in helpers.call_action("job_list")}
    assert queued == {jobs.job_id(res["id"], jobs.SYMLINK)}
    run_jobs()
    assert upload_path.is_symlink()
    assert upload_path.read_bytes() == data
    # Appending again finds the resource (now behind the symlink).
    rtdc_file.write_bytes(data)
    again = invoke(cli, "append-resource", rtdc_file, dataset["id"])
    assert again.exit_code == 0, again.output
    assert "already there" in again.stdout
    assert len(dataset_resources(dataset["id"])) == 1


# ------------------------------------------------------------- bad input
def assert_refused(result, message: str) -> None:
    assert result.exit_code != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("append-resource: ")
    assert message in lines[0]
    assert result.stdout == ""


def assert_nothing_created(owner, dataset) -> None:
    assert dataset_resources(dataset["id"]) == []
    assert bucket_keys(bucket_of(owner)) == []


def test_missing_path_is_refused(cli, owner, make_dataset, tmp_path):
    dataset = make_dataset()
    result = invoke(cli, "append-resource", tmp_path / "nope.rtdc",
                    dataset["id"])
    assert_refused(result, "does not exist")
    assert_nothing_created(owner, dataset)


def test_directory_is_refused(cli, owner, make_dataset, tmp_path):
    dataset = make_dataset()
    result = invoke(cli, "append-resource", tmp_path, dataset["id"])
    assert_refused(result, "is a directory")
    assert_nothing_created(owner, dataset)


def test_fifo_is_refused(cli, owner, make_dataset, tmp_path):
    # Tests run as root, which reads files whatever their mode; a FIFO is
    # a path that exists but cannot be read as a file.
    fifo = tmp_path / "pipe.rtdc"
    os.mkfifo(fifo)
    dataset = make_dataset()
    result = invoke(cli, "append-resource", fifo, dataset["id"])
    assert_refused(result, "is not a regular file")
    assert_nothing_created(owner, dataset)


@pytest.mark.skipif(os.geteuid() == 0,
                    reason="root reads files whatever their permissions")
def test_unreadable_file_is_refused(cli, owner, make_dataset, rtdc_file):
    rtdc_file.chmod(0)
    dataset = make_dataset()
    result = invoke(cli, "append-resource", rtdc_file, dataset["id"])
    assert_refused(result, "cannot read")
    assert_nothing_created(owner, dataset)


def test_unknown_dataset_is_refused(cli, owner, make_dataset, rtdc_file):
    dataset = make_dataset()
    result = invoke(cli, "append-resource", rtdc_file, "no-such-dataset")
    assert_refused(result, "there is no dataset 'no-such-dataset'")
    assert_nothing_created(owner, dataset)
    assert rtdc_file.exists()


def test_corrupt_rtdc_is_refused(cli, owner, make_dataset, tmp_path):
    path = tmp_path / "broken.rtdc"
    path.write_bytes(b"this is not HDF5 " * 100)
    dataset = make_dataset()
    result = invoke(cli, "append-resource", path, dataset["id"],
                    "--delete-source")
    assert_refused(result, "is not a valid RT-DC file")
    assert_nothing_created(owner, dataset)
    assert path.exists()


@pytest.mark.ckan_config("dcor_object_store.endpoint_url",
                         "http://127.0.0.1:9")
def test_unreachable_store_creates_nothing_and_keeps_source(
        cli, owner, make_dataset, rtdc_file):
    dataset = make_dataset()
    result = invoke(cli, "append-resource", rtdc_file, dataset["id"],
                    "--delete-source")
    assert_refused(result, "unreachable")
    assert dataset_resources(dataset["id"]) == []
    assert rtdc_file.exists()
    assert object_store.config.s3_available()


@pytest.mark.ckan_config("dcor_object_store.access_key_id", "")
@pytest.mark.ckan_config("dcor_object_store.secret_access_key", "")
def test_stale_temporary_files_are_removed(cli, owner, make_dataset,
                                           rtdc_file):
    dataset = make_dataset()
    rid = append.resource_id_for(dataset["id"], rtdc_file.name,
                                 file_sha256(rtdc_file))
    dest = layout.ckan_upload_path(rid)
    planted = temp_helpers.plant_set(dest.parent, dest.name, "part")
    # The name earlier versions gave the copy (no .tmp), same rules.
    legacy_dead = dest.with_name(f".{dest.name}.{temp_helpers.dead_pid()}"
                                 ".part")
    legacy_alive = dest.with_name(f".{dest.name}.{os.getpid()}.part")
    for legacy in (legacy_dead, legacy_alive):
        legacy.write_bytes(b"half")
        os.utime(legacy, (0, 0))

    result = invoke(cli, "append-resource", rtdc_file, dataset["id"])

    assert result.exit_code == 0, result.output
    assert dest.read_bytes() == rtdc_file.read_bytes()
    temp_helpers.assert_only_dead_removed(planted)
    assert not legacy_dead.exists()
    assert legacy_alive.exists()
