"""DCOR-Aid 1.1.3's own functions against the live site, as an ordinary
editor: its direct upload to the store, its ETag check, its activation
and its verified download."""
from __future__ import annotations

import pytest

from ckanext.dcor_depot.sample_data import make_rtdc_file
from tests.support.access import (
    anon_status,
    fresh_dataset,
    fresh_resource,
)
from tests.support.data import file_sha256
from tests.support.stack import run_jobs

dcoraid_api = pytest.importorskip("dcoraid.api")
from dcoraid.api import dataset as dcoraid_dataset  # noqa: E402
from dcoraid.download.job import DownloadJob  # noqa: E402
from dcoraid.upload.job import UploadJob  # noqa: E402

GiB = 2**30


@pytest.fixture
def no_fallback(monkeypatch):
    """DCOR-Aid's upload through CKAN's web process fails the test."""
    def refuse(*args, **kwargs):
        raise AssertionError("DCOR-Aid fell back to uploading through CKAN")
    monkeypatch.setattr(dcoraid_dataset,
                        "resource_add_upload_legacy_indirect_ckan", refuse)


def dcoraid_api_for(site, who) -> dcoraid_api.CKANAPI:
    return dcoraid_api.CKANAPI(server=site.url, api_key=who.token,
                               ssl_verify=False, caching=False)


def test_upload_job_goes_straight_to_the_store_and_verifies(
        site, org, no_fallback, tmp_path):
    api = dcoraid_api_for(site, org.editor)
    ds = dcoraid_dataset.dataset_create(
        {"name": "dcoraid-upload", "title": "DCOR-Aid upload",
         "owner_org": org.id, "private": True}, api=api)
    path = make_rtdc_file(tmp_path / "cells.rtdc", events=300)
    job = UploadJob(api=api, dataset_id=ds["id"], resource_paths=[path],
                    cache_dir=tmp_path / "cache")
    job.task_compress_resources()
    sent = job.paths[0]  # DCOR-Aid uploads its compressed copy
    sent_sha256, sent_size = file_sha256(sent), sent.stat().st_size
    job.task_upload_resources()
    assert job.state == "online", job.traceback
    (resource,) = fresh_dataset(ds["id"])["resources"]
    # the ETag DCOR-Aid computed is recorded, so its check passes at once
    assert resource["etag"] == job.etags[0]
    assert resource["url_type"] == "s3_upload"
    assert resource["size"] == sent_size
    assert resource["s3_available"] is True
    job.task_verify_resources()
    assert job.state == "done", job.traceback
    assert fresh_dataset(ds["id"])["state"] == "active"
    run_jobs()  # the SHA256 job of the direct route
    assert fresh_resource(resource["id"])["sha256"] == sent_sha256
    # private dataset: the object is closed to anonymous readers
    assert anon_status(resource["s3_url"]) == 403
    download = DownloadJob(api=api, resource_id=resource["id"],
                           download_path=tmp_path / "down")
    download.task_download_resource()
    download.task_verify_resource()
    assert download.state == "done", download.traceback
    assert file_sha256(download.path) == sent_sha256


@pytest.mark.slow
def test_a_file_over_1_gib_goes_up_in_two_parts(site, org, no_fallback,
                                                tmp_path):
    api = dcoraid_api_for(site, org.editor)
    ds = dcoraid_dataset.dataset_create(
        {"name": "dcoraid-large", "owner_org": org.id, "private": True},
        api=api)
    path = tmp_path / "large.bin"
    with path.open("wb") as fd:  # sparse but real bytes to the store
        fd.seek(GiB)
        fd.write(b"end")
    _, etag = dcoraid_dataset.resource_add(dataset_id=ds["id"], path=path,
                                           api=api)
    assert etag.endswith("-2")
    (resource,) = fresh_dataset(ds["id"])["resources"]
    assert resource["etag"] == etag and resource["size"] == GiB + 3
    run_jobs()
    assert fresh_resource(resource["id"])["sha256"] == file_sha256(path)
