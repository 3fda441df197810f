"""Verified transfers against the real Ceph RADOS Gateway."""
from __future__ import annotations

import hashlib
import os
import threading
import tracemalloc

import pytest

from ckanext.dcor_depot import errors
from ckanext.dcor_depot.storage import (
    object_store,
    transfer,
    transfer_common,
)
from tests.support import temp as temp_helpers
from tests.support.data import data_file, flip_first_byte, sha256
from tests.support.store import open_uploads

MiB = 2**20
# S3's smallest part: lets a ~12 MiB file be a 3-part upload.
PART = 5 * MiB


def md5(data):
    return hashlib.md5(data).hexdigest()


def etag_of(data, part_size=None):
    """The ETag S3 should report for ``data`` uploaded like this."""
    if part_size is None or len(data) <= part_size:
        return md5(data)
    return transfer.multipart_etag([
        hashlib.md5(data[i:i + part_size]).digest()
        for i in range(0, len(data), part_size)])


def stored(s3_client, bucket, key):
    return s3_client.get_object(Bucket=bucket, Key=key)["Body"].read()


def forbid(monkeypatch, s3_client, *names):
    """Make the given client calls fail the test."""
    def refuse(*args, **kwargs):
        raise AssertionError(f"unexpected call, args={args} {kwargs}")
    for name in names:
        monkeypatch.setattr(s3_client, name, refuse)


# --- upload -----------------------------------------------------------------

def test_single_part_round_trip(s3_client, fresh_bucket, tmp_path,
                                monkeypatch):
    path, data = data_file(tmp_path, MiB + 123)
    key = "resource/abc/def/single"
    result = transfer.upload_verified(path, fresh_bucket, key,
                                      label="res-single")
    assert result == transfer.UploadResult(
        bucket=fresh_bucket, key=key, size=len(data), sha256=sha256(data),
        etag=md5(data), uploaded=True)
    assert stored(s3_client, fresh_bucket, key) == data
    head = s3_client.head_object(Bucket=fresh_bucket, Key=key)
    assert "sha256" not in head["Metadata"]  # not known before the upload

    # Already there: nothing is sent, the object is untouched.
    forbid(monkeypatch, s3_client, "put_object", "upload_part",
           "create_multipart_upload", "delete_object")
    again = transfer.upload_verified(path, fresh_bucket, key)
    assert again.uploaded is False
    assert (again.sha256, again.etag) == (result.sha256, result.etag)
    assert s3_client.head_object(Bucket=fresh_bucket, Key=key)[
        "LastModified"] == head["LastModified"]


def test_multipart_round_trip(s3_client, fresh_bucket, tmp_path,
                              monkeypatch):
    path, data = data_file(tmp_path, 12 * MiB + 7)
    key = "resource/abc/def/multi"
    result = transfer.upload_verified(
        path, fresh_bucket, key, expected_sha256=sha256(data).upper(),
        part_size=PART, threads=2)
    assert result.uploaded is True
    assert result.sha256 == sha256(data)
    assert result.etag == etag_of(data, PART)
    assert result.etag.endswith("-3")
    assert stored(s3_client, fresh_bucket, key) == data
    head = s3_client.head_object(Bucket=fresh_bucket, Key=key)
    assert head["Metadata"]["sha256"] == sha256(data)
    assert head["ContentLength"] == len(data)
    assert open_uploads(fresh_bucket) == []

    forbid(monkeypatch, s3_client, "put_object", "upload_part",
           "create_multipart_upload", "delete_object")
    again = transfer.upload_verified(path, fresh_bucket, key,
                                     part_size=PART, threads=2)
    assert again.uploaded is False
    assert again.etag == result.etag
    assert s3_client.head_object(Bucket=fresh_bucket, Key=key)[
        "LastModified"] == head["LastModified"]


def test_empty_file(s3_client, fresh_bucket, tmp_path):
    path, _ = data_file(tmp_path, 0)
    result = transfer.upload_verified(path, fresh_bucket, "resource/e/m/pty")
    assert (result.size, result.etag, result.uploaded) == (
        0, md5(b""), True)
    assert transfer.upload_verified(
        path, fresh_bucket, "resource/e/m/pty").uploaded is False
    dest = tmp_path / "out" / "empty"
    transfer.download_verified(fresh_bucket, "resource/e/m/pty", dest)
    assert dest.read_bytes() == b""


@pytest.mark.parametrize("size", [MiB + 5, 12 * MiB + 5])
def test_file_is_read_once_and_nothing_downloaded(s3_client, fresh_bucket,
                                                  tmp_path, monkeypatch,
                                                  size):
    path, data = data_file(tmp_path, size)
    read = []
    real_read_exact = transfer_common.read_exact

    def counting(fh, length, name):
        read.append(length)
        return real_read_exact(fh, length, name)

    real_read_into = transfer_common.read_into

    def counting_into(fh, buffer, length, name):
        read.append(length)
        return real_read_into(fh, buffer, length, name)

    monkeypatch.setattr(transfer_common, "read_exact", counting)
    monkeypatch.setattr(transfer_common, "read_into", counting_into)
    forbid(monkeypatch, s3_client, "get_object")
    key = "resource/rea/d/once"
    transfer.upload_verified(path, fresh_bucket, key, part_size=PART)
    assert sum(read) == size
    read.clear()
    assert not transfer.upload_verified(path, fresh_bucket, key,
                                        part_size=PART).uploaded
    assert sum(read) == size


@pytest.mark.parametrize("size", [MiB, 12 * MiB])
def test_changed_object_of_same_size_is_replaced(s3_client, fresh_bucket,
                                                 tmp_path, size):
    path, data = data_file(tmp_path, size)
    key = "resource/cha/nge/same"
    transfer.upload_verified(path, fresh_bucket, key, part_size=PART)
    s3_client.put_object(Bucket=fresh_bucket, Key=key,
                         Body=os.urandom(size))
    result = transfer.upload_verified(path, fresh_bucket, key,
                                      part_size=PART)
    assert result.uploaded is True
    assert result.etag == etag_of(data, PART)
    assert stored(s3_client, fresh_bucket, key) == data


def test_changed_object_of_other_size_is_replaced(s3_client, fresh_bucket,
                                                  tmp_path):
    path, data = data_file(tmp_path, 6 * MiB)
    key = "resource/cha/nge/size"
    s3_client.put_object(Bucket=fresh_bucket, Key=key, Body=b"old")
    result = transfer.upload_verified(path, fresh_bucket, key,
                                      part_size=PART)
    assert result.uploaded is True
    assert stored(s3_client, fresh_bucket, key) == data


def test_object_with_other_layout_is_compared_as_single_put(
        s3_client, fresh_bucket, tmp_path, monkeypatch):
    # Uploaded by another tool in one PUT although larger than our parts.
    path, data = data_file(tmp_path, 6 * MiB)
    key = "resource/oth/er/layout"
    s3_client.put_object(Bucket=fresh_bucket, Key=key, Body=data)
    forbid(monkeypatch, s3_client, "put_object", "upload_part",
           "create_multipart_upload")
    result = transfer.upload_verified(path, fresh_bucket, key,
                                      part_size=PART)
    assert result.uploaded is False
    assert result.etag == md5(data)


def test_corrupted_part_is_caught(s3_client, fresh_bucket, tmp_path,
                                  monkeypatch):
    path, data = data_file(tmp_path, 12 * MiB + 1)
    key = "resource/cor/rupt/multi"
    real_upload_part = s3_client.upload_part

    def corrupting(**kwargs):
        if kwargs["PartNumber"] == 2:
            kwargs["Body"] = flip_first_byte(kwargs["Body"])
        return real_upload_part(**kwargs)

    monkeypatch.setattr(s3_client, "upload_part", corrupting)
    expected = etag_of(data, PART)
    found = etag_of(data[:PART] + flip_first_byte(data[PART:]), PART)
    with pytest.raises(errors.StoreError) as info:
        transfer.upload_verified(path, fresh_bucket, key, label="res-42",
                                 part_size=PART, threads=3)
    message = str(info.value)
    for text in ("res-42", key, expected, found, "deleted"):
        assert text in message
    assert info.value.code == errors.MISMATCH
    assert object_store.head_object(fresh_bucket, key) is None
    assert open_uploads(fresh_bucket) == []
    assert path.read_bytes() == data


def test_corrupted_single_put_is_caught(s3_client, fresh_bucket, tmp_path,
                                        monkeypatch):
    path, data = data_file(tmp_path, MiB)
    key = "resource/cor/rupt/single"
    real_put_object = s3_client.put_object

    def corrupting(**kwargs):
        kwargs["Body"] = flip_first_byte(kwargs["Body"])
        return real_put_object(**kwargs)

    monkeypatch.setattr(s3_client, "put_object", corrupting)
    with pytest.raises(errors.StoreError) as info:
        transfer.upload_verified(path, fresh_bucket, key, label="res-43")
    message = str(info.value)
    for text in ("res-43", key, md5(data), md5(flip_first_byte(data))):
        assert text in message
    assert info.value.code == errors.MISMATCH
    assert object_store.head_object(fresh_bucket, key) is None
    assert path.read_bytes() == data


@pytest.mark.parametrize("size", [MiB, 12 * MiB])
def test_wrong_expected_sha256_uploads_nothing(s3_client, fresh_bucket,
                                               tmp_path, size):
    path, data = data_file(tmp_path, size)
    key = "resource/wro/ng/sha"
    wrong = sha256(b"something else")
    with pytest.raises(errors.StoreError) as info:
        transfer.upload_verified(path, fresh_bucket, key, label="res-44",
                                 expected_sha256=wrong, part_size=PART)
    for text in ("res-44", wrong, sha256(data), "recorded checksum"):
        assert text in str(info.value)
    assert info.value.code == errors.MISMATCH
    assert object_store.head_object(fresh_bucket, key) is None
    assert open_uploads(fresh_bucket) == []
    assert path.read_bytes() == data


def test_failing_part_aborts_the_upload(s3_client, fresh_bucket, tmp_path,
                                        monkeypatch):
    path, data = data_file(tmp_path, 12 * MiB)
    key = "resource/fai/led/part"
    real_upload_part = s3_client.upload_part

    def failing(**kwargs):
        if kwargs["PartNumber"] == 3:
            # An S3 error the store could answer with.
            kwargs["UploadId"] = "no-such-upload"
        return real_upload_part(**kwargs)

    monkeypatch.setattr(s3_client, "upload_part", failing)
    with pytest.raises(errors.StoreError,
                       match=f"res-45: cannot upload .* to s3://"
                             f"{fresh_bucket}/{key}: object store refused"):
        transfer.upload_verified(path, fresh_bucket, key, label="res-45",
                                 part_size=PART)
    assert object_store.head_object(fresh_bucket, key) is None
    assert open_uploads(fresh_bucket) == []


@pytest.mark.ckan_config("dcor_object_store.endpoint_url",
                         "http://127.0.0.1:9")
@pytest.mark.parametrize("bucket_known", [False, True])
def test_unreachable_store(with_plugins, tmp_path, bucket_known):
    path, data = data_file(tmp_path, MiB)
    object_store._known_buckets.clear()
    if bucket_known:
        # Get past ensure_bucket to the transfer's own requests.
        object_store._known_buckets.add("test-circle-unreachable")
    try:
        with pytest.raises(errors.StoreError,
                           match="127.0.0.1:9 is unreachable"):
            transfer.upload_verified(path, "test-circle-unreachable",
                                     "resource/a/b/c", label="res-46")
    finally:
        object_store._known_buckets.clear()
    assert path.read_bytes() == data


def test_tuning_is_checked(tmp_path):
    path, _ = data_file(tmp_path, 10)
    with pytest.raises(ValueError, match="part size"):
        transfer.upload_verified(path, "b", "k", part_size=MiB)
    with pytest.raises(ValueError, match="threads"):
        transfer.upload_verified(path, "b", "k", threads=0)


def test_progress_adds_up_to_the_size(fresh_bucket, tmp_path):
    path, data = data_file(tmp_path, 12 * MiB + 3)
    key = "resource/pro/gr/ess"
    for _ in range(2):  # uploaded, then found identical
        sent = []
        transfer.upload_verified(path, fresh_bucket, key, part_size=PART,
                                 progress=sent.append)
        assert sum(sent) == len(data)
    received = []
    transfer.download_verified(fresh_bucket, key, tmp_path / "copy",
                               chunk_size=PART, progress=received.append)
    assert sum(received) == len(data)
    assert len(received) == 3


def test_concurrent_uploads_of_the_same_key(s3_client, fresh_bucket,
                                            tmp_path):
    path, data = data_file(tmp_path, 12 * MiB + 11)
    key = "resource/con/cur/rent"
    start = threading.Barrier(2)
    results, errors = [], []

    def upload():
        start.wait()
        try:
            results.append(transfer.upload_verified(
                path, fresh_bucket, key, part_size=PART, threads=2))
        except Exception as exc:  # reported below
            errors.append(exc)

    workers = [threading.Thread(target=upload) for _ in range(2)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert errors == []
    assert [r.sha256 for r in results] == [sha256(data)] * 2
    assert stored(s3_client, fresh_bucket, key) == data
    assert open_uploads(fresh_bucket) == []


def test_upload_memory_is_bounded(fresh_bucket, tmp_path):
    path, _ = data_file(tmp_path, 40 * MiB)
    tracemalloc.start()
    try:
        transfer.upload_verified(path, fresh_bucket, "resource/m/e/m",
                                 part_size=PART, threads=2)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # The window is threads + 1 = 3 parts; allow some slack for botocore.
    assert peak < 5 * PART


# --- reading from the store --------------------------------------------------

def test_object_sha256_uses_parallel_ranges(s3_client, fresh_bucket,
                                            tmp_path, monkeypatch):
    data = os.urandom(12 * MiB + 5)
    key = "resource/sha/two/fiftysix"
    s3_client.put_object(Bucket=fresh_bucket, Key=key, Body=data)
    ranges = []
    real_get_object = s3_client.get_object

    def recording(**kwargs):
        ranges.append(kwargs["Range"])
        return real_get_object(**kwargs)

    monkeypatch.setattr(s3_client, "get_object", recording)
    assert transfer.object_sha256(fresh_bucket, key, chunk_size=PART,
                                  threads=3) == sha256(data)
    assert set(ranges) == {f"bytes=0-{PART - 1}",
                           f"bytes={PART}-{2 * PART - 1}",
                           f"bytes={2 * PART}-{len(data) - 1}"}
    ranges.clear()
    assert transfer.object_sha256(fresh_bucket, key) == sha256(data)
    assert len(ranges) == 1  # smaller than one default range


def test_object_sha256_of_missing_object(fresh_bucket):
    with pytest.raises(errors.StoreError,
                       match="there is no object"):
        transfer.object_sha256(fresh_bucket, "resource/no/such/key")


def test_download_round_trip(s3_client, fresh_bucket, tmp_path):
    path, data = data_file(tmp_path, 12 * MiB + 9)
    key = "resource/dow/n/load"
    up = transfer.upload_verified(path, fresh_bucket, key, part_size=PART,
                                  expected_sha256=sha256(data))
    dest = tmp_path / "new" / "folders" / "copy.rtdc"
    result = transfer.download_verified(fresh_bucket, key, dest,
                                        expected_sha256=sha256(data),
                                        chunk_size=PART, threads=2)
    assert dest.read_bytes() == data
    assert result == transfer.DownloadResult(
        bucket=fresh_bucket, key=key, path=dest, size=len(data),
        sha256=sha256(data), etag=up.etag)
    assert os.listdir(dest.parent) == ["copy.rtdc"]
    # Overwrites an existing file atomically.
    dest.write_bytes(b"stale")
    transfer.download_verified(fresh_bucket, key, dest)
    assert dest.read_bytes() == data


def test_download_with_wrong_sha256_leaves_nothing(s3_client, fresh_bucket,
                                                   tmp_path):
    data = os.urandom(6 * MiB)
    key = "resource/dow/n/wrong"
    s3_client.put_object(Bucket=fresh_bucket, Key=key, Body=data)
    dest = tmp_path / "dl" / "file.rtdc"
    wrong = sha256(b"other")
    with pytest.raises(errors.StoreError) as info:
        transfer.download_verified(fresh_bucket, key, dest,
                                   expected_sha256=wrong, label="res-47",
                                   chunk_size=PART)
    for text in ("res-47", wrong, sha256(data)):
        assert text in str(info.value)
    assert info.value.code == errors.MISMATCH
    assert not dest.exists()
    assert os.listdir(dest.parent) == []


def test_download_checks_stored_sha256_metadata(s3_client, fresh_bucket,
                                                tmp_path):
    key = "resource/dow/n/meta"
    s3_client.put_object(Bucket=fresh_bucket, Key=key, Body=b"bit rot",
                         Metadata={"sha256": sha256(b"original")})
    dest = tmp_path / "file"
    with pytest.raises(errors.StoreError, match=sha256(b"original")) as info:
        transfer.download_verified(fresh_bucket, key, dest)
    assert info.value.code == errors.MISMATCH
    assert not dest.exists()
    assert os.listdir(tmp_path) == []


def test_concurrent_downloads_to_the_same_file(fresh_bucket, s3_client,
                                               tmp_path):
    data = os.urandom(11 * MiB)
    key = "resource/con/cur/down"
    s3_client.put_object(Bucket=fresh_bucket, Key=key, Body=data)
    dest = tmp_path / "dl" / "same.rtdc"
    start = threading.Barrier(2)
    errors = []

    def download():
        start.wait()
        try:
            transfer.download_verified(fresh_bucket, key, dest,
                                       expected_sha256=sha256(data),
                                       chunk_size=PART, threads=2)
        except Exception as exc:  # reported below
            errors.append(exc)

    workers = [threading.Thread(target=download) for _ in range(2)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert errors == []
    assert dest.read_bytes() == data
    assert os.listdir(dest.parent) == ["same.rtdc"]


def test_download_of_missing_object(fresh_bucket, tmp_path):
    with pytest.raises(errors.StoreError,
                       match="there is no object"):
        transfer.download_verified(fresh_bucket, "resource/no/such/key",
                                   tmp_path / "x")
    assert not (tmp_path / "x").exists()


def test_download_removes_stale_temporary_files(s3_client, fresh_bucket,
                                                tmp_path):
    data = os.urandom(MiB)
    key = "resource/sta/le/temps"
    s3_client.put_object(Bucket=fresh_bucket, Key=key, Body=data)
    dest = tmp_path / "dl" / "copy.rtdc"
    planted = temp_helpers.plant_set(dest.parent, dest.name, "download")
    planted.update({f"{case} other": path for case, path in
                    temp_helpers.plant_set(dest.parent, "other.rtdc",
                                           "download").items()})
    seen = []

    def progress(_n):
        # The temporary file of a running download names its process.
        seen.extend(name for name in os.listdir(dest.parent)
                    if name.startswith(f".copy.rtdc.{os.getpid()}-")
                    and name.endswith(".download.tmp"))

    transfer.download_verified(fresh_bucket, key, dest, progress=progress)

    assert dest.read_bytes() == data
    assert seen
    temp_helpers.assert_only_dead_removed(planted)
    assert not any(name in os.listdir(dest.parent) for name in seen)
