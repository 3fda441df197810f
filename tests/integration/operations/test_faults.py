"""Failures the storage pipeline must survive.

The store going away, workers dying mid-upload, objects changing behind
the plugin's back, two workers racing, and wrong checksums: each test
checks what an operator would see afterwards (job errors, resource
metadata, bytes in the store and on disk, anonymous access).
"""
from __future__ import annotations

import contextlib
import hashlib
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import botocore.exceptions
import ckan.plugins.toolkit as tk
import pytest
from ckan import model
from ckan.tests import helpers
from werkzeug.datastructures import FileStorage

from ckanext.dcor_depot import errors
from ckanext.dcor_depot.operations import backup, jobs, migrate
from ckanext.dcor_depot.storage import layout, object_store, transfer
from ckanext.dcor_depot.storage.fsops import file_sha256
from tests.support.access import fresh_resource
from tests.support.cli import bucket_of, object_bytes
from tests.support.data import sha256
from tests.support.stack import (
    anonymous_get,
    failed_job_error,
    kill_tree,
    run_jobs,
    stored_in_s3,
    sysadmin_context,
    wait_for,
    worker_log,
)

MiB = 2**20
DOWN = "http://127.0.0.1:9"  # nothing listens on the discard port


def s3_available(rid: str) -> bool:
    return tk.asbool(fresh_resource(rid).get("s3_available", False))


@contextlib.contextmanager
def store_unreachable(ckan_config: Any) -> Iterator[None]:
    """Point the plugin at an endpoint where no store answers."""
    original = ckan_config["dcor_object_store.endpoint_url"]
    ckan_config["dcor_object_store.endpoint_url"] = DOWN
    object_store._known_buckets.clear()  # no shortcut past the store
    try:
        yield
    finally:
        ckan_config["dcor_object_store.endpoint_url"] = original
        object_store._known_buckets.clear()


def write_random_file(path: Path, size: int) -> str:
    """Random bytes of ``size`` in a file; returns their SHA256."""
    sha = hashlib.sha256()
    with open(path, "wb") as fh:
        left = size
        while left:
            chunk = os.urandom(min(left, 8 * MiB))
            sha.update(chunk)
            fh.write(chunk)
            left -= len(chunk)
    return sha.hexdigest()


def upload_file(owner: dict, dataset: dict, path: Path) -> dict:
    """resource_create with a file streamed from disk (no copy in memory)."""
    with open(path, "rb") as fh:
        return helpers.call_action(
            "resource_create", context={"user": owner["user"]["name"]},
            package_id=dataset["id"], url="upload", name=path.name,
            upload=FileStorage(fh, filename=path.name))


# --- the object store is down ------------------------------------------------

def test_store_down_during_upload_job(owner, make_dataset, upload,
                                      ckan_config):
    data = os.urandom(MiB + 1)
    dataset = make_dataset(private=False)
    res = upload(dataset, data)
    rid = res["id"]

    with store_unreachable(ckan_config):
        run_jobs()
        with pytest.raises(errors.StoreError) as info:
            migrate.migrate_resource_to_s3(rid)

    for message in (str(info.value), failed_job_error(rid, jobs.UPLOAD_S3)):
        assert f"{DOWN} is unreachable" in message
        assert rid in message
    # The local file is intact (and in the depot, that job did not need S3).
    path = layout.ckan_upload_path(rid)
    assert path.is_symlink()
    assert path.read_bytes() == data
    assert not s3_available(rid)
    assert "s3_url" not in fresh_resource(rid)
    key = layout.object_key(rid)
    assert object_store.head_object(bucket_of(owner), key) is None

    # The store is back: queueing the resource's jobs again repairs it.
    assert jobs.job_id(rid, jobs.UPLOAD_S3) in jobs.enqueue_resource_jobs(
        fresh_resource(rid))
    run_jobs()
    res = fresh_resource(rid)
    assert tk.asbool(res["s3_available"])
    assert res["sha256"] == sha256(data)
    assert object_bytes(bucket_of(owner), key) == data
    assert anonymous_get(res["s3_url"]).content == data  # public dataset


# --- a worker is killed in the middle of an upload ---------------------------

# Runs the upload job in a process of its own, as a worker's work horse
# would. Parts after the first stall (a slow network), which gives the
# test a moment in which the upload is certainly incomplete.
_STALLING_UPLOAD = """
import sys, time
from ckan.cli import load_config
from ckan.config.middleware import make_app
ini, rid = sys.argv[1:3]
app = make_app(load_config(ini))
from ckanext.dcor_depot.operations import migrate
from ckanext.dcor_depot.storage import object_store
s3 = object_store.get_client()
real_upload_part = s3.upload_part
def stalling_upload_part(**kwargs):
    if kwargs["PartNumber"] > 1:
        time.sleep(600)
    return real_upload_part(**kwargs)
s3.upload_part = stalling_upload_part
with app._wsgi_app.app_context():
    migrate.migrate_resource_to_s3(rid)
"""


def incomplete_uploads(bucket: str, key: str) -> list[dict]:
    try:
        uploads = object_store.get_client().list_multipart_uploads(
            Bucket=bucket, Prefix=key).get("Uploads", [])
    except botocore.exceptions.ClientError:
        return []  # the bucket is not there yet
    return [u for u in uploads if u["Key"] == key]


def uploaded_parts(bucket: str, key: str) -> list[dict]:
    """Parts already stored of the incomplete uploads of ``key``."""
    s3 = object_store.get_client()
    parts = []
    for up in incomplete_uploads(bucket, key):
        parts += s3.list_parts(Bucket=bucket, Key=key,
                               UploadId=up["UploadId"]).get("Parts", [])
    return parts


def abort_incomplete_uploads(bucket: str, key: str) -> None:
    # What `dcor-prune-stale-multipart-uploads` does; keeps the store tidy.
    s3 = object_store.get_client()
    for up in incomplete_uploads(bucket, key):
        s3.abort_multipart_upload(Bucket=bucket, Key=key,
                                  UploadId=up["UploadId"])


def check_killed_upload_is_repaired(owner: dict, rid: str, path: Path,
                                    digest: str) -> None:
    """State after the kill, then the repair by running the job again."""
    bucket, key = bucket_of(owner), layout.object_key(rid)
    try:
        assert object_store.head_object(bucket, key) is None
        assert len(incomplete_uploads(bucket, key)) == 1
        assert file_sha256(path) == digest  # local data intact
        assert not s3_available(rid)

        assert migrate.migrate_resource_to_s3(rid) is True

        head = object_store.head_object(bucket, key)
        assert head["ContentLength"] == path.stat().st_size
        assert transfer.object_sha256(bucket, key) == digest
        res = fresh_resource(rid)
        assert tk.asbool(res["s3_available"])
        assert res["sha256"] == digest
        assert res["s3_url"] == object_store.object_url(bucket, key)
    finally:
        abort_incomplete_uploads(bucket, key)


def test_worker_killed_during_multipart_upload(owner, make_dataset,
                                               tmp_path, request):
    # Just over one part, so that the job uses a multipart upload.
    source = tmp_path / "big.rtdc"
    digest = write_random_file(source, transfer.DEFAULT_PART_SIZE + MiB)
    dataset = make_dataset()
    res = upload_file(owner, dataset, source)
    rid = res["id"]
    path = layout.ckan_upload_path(rid)
    bucket, key = bucket_of(owner), layout.object_key(rid)

    log = tmp_path / "job.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-c", _STALLING_UPLOAD,
             request.config.getoption("--ckan-ini"), rid],
            stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: uploaded_parts(bucket, key)
                 or proc.poll() is not None,
                 timeout=60, interval=0.05, what="the first part")
        assert proc.poll() is None, log.read_text()
    finally:
        if proc.poll() is None:
            kill_tree(proc.pid)
        proc.wait(30)
    assert proc.returncode == -signal.SIGKILL

    check_killed_upload_is_repaired(owner, rid, path, digest)


@pytest.mark.slow
def test_worker_process_killed_during_large_upload(
        owner, make_dataset, tmp_path, start_worker):
    """A real `ckan jobs worker` killed while it sends 150 MiB."""
    source = tmp_path / "large.rtdc"
    digest = write_random_file(source, 150 * MiB)
    dataset = make_dataset()
    res = upload_file(owner, dataset, source)
    source.unlink()
    rid = res["id"]
    path = layout.ckan_upload_path(rid)
    bucket, key = bucket_of(owner), layout.object_key(rid)

    worker = start_worker("dcor-short", "dcor-normal")
    try:
        wait_for(lambda: uploaded_parts(bucket, key)
                 or worker.poll() is not None,
                 timeout=120, interval=0.01, what="the first part")
        assert worker.poll() is None, worker_log(tmp_path)
    finally:
        if worker.poll() is None:
            kill_tree(worker.pid)  # the worker and its work horse
        worker.wait(30)

    assert path.is_symlink()  # the depot job ran before
    check_killed_upload_is_repaired(owner, rid, path, digest)


# --- the object in the store differs from the file ---------------------------

@pytest.mark.parametrize("size_change", [0, 1000], ids=["same", "other"])
def test_changed_object_is_caught_by_rerun(owner, make_dataset, upload,
                                           s3_client, size_change):
    data = os.urandom(MiB)
    dataset = make_dataset(private=False)
    res = upload(dataset, data)
    run_jobs()
    bucket, key = bucket_of(owner), layout.object_key(res["id"])
    assert object_bytes(bucket, key) == data
    # Bit rot, or another tool writing to the key; the tags are gone too.
    s3_client.put_object(Bucket=bucket, Key=key,
                         Body=os.urandom(len(data) + size_change))

    assert migrate.migrate_resource_to_s3(res["id"]) is True

    assert object_bytes(bucket, key) == data
    res = fresh_resource(res["id"])
    assert tk.asbool(res["s3_available"])
    assert res["sha256"] == sha256(data)
    resp = anonymous_get(res["s3_url"])
    assert (resp.status_code, resp.content) == (200, data)


def flip_last_byte(body: bytes) -> bytes:
    corrupted = bytearray(body)
    corrupted[-1] ^= 0xFF
    return bytes(corrupted)


@pytest.mark.parametrize("multipart", [False, True],
                         ids=["single-put", "multipart"])
def test_corrupted_upload_marks_nothing(owner, make_dataset, upload,
                                        s3_client, monkeypatch, multipart):
    part = transfer.DEFAULT_PART_SIZE
    data = os.urandom(part + MiB if multipart else MiB)
    dataset = make_dataset()
    rid = upload(dataset, data)["id"]
    # A byte flipped on the way to the store, in the last part.
    method = "upload_part" if multipart else "put_object"
    real_method = getattr(s3_client, method)

    def corrupting(**kwargs):
        if not multipart or kwargs["PartNumber"] == 2:
            kwargs["Body"] = flip_last_byte(kwargs["Body"])
        return real_method(**kwargs)

    with monkeypatch.context() as patch:
        patch.setattr(s3_client, method, corrupting)
        with pytest.raises(errors.StoreError) as info:
            migrate.migrate_resource_to_s3(rid)

    if multipart:
        def etag(body: bytes) -> str:
            return transfer.multipart_etag([
                hashlib.md5(body[:part]).digest(),
                hashlib.md5(body[part:]).digest()])
    else:
        def etag(body: bytes) -> str:
            return hashlib.md5(body).hexdigest()
    message = str(info.value)
    assert f"resource {rid}" in message
    assert f"expected ETag {etag(data)}" in message
    assert f"found ETag {etag(flip_last_byte(data))}" in message
    assert info.value.code == errors.MISMATCH
    res = fresh_resource(rid)
    assert not tk.asbool(res.get("s3_available", False))
    assert "s3_url" not in res
    assert not res.get("sha256")
    bucket, key = bucket_of(owner), layout.object_key(rid)
    assert object_store.head_object(bucket, key) is None
    assert incomplete_uploads(bucket, key) == []
    assert file_sha256(layout.ckan_upload_path(rid)) == sha256(data)

    # The network is healthy again: the next run succeeds.
    assert migrate.migrate_resource_to_s3(rid) is True
    assert s3_available(rid)
    assert transfer.object_sha256(bucket, key) == sha256(data)


def test_a_racing_writers_identical_object_is_kept(owner, make_dataset,
                                                   upload, s3_client,
                                                   monkeypatch):
    """Regression (review of issue 15): a writer racing on the same key
    (the migration command while the worker's job runs) may store the
    same bytes in another part layout between this upload's completion
    and its check; the check saw another ETag and deleted the object
    (after the racer had recorded it and perhaps deleted the file)."""
    part = transfer.DEFAULT_PART_SIZE
    data = os.urandom(part + MiB)
    rid = upload(make_dataset(), data)["id"]
    bucket, key = bucket_of(owner), layout.object_key(rid)
    real_complete = s3_client.complete_multipart_upload

    def complete_then_racer_writes(**kwargs):
        answer = real_complete(**kwargs)
        real_put(Bucket=bucket, Key=key, Body=data)  # one part: other ETag
        return answer

    real_put = s3_client.put_object
    with monkeypatch.context() as patch:
        patch.setattr(s3_client, "complete_multipart_upload",
                      complete_then_racer_writes)
        assert migrate.migrate_resource_to_s3(rid)

    assert object_bytes(bucket, key) == data
    res = fresh_resource(rid)
    assert tk.asbool(res["s3_available"])
    assert res["sha256"] == sha256(data)


def test_local_file_not_matching_recorded_sha256(owner, make_dataset, upload):
    data = os.urandom(MiB)
    dataset = make_dataset()
    res = upload(dataset, data)
    wrong = sha256(b"what was uploaded once")
    helpers.call_action("resource_patch", context=sysadmin_context(),
                        id=res["id"], sha256=wrong)

    with pytest.raises(errors.StoreError) as info:
        migrate.migrate_resource_to_s3(res["id"])

    for text in (res["id"], wrong, sha256(data)):
        assert text in str(info.value)
    assert info.value.code == errors.MISMATCH
    assert not s3_available(res["id"])
    assert object_store.head_object(
        bucket_of(owner), layout.object_key(res["id"])) is None


# --- two workers run the same job --------------------------------------------

def test_two_workers_upload_the_same_resource(owner, make_dataset, upload,
                                              run_concurrently):
    data = os.urandom(3 * MiB)
    dataset = make_dataset(private=False)
    res = upload(dataset, data)
    rid = res["id"]

    def job():
        return migrate.migrate_resource_to_s3(rid)

    results, errors = run_concurrently(job, job)

    assert errors == []
    assert len(results) == 2 and any(results)
    bucket, key = bucket_of(owner), layout.object_key(rid)
    assert object_bytes(bucket, key) == data
    res = fresh_resource(rid)
    assert tk.asbool(res["s3_available"])
    assert res["sha256"] == sha256(data)
    assert res["s3_url"] == object_store.object_url(bucket, key)
    pkg = helpers.call_action("package_show", id=dataset["id"])
    assert [r["id"] for r in pkg["resources"]] == [rid]
    assert anonymous_get(res["s3_url"]).status_code == 200
    assert incomplete_uploads(bucket, key) == []


# --- the backup job of S3-route resources ------------------------------------

def s3_route_resource(owner: dict, dataset: dict, data: bytes,
                      recorded_sha256: str) -> dict:
    """A resource whose file went straight into the bucket (the S3 route)."""
    rid = str(uuid.uuid4())
    bucket = bucket_of(owner)
    object_store.ensure_bucket(bucket)
    object_store.get_client().put_object(
        Bucket=bucket, Key=layout.object_key(rid), Body=data)
    return helpers.call_action(
        "resource_create", context=sysadmin_context(),
        package_id=dataset["id"], id=rid, name="direct.rtdc",
        url="direct.rtdc", url_type="upload", s3_available=True,
        sha256=recorded_sha256, size=len(data))


def test_backup_of_s3_route_resource(owner, make_dataset):
    data = os.urandom(MiB + 3)
    dataset = make_dataset()
    res = s3_route_resource(owner, dataset, data, sha256(data))
    rid = res["id"]
    assert not os.path.lexists(layout.ckan_upload_path(rid))
    assert jobs.planned_kinds(fresh_resource(rid)) == [jobs.BACKUP_S3]
    assert [j["id"] for j in helpers.call_action("job_list")] \
        == [jobs.job_id(rid, jobs.BACKUP_S3)]

    run_jobs()

    dest = layout.backup_path(rid)
    res_, our, ceid = rid[:3], rid[3:6], rid[6:]
    assert dest == Path(tk.config["dcor_object_store.local_backup_location"],
                        res_, our, ceid)
    assert dest.read_bytes() == data
    assert os.listdir(dest.parent) == [ceid]
    assert not os.path.lexists(layout.ckan_upload_path(rid))
    # Again: nothing is downloaded twice.
    assert backup.backup_resource_from_s3_to_block_storage(rid) == str(dest)


@pytest.mark.ckan_config("dcor_object_store.local_backup_location", "")
def test_no_backup_job_without_a_backup_location(owner, make_dataset):
    data = b"arrived in the store directly"
    dataset = make_dataset()
    rid = s3_route_resource(owner, dataset, data, sha256(data))["id"]
    assert jobs.planned_kinds(fresh_resource(rid)) == []
    assert helpers.call_action("job_list") == []


def test_backup_with_wrong_recorded_sha256(owner, make_dataset):
    data = os.urandom(MiB)
    wrong = sha256(b"the checksum the uploader claimed")
    dataset = make_dataset()
    rid = s3_route_resource(owner, dataset, data, wrong)["id"]

    with pytest.raises(errors.StoreError) as info:
        backup.backup_resource_from_s3_to_block_storage(rid)

    for text in (rid, wrong, sha256(data)):
        assert text in str(info.value)
    assert info.value.code == errors.MISMATCH
    dest = layout.backup_path(rid)
    assert not dest.exists()
    assert not dest.parent.exists() or os.listdir(dest.parent) == []


# --- visibility --------------------------------------------------------------

def test_draft_never_becomes_readable(owner, make_dataset, upload):
    data = os.urandom(1000)
    dataset = make_dataset(private=False, state="draft")
    assert helpers.call_action("package_show", id=dataset["id"])["state"] \
        == "draft"
    res = upload(dataset, data)
    run_jobs()
    url = fresh_resource(res["id"])["s3_url"]
    assert object_bytes(bucket_of(owner), layout.object_key(res["id"])) \
        == data
    assert anonymous_get(url).status_code == 403
    # Edits of the draft do not open it either.
    helpers.call_action("package_patch", id=dataset["id"], title="Still")
    assert anonymous_get(url).status_code == 403

    helpers.call_action("package_patch", id=dataset["id"], state="active")
    resp = anonymous_get(url)
    assert (resp.status_code, resp.content) == (200, data)


def test_store_down_when_closing_refuses_the_change(owner, make_dataset,
                                                   upload, ckan_config):
    dataset, res = stored_in_s3(make_dataset, upload, private=False,
                                data=b"visibility")
    url = res["s3_url"]
    assert anonymous_get(url).status_code == 200

    with store_unreachable(ckan_config):
        with pytest.raises(tk.ValidationError) as info:
            helpers.call_action("package_patch", id=dataset["id"],
                                private=True)
        # The web request would end here, dropping the failed transaction.
        model.Session.remove()

    message = str(info.value.error_dict["private"])
    assert dataset["name"] in message
    assert f"{DOWN} is unreachable" in message
    # CKAN and the store still agree: the dataset stayed public.
    pkg = helpers.call_action("package_show", id=dataset["id"])
    assert pkg["private"] is False
    assert anonymous_get(url).status_code == 200

    # With the store back the change goes through.
    helpers.call_action("package_patch", id=dataset["id"], private=True)
    assert anonymous_get(url).status_code == 403


# Makes a public dataset private in a process of its own that dies (as
# if killed) right after its objects were closed, before the commit: the
# database drops the transaction and no rollback listener runs.
_KILLED_AFTER_CLOSING = """
import os, sys
from ckan.cli import load_config
from ckan.config.middleware import make_app
import ckan.plugins.toolkit as tk
ini, dataset_id = sys.argv[1:3]
app = make_app(load_config(ini))
from ckanext.dcor_depot.operations import visibility
real_close = visibility.close
def close_then_die(refs):
    real_close(refs)
    os._exit(9)
visibility.close = close_then_die
with app._wsgi_app.test_request_context():
    user = tk.get_action("get_site_user")({"ignore_auth": True}, {})
    tk.get_action("package_patch")({"user": user["name"]},
                                   {"id": dataset_id, "private": True})
"""


def test_a_process_killed_after_closing_leaves_the_sync_job(
        owner, make_dataset, upload, tmp_path, request):
    dataset, res = stored_in_s3(make_dataset, upload, private=False,
                                data=b"killed before the commit")
    url = res["s3_url"]
    assert anonymous_get(url).status_code == 200

    log = tmp_path / "killed.log"
    with open(log, "wb") as out:
        proc = subprocess.run(
            [sys.executable, "-c", _KILLED_AFTER_CLOSING,
             request.config.getoption("--ckan-ini"), dataset["id"]],
            stdout=out, stderr=subprocess.STDOUT, timeout=120)
    assert proc.returncode == 9, log.read_text()
    model.Session.remove()
    # The commit was lost: the dataset is public, its object closed...
    assert helpers.call_action("package_show",
                               id=dataset["id"])["private"] is False
    assert anonymous_get(url).status_code == 403
    # ...until the job queued before the closing runs.
    run_jobs()
    resp = anonymous_get(url)
    assert (resp.status_code, resp.content) \
        == (200, b"killed before the commit")


def test_the_sync_job_after_a_commit_that_stands_keeps_data_closed(
        owner, make_dataset, upload):
    dataset, res = stored_in_s3(make_dataset, upload, private=False,
                                data=b"private from now on")
    url = res["s3_url"]
    helpers.call_action("package_patch", id=dataset["id"], private=True)
    queued = {job["id"] for job in helpers.call_action("job_list")}
    assert f"{dataset['id']}-sync-visibility" in queued
    assert anonymous_get(url).status_code == 403
    run_jobs()  # reads the committed state: nothing opens
    assert anonymous_get(url).status_code == 403

def test_store_down_when_opening_queues_the_sync_job(owner, make_dataset,
                                                     upload, ckan_config):
    dataset, res = stored_in_s3(make_dataset, upload, private=True,
                                data=b"visibility")
    url = res["s3_url"]
    assert anonymous_get(url).status_code == 403

    with store_unreachable(ckan_config):
        # Committed: opening after the commit failed, which never fails
        # the request; the sync job takes over.
        helpers.call_action("package_patch", id=dataset["id"],
                            private=False)
    model.Session.remove()
    assert helpers.call_action("package_show",
                               id=dataset["id"])["private"] is False
    assert anonymous_get(url).status_code == 403
    queued = {job["id"] for job in helpers.call_action("job_list")}
    assert f"{dataset['id']}-sync-visibility" in queued

    run_jobs()  # the store is back
    assert anonymous_get(url).status_code == 200


def test_deleting_public_dataset_makes_objects_private(owner, make_dataset,
                                                       upload):
    dataset = make_dataset(private=False)
    res = upload(dataset, b"soon deleted")
    run_jobs()
    url = fresh_resource(res["id"])["s3_url"]
    assert anonymous_get(url).status_code == 200

    helpers.call_action("package_delete", id=dataset["id"])

    assert anonymous_get(url).status_code == 403
    # The object itself is kept (deleting data is an operator's decision).
    assert object_store.head_object(bucket_of(owner),
                                    layout.object_key(res["id"]))
