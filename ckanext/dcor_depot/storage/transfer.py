"""Verified transfers between local files and the object store.

Every feature that moves a file into or out of S3 goes through
:func:`upload_verified` and :func:`download_verified`, so there is exactly
one place that decides when a transfer counts as done:

- An upload reads the local file once. While reading it computes the
  SHA256 of the whole file and the MD5 of each part it sends, and afterwards
  compares the ETag and size the store reports (``head_object``) with what
  was sent. Nothing is re-read and nothing is downloaded to verify.
- A download streams the object with large parallel range GETs, hashes the
  bytes as they arrive, writes them to a temporary file next to the
  destination and renames it into place only when size and SHA256 match.

Multipart objects only become visible when the upload is completed, so a
failed or interrupted upload never leaves a half-written object under the
final key (a killed process leaves an incomplete multipart upload, which
the store does not show as an object and a prune command removes).

This module is the public face; :mod:`.upload` and :mod:`.download` do
the work, :mod:`.multipart` has the part and ETag arithmetic.
"""
from __future__ import annotations

import contextlib
import hashlib
import os
from pathlib import Path
from typing import Any

import boto3.s3.transfer

from ckanext.dcor_depot import errors
from ckanext.dcor_depot.progress import Progress, no_progress
from ckanext.dcor_depot.storage import download, object_store, upload
from ckanext.dcor_depot.storage.multipart import (
    COPY_PART_SIZE,
    DEFAULT_PART_SIZE,
    DEFAULT_THREADS,
    MAX_PART_SIZE,
    MAX_PARTS,
    MIN_PART_SIZE,
    MiB,
    check_tuning,
    multipart_etag,
    part_size_for,
)
from ckanext.dcor_depot.storage.transfer_common import (
    UNKNOWN,
    DownloadResult,
    UploadResult,
    mismatch,
    prefix,
    where,
)

# The names callers use, whichever module defines them.
__all__ = [
    "COPY_PART_SIZE", "DEFAULT_PART_SIZE", "DEFAULT_THREADS",
    "MAX_PARTS", "MAX_PART_SIZE", "MIN_PART_SIZE", "MiB", "UNKNOWN",
    "DownloadResult", "UploadResult",
    "copy_verified", "download_verified", "multipart_etag",
    "object_sha256", "part_size_for", "upload_verified",
]


def upload_verified(path: str | os.PathLike[str], bucket: str, key: str, *,
                    expected_sha256: str | None = None,
                    label: str = "",
                    progress: Progress | None = None,
                    part_size: int = DEFAULT_PART_SIZE,
                    threads: int = DEFAULT_THREADS,
                    stored: dict[str, Any] | None = UNKNOWN
                    ) -> UploadResult:
    """Upload ``path`` to ``bucket/key`` and verify what the store holds.

    An object of the same size whose ETag matches the local file is left
    alone (``uploaded=False``). ``expected_sha256`` is the checksum on
    record for the file: a file that does not match it is not uploaded, and
    the checksum is stored as the object's ``sha256`` metadata. ``label``
    (e.g. the resource id) names the file in error messages. ``progress``
    receives the number of bytes just sent. ``stored`` is what the caller
    already knows about the object (``ContentLength`` and ``ETag``, e.g.
    from a bucket listing, or None for "no such object"), which saves a
    request per file; by default the object is looked up.

    Raises StoreError with code ``Mismatch`` when the file does not match
    ``expected_sha256`` or the store holds something else than was sent
    (the bad object is deleted), another StoreError when the store fails.
    """
    path = Path(path)
    check_tuning(part_size, threads)
    if expected_sha256 is not None:
        expected_sha256 = expected_sha256.lower()
    job = upload.Upload(path=path, bucket=bucket, key=key,
                        expected_sha256=expected_sha256, label=label,
                        progress=progress or no_progress, threads=threads,
                        stored=stored)
    what = f"{prefix(label)}cannot upload {path} to {where(bucket, key)}"
    try:
        object_store.ensure_bucket(bucket)
    except errors.StoreError as exc:
        # Often the first request of a job: say what was being uploaded.
        raise object_store.store_error(exc, what) from exc
    with object_store.translated(what):
        return job.run(part_size)


def object_sha256(bucket: str, key: str, *,
                  chunk_size: int = DEFAULT_PART_SIZE,
                  threads: int = DEFAULT_THREADS,
                  progress: Progress | None = None) -> str:
    """SHA256 (hex) of an object, read with parallel range GETs.

    This is the deep check: it reads every byte of the object. All ranges
    are requested with If-Match on the ETag, so an object replaced while
    being read gives an error instead of a mixed checksum.
    """
    check_tuning(chunk_size, threads)
    with object_store.translated(f"cannot read {where(bucket, key)}"):
        s3 = object_store.get_client()
        found = _head_or_fail(s3, bucket, key)
        sha = hashlib.sha256()
        with contextlib.closing(download.iter_object(
                s3, bucket, key, found["ContentLength"], found["ETag"],
                chunk_size, threads)) as chunks:
            for chunk in chunks:
                sha.update(chunk)
                if progress:
                    progress(len(chunk))
        return sha.hexdigest()


def copy_verified(source_bucket: str, key: str, bucket: str, *,
                  expected_sha256: str | None = None) -> str:
    """Copy an object server-side to ``bucket`` (same key), untagged.

    The copy is checked by a streamed SHA256 against ``expected_sha256``,
    or against the source's when none is given (a multipart copy's ETag
    differs from its source's, so ETags prove nothing). A copy that does
    not match is removed (never the source) and a StoreError with code
    ``Mismatch`` raised.
    Returns the SHA256.
    """
    expected = expected_sha256 or object_sha256(source_bucket, key)
    with object_store.translated(f"cannot copy {where(source_bucket, key)}"
                                 f" to {where(bucket, key)}"):
        object_store.get_client().copy(
            {"Bucket": source_bucket, "Key": key}, bucket, key,
            # The copy starts closed: its tags are set by the caller from
            # the dataset's state (a plain copy would copy the source's).
            ExtraArgs={"TaggingDirective": "REPLACE"},
            Config=boto3.s3.transfer.TransferConfig(
                multipart_threshold=COPY_PART_SIZE,
                multipart_chunksize=COPY_PART_SIZE,
                max_concurrency=DEFAULT_THREADS))
    found = object_sha256(bucket, key)
    if found != expected:
        object_store.delete_objects(bucket, [key])
        raise mismatch(
            f"copy at {where(bucket, key)} has SHA256 {found}, expected "
            f"{expected}; the copy was removed, the source kept")
    return found


def download_verified(bucket: str, key: str, dest: str | os.PathLike[str],
                      *, expected_sha256: str | None = None,
                      label: str = "",
                      progress: Progress | None = None,
                      chunk_size: int = DEFAULT_PART_SIZE,
                      threads: int = DEFAULT_THREADS) -> DownloadResult:
    """Download ``bucket/key`` to ``dest``, verified, atomically.

    The bytes go to a temporary file in dest's folder and are hashed as
    they arrive; the file is fsynced and renamed to ``dest`` only when its
    size matches the object and its SHA256 matches ``expected_sha256``
    (or, when that is not given, the ``sha256`` metadata stored with the
    object by :func:`upload_verified`, if any). Parent folders are created.
    Several processes may download to the same ``dest`` at once.
    """
    dest = Path(dest)
    check_tuning(chunk_size, threads)
    with object_store.translated(f"{prefix(label)}cannot download "
                                 f"{where(bucket, key)} to {dest}"):
        s3 = object_store.get_client()
        found = _head_or_fail(s3, bucket, key)
        expected = (expected_sha256
                    or found.get("Metadata", {}).get("sha256") or None)
        expected = expected.lower() if expected else None
        dest.parent.mkdir(parents=True, exist_ok=True)
        return download.download(s3, bucket, key, dest, found, expected,
                                 label, progress or no_progress,
                                 chunk_size, threads)


def _head_or_fail(s3: Any, bucket: str, key: str) -> dict[str, Any]:
    found = object_store.find_object(s3, bucket, key)
    if found is None:
        raise errors.NotFound(f"there is no object {where(bucket, key)}",
                              code="NoSuchKey")
    return found
