"""``ckan dcor-prune-stale-multipart-uploads``."""
from __future__ import annotations

import time
import uuid

import pytest

from ckanext.dcor_depot.operations import prune
from ckanext.dcor_depot.storage import object_store
from tests.support.cli import invoke, summary

COMMAND = "dcor-prune-stale-multipart-uploads"

# A bucket template of its own, so that pruning with age 0 cannot touch
# the uploads other test runs on the same store have in flight.
TEMPLATE = "test-h3prune-{organization_id}"

pytestmark = [
    pytest.mark.usefixtures("with_extended_cli"),
    pytest.mark.ckan_config("dcor_object_store.bucket_name", TEMPLATE),
]


@pytest.fixture
def site_bucket(pipeline):
    bucket = object_store.bucket_name(str(uuid.uuid4()))
    assert bucket.startswith("test-h3prune-")
    object_store.ensure_bucket(bucket)
    yield bucket
    s3 = object_store.get_client()
    for upload in prune.multipart_uploads(bucket):
        s3.abort_multipart_upload(Bucket=bucket, Key=upload.key,
                                  UploadId=upload.upload_id)


def start_upload(bucket: str, key: str) -> str:
    """An incomplete multipart upload, as a killed upload leaves it."""
    s3 = object_store.get_client()
    upload_id = s3.create_multipart_upload(Bucket=bucket,
                                           Key=key)["UploadId"]
    s3.upload_part(Bucket=bucket, Key=key, UploadId=upload_id,
                   PartNumber=1, Body=b"x" * 1024)
    return upload_id


def upload_ids(bucket: str) -> set[str]:
    return {u.upload_id for u in prune.multipart_uploads(bucket)}


def test_fresh_uploads_are_kept_stale_ones_aborted(cli, site_bucket):
    upload_id = start_upload(site_bucket, "resource/abc/def/ghijkl")
    time.sleep(1.1)  # "Initiated" has a resolution of one second

    kept = invoke(cli, COMMAND)
    assert kept.exit_code == 0, kept.output
    assert summary(kept).startswith(f"{COMMAND}: 0 aborted, ")
    assert summary(kept).endswith(" kept, 0 failed")
    assert upload_id in upload_ids(site_bucket)

    dry = invoke(cli, COMMAND, "--initiated-before-days", 0, "--dry-run")
    assert dry.exit_code == 0, dry.output
    assert (f"{site_bucket}:resource/abc/def/ghijkl (upload {upload_id}, "
            in dry.stdout)
    assert "would abort" in dry.stdout
    assert "(dry run): " in summary(dry)
    assert upload_id in upload_ids(site_bucket)

    result = invoke(cli, COMMAND, "--initiated-before-days", 0)
    assert result.exit_code == 0, result.output
    assert f"upload {upload_id}" in result.stdout
    assert "aborted" in result.stdout
    assert upload_ids(site_bucket) == set()
    # the store no longer knows the upload
    with pytest.raises(Exception) as info:
        object_store.get_client().list_parts(
            Bucket=site_bucket, Key="resource/abc/def/ghijkl",
            UploadId=upload_id)
    # (Ceph RGW 16 answers NoSuchKey where AWS says NoSuchUpload)
    assert object_store.error_code(info.value) in ("NoSuchUpload",
                                                   "NoSuchKey")


def test_buckets_of_other_sites_are_left_alone(cli, site_bucket):
    other = f"other-site-{uuid.uuid4()}"
    object_store.get_client().create_bucket(Bucket=other)
    foreign = start_upload(other, "some/key")
    try:
        result = invoke(cli, COMMAND, "--initiated-before-days", 0)
        assert result.exit_code == 0, result.output
        assert foreign in upload_ids(other)
        assert other not in result.stdout
    finally:
        object_store.get_client().abort_multipart_upload(
            Bucket=other, Key="some/key", UploadId=foreign)
        object_store.get_client().delete_bucket(Bucket=other)


def test_negative_age_is_refused(cli, site_bucket):
    upload_id = start_upload(site_bucket, "k")
    result = invoke(cli, COMMAND, "--initiated-before-days", -1)
    assert result.exit_code == 2
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith(f"{COMMAND}: --initiated-before-days must not "
                           "be negative")
    assert upload_id in upload_ids(site_bucket)
