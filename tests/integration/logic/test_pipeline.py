"""The storage pipeline (the jobs a new resource gets, visibility, the S3
copy) with jobs run in the test process."""
import hashlib
import os

import ckan.plugins.toolkit as tk
import pytest
from ckan.tests import helpers
from rq.job import JobStatus

from ckanext.dcor_depot import config
from ckanext.dcor_depot.operations import jobs
from ckanext.dcor_depot.records import job_queue
from ckanext.dcor_depot.storage import layout, object_store
from tests.support.stack import anonymous_get, run_jobs


def resource_show(rid):
    return helpers.call_action("resource_show", id=rid)


def test_upload_is_moved_symlinked_and_copied_to_s3(
        owner, make_dataset, upload, rtdc_bytes):
    dataset = make_dataset(private=True)
    res = upload(dataset, rtdc_bytes, name="M1 data.rtdc")
    run_jobs()

    path = layout.ckan_upload_path(res["id"])
    assert path.is_symlink()
    target = os.readlink(path)
    expected = layout.user_depot_path(
        user_name=owner["user"]["name"], org_name=owner["org"]["name"],
        dataset_id=dataset["id"], dataset_name=dataset["name"],
        resource_id=res["id"], resource_name="M1 data.rtdc")
    assert target == str(expected)
    assert expected.read_bytes() == rtdc_bytes
    assert str(config.users_depot_path()) in target

    res = resource_show(res["id"])
    sha = hashlib.sha256(rtdc_bytes).hexdigest()
    assert res["sha256"] == sha
    assert tk.asbool(res["s3_available"])
    bucket = object_store.bucket_name(owner["org"]["id"])
    key = layout.object_key(res["id"])
    assert res["s3_url"] == object_store.object_url(bucket, key)
    body = object_store.get_client().get_object(
        Bucket=bucket, Key=key)["Body"].read()
    assert body == rtdc_bytes
    assert anonymous_get(res["s3_url"]).status_code == 403


def test_public_dataset_upload_is_public(owner, make_dataset, upload,
                                         rtdc_bytes):
    dataset = make_dataset(private=False)
    res = upload(dataset, rtdc_bytes)
    run_jobs()
    res = resource_show(res["id"])
    resp = anonymous_get(res["s3_url"])
    assert resp.status_code == 200
    assert resp.content == rtdc_bytes


def test_visibility_follows_dataset(owner, make_dataset, upload,
                                    rtdc_bytes):
    dataset = make_dataset(private=True)
    res = upload(dataset, rtdc_bytes)
    run_jobs()
    url = resource_show(res["id"])["s3_url"]
    assert anonymous_get(url).status_code == 403

    helpers.call_action("package_patch", id=dataset["id"], private=False)
    assert anonymous_get(url).status_code == 200

    helpers.call_action("package_patch", id=dataset["id"], private=True)
    # no window: the tag is gone when the call returns
    assert anonymous_get(url).status_code == 403


def test_jobs_are_queued_once_with_deterministic_ids(
        make_dataset, upload, rtdc_bytes):
    dataset = make_dataset()
    res = upload(dataset, rtdc_bytes)
    ids = [jobs.job_id(res["id"], kind) for kind in jobs.KINDS]
    assert ids == [f"{res['id']}-symlink", f"{res['id']}-s3-upload",
                   f"{res['id']}-s3-backup", f"{res['id']}-s3-sha256"]
    queued = {job["id"] for job in helpers.call_action("job_list")}
    assert f"{res['id']}-symlink" in queued
    # the S3 copy waits for the symlink job; a file on block storage
    # needs no backup job
    assert job_queue.job_status(f"{res['id']}-s3-upload") \
        == JobStatus.DEFERRED
    assert job_queue.job_status(f"{res['id']}-s3-backup") is None
    # the hook firing again does not queue a second copy
    assert jobs.enqueue_resource_jobs(resource_show(res["id"])) == []
    run_jobs()
    assert helpers.call_action("job_list") == []


@pytest.mark.ckan_config("dcor_object_store.access_key_id", "")
@pytest.mark.ckan_config("dcor_object_store.secret_access_key", "")
def test_without_s3_only_symlink(make_dataset, upload, rtdc_bytes):
    dataset = make_dataset()
    res = upload(dataset, rtdc_bytes)
    assert [k.name for k in jobs.planned_kinds(resource_show(res["id"]))] \
        == ["symlink"]
    run_jobs()
    assert layout.ckan_upload_path(res["id"]).is_symlink()
    assert not resource_show(res["id"]).get("s3_available")


def test_deleting_a_resource_closes_its_object(make_dataset, upload,
                                                rtdc_bytes):
    dataset = make_dataset(private=False)
    res = upload(dataset, rtdc_bytes)
    run_jobs()
    url = resource_show(res["id"])["s3_url"]
    assert anonymous_get(url).status_code == 200
    helpers.call_action("resource_delete", id=res["id"])
    assert anonymous_get(url).status_code == 403
    # the data are kept: deleting a resource in CKAN is reversible
    assert object_store.object_exists(
        object_store.bucket_name(dataset["owner_org"]),
        layout.object_key(res["id"]))
