"""The download half of the verified transfers (see :mod:`.transfer`).

Objects are read with large parallel range GETs, each one conditional on
the ETag the object had when the read began, so an object replaced while
being read gives an error instead of a mix of two objects.
"""
from __future__ import annotations

import collections
import contextlib
import hashlib
import logging
import os
from collections.abc import Generator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import botocore.exceptions

from ckanext.dcor_depot.progress import Progress
from ckanext.dcor_depot.storage import fsops, multipart
from ckanext.dcor_depot.storage.fsops import fsync_dir
from ckanext.dcor_depot.storage.multipart import clean_etag
from ckanext.dcor_depot.storage.transfer_common import (
    DownloadResult,
    mismatch,
    prefix,
    where,
)

logger = logging.getLogger(__name__)

# Buffer size for reading response bodies. Small: these are copies.
_BODY_CHUNK = 1 * multipart.MiB

# Attempts per range GET; botocore retries failed requests, but not a
# connection that breaks while the body is being read.
_RANGE_ATTEMPTS = 3
_STREAM_ERRORS = (botocore.exceptions.ResponseStreamingError,
                  botocore.exceptions.ReadTimeoutError,
                  botocore.exceptions.IncompleteReadError,
                  botocore.exceptions.ConnectionClosedError)


def download(s3: Any, bucket: str, key: str, dest: Path,
             head: dict[str, Any], expected: str | None, label: str,
             progress: Progress, chunk_size: int,
             threads: int) -> DownloadResult:
    """Write the object to ``dest`` through a temporary file (verified)."""
    size = head["ContentLength"]
    # Downloads of killed runs stay otherwise: this is where they would be.
    fsops.remove_stale_temps(dest.parent)
    # A unique name per download, so concurrent downloads do not collide.
    tmp = fsops.create_temp(dest.parent, dest.name, "download")
    try:
        written, digest = _write_object(s3, bucket, key, tmp, head,
                                        progress, chunk_size, threads)
        if written != size:
            raise mismatch(
                f"{prefix(label)}download of {where(bucket, key)} has "
                f"the wrong size: expected {size} bytes, found {written}")
        if expected and digest != expected:
            raise mismatch(
                f"{prefix(label)}{where(bucket, key)} does not match the "
                f"recorded checksum: expected SHA256 {expected}, found "
                f"{digest}; {dest} not written")
        os.replace(tmp, dest)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    fsync_dir(dest.parent)
    return DownloadResult(bucket, key, dest, size, digest,
                          clean_etag(head["ETag"]))


def _write_object(s3: Any, bucket: str, key: str, tmp: Path,
                  head: dict[str, Any], progress: Progress,
                  chunk_size: int, threads: int) -> tuple[int, str]:
    """Bytes written to ``tmp`` (fsynced) and their SHA256."""
    sha = hashlib.sha256()
    written = 0
    with open(tmp, "wb") as out, contextlib.closing(iter_object(
            s3, bucket, key, head["ContentLength"], head["ETag"],
            chunk_size, threads)) as chunks:
        for chunk in chunks:
            sha.update(chunk)
            out.write(chunk)
            written += len(chunk)
            progress(len(chunk))
        out.flush()
        os.fsync(out.fileno())
    return written, sha.hexdigest()


def iter_object(s3: Any, bucket: str, key: str, size: int, etag: str,
                chunk_size: int, threads: int
                ) -> Generator[bytearray, None, None]:
    """The object's bytes in order, fetched by parallel range GETs.

    At most ``window`` ranges are fetched or held at once, counting the
    one the caller is working on. Close the generator when not
    exhausting it (contextlib.closing), so that the pool is shut down.
    """
    window = multipart.window(chunk_size, threads)
    offsets = iter(range(0, size, chunk_size))
    pending: collections.deque[Future[bytearray]] = collections.deque()
    pool = ThreadPoolExecutor(threads, thread_name_prefix="dcor-download")

    def submit_next() -> None:
        offset = next(offsets, None)
        if offset is not None:
            pending.append(pool.submit(
                _get_range, s3, bucket, key, etag, offset,
                min(chunk_size, size - offset)))

    try:
        for _ in range(window - 1):
            submit_next()
        while True:
            # Keep the threads busy while the caller hashes/writes.
            submit_next()
            if not pending:
                break
            chunk = pending.popleft().result()
            yield chunk
            del chunk
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _get_range(s3: Any, bucket: str, key: str, etag: str, offset: int,
               length: int) -> bytearray:
    """``length`` bytes from ``offset`` of the object with this ETag."""
    attempt = 1
    while True:
        try:
            resp = s3.get_object(
                Bucket=bucket, Key=key, IfMatch=etag,
                Range=f"bytes={offset}-{offset + length - 1}")
            return _read_body(resp["Body"], length)
        except _STREAM_ERRORS:
            if attempt == _RANGE_ATTEMPTS:
                raise
            attempt += 1
            logger.info("Retrying range %d+%d of %s", offset, length,
                        where(bucket, key))


def _read_body(body: Any, length: int) -> bytearray:
    # readinto in small steps: no second copy of the whole range.
    buf = bytearray(length)
    pos = 0
    try:
        with memoryview(buf) as view:
            while pos < length:
                n = body.readinto(view[pos:pos + _BODY_CHUNK])
                if not n:
                    break
                pos += n
        extra = body.read(1)
    finally:
        body.close()
    if pos != length or extra:
        raise mismatch(
            f"range GET returned {'more' if extra else pos} bytes instead "
            f"of {length}")
    return buf
