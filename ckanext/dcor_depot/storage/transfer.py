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
"""
from __future__ import annotations

import collections
import contextlib
import hashlib
import logging
import os
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor
from concurrent.futures import wait as wait_futures
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import boto3.s3.transfer
import botocore.exceptions

from ckanext.dcor_depot.storage import fsops, object_store
from ckanext.dcor_depot.storage.fsops import fsync_dir

logger = logging.getLogger(__name__)

MiB = 2**20

#: Part size of multipart uploads and range size of parallel downloads.
#: 16 MiB keeps the request overhead negligible (measured: 8-64 MiB parts
#: upload equally fast against Ceph RGW) while the parts in flight stay
#: far below the memory budget.
DEFAULT_PART_SIZE = 16 * MiB
#: Threads sending parts / fetching ranges. The work is network bound
#: (hashlib releases the GIL), so a few more threads than cores pay off.
DEFAULT_THREADS = 4
#: Parts of server-side copies (copies of larger objects are multipart).
COPY_PART_SIZE = 256 * MiB
#: Upper bound for the part/range buffers held at once by one transfer.
#: The window of parts in flight shrinks when parts grow (huge files).
MEMORY_BUDGET = 192 * MiB

#: S3 limits: parts other than the last are at least 5 MiB, at most 10000
#: parts per upload, at most 5 GiB per part or single PUT.
MIN_PART_SIZE = 5 * MiB
MAX_PART_SIZE = 5 * 1024 * MiB
MAX_PARTS = 10000

# Buffer size for reading without uploading (comparing with a stored
# object) and for reading response bodies. Small: these are copies.
_READ_CHUNK = 8 * MiB
_BODY_CHUNK = 1 * MiB

# Attempts per range GET; botocore retries failed requests, but not a
# connection that breaks while the body is being read.
_RANGE_ATTEMPTS = 3
_STREAM_ERRORS = (botocore.exceptions.ResponseStreamingError,
                  botocore.exceptions.ReadTimeoutError,
                  botocore.exceptions.IncompleteReadError,
                  botocore.exceptions.ConnectionClosedError)

Progress = Callable[[int], Any]


class VerificationError(object_store.ObjectStoreError):
    """Data in the store or on disk are not what was sent or recorded."""


@dataclass(frozen=True)
class UploadResult:
    bucket: str
    key: str
    size: int
    #: SHA256 (hex) of the local file, computed while reading it
    sha256: str
    #: ETag the store reports for the object (without quotes)
    etag: str
    #: False when an identical object was already there
    uploaded: bool


@dataclass(frozen=True)
class DownloadResult:
    bucket: str
    key: str
    path: Path
    size: int
    sha256: str
    etag: str


def part_size_for(size: int, part_size: int = DEFAULT_PART_SIZE) -> int:
    """The part size used for a file of ``size`` bytes.

    ``part_size`` grows (in whole MiB) for huge files so that an upload
    never needs more than MAX_PARTS parts.
    """
    needed = -(-size // MAX_PARTS)
    if needed > part_size:
        part_size = -(-needed // MiB) * MiB
    return part_size


def multipart_etag(part_md5s: list[bytes]) -> str:
    """The ETag S3 gives a multipart object with these part MD5s."""
    joined = hashlib.md5(b"".join(part_md5s), usedforsecurity=False)
    return f"{joined.hexdigest()}-{len(part_md5s)}"


#: ``stored`` argument of :func:`upload_verified`: look the object up.
UNKNOWN: Any = object()


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

    Raises VerificationError when the file does not match
    ``expected_sha256`` or the store holds something else than was sent
    (the bad object is deleted), ObjectStoreError when the store fails.
    """
    path = Path(path)
    _check_tuning(part_size, threads)
    if expected_sha256 is not None:
        expected_sha256 = expected_sha256.lower()
    job = _Upload(path=path, bucket=bucket, key=key,
                  expected_sha256=expected_sha256, label=label,
                  progress=progress or _no_progress, threads=threads,
                  stored=stored)
    try:
        object_store.ensure_bucket(bucket)
    except object_store.ObjectStoreError as exc:
        # Often the first request of a job: say what was being uploaded.
        raise type(exc)(
            f"{_prefix(label)}cannot upload {path} to "
            f"{_where(bucket, key)}: {exc}") from exc
    try:
        return job.run(part_size)
    except (botocore.exceptions.BotoCoreError,
            botocore.exceptions.ClientError) as exc:
        raise object_store.ObjectStoreError(
            f"{_prefix(label)}cannot upload {path} to "
            f"{_where(bucket, key)}: {object_store.describe_error(exc)}"
        ) from exc


def object_sha256(bucket: str, key: str, *,
                  chunk_size: int = DEFAULT_PART_SIZE,
                  threads: int = DEFAULT_THREADS,
                  progress: Progress | None = None) -> str:
    """SHA256 (hex) of an object, read with parallel range GETs.

    This is the deep check: it reads every byte of the object. All ranges
    are requested with If-Match on the ETag, so an object replaced while
    being read gives an error instead of a mixed checksum.
    """
    _check_tuning(chunk_size, threads)
    try:
        s3 = object_store.get_client()
        head = _head_or_fail(s3, bucket, key)
        sha = hashlib.sha256()
        with contextlib.closing(_iter_object(
                s3, bucket, key, head["ContentLength"], head["ETag"],
                chunk_size, threads)) as chunks:
            for chunk in chunks:
                sha.update(chunk)
                if progress:
                    progress(len(chunk))
        return sha.hexdigest()
    except (botocore.exceptions.BotoCoreError,
            botocore.exceptions.ClientError) as exc:
        raise object_store.ObjectStoreError(
            f"cannot read {_where(bucket, key)}: {_describe(exc)}") from exc


def copy_verified(source_bucket: str, key: str, bucket: str, *,
                  expected_sha256: str | None = None) -> str:
    """Copy an object server-side to ``bucket`` (same key), untagged.

    The copy is checked by a streamed SHA256 against ``expected_sha256``,
    or against the source's when none is given (a multipart copy's ETag
    differs from its source's, so ETags prove nothing). A copy that does
    not match is removed (never the source) and VerificationError raised.
    Returns the SHA256.
    """
    expected = expected_sha256 or object_sha256(source_bucket, key)
    try:
        object_store.get_client().copy(
            {"Bucket": source_bucket, "Key": key}, bucket, key,
            # The copy starts closed: its tags are set by the caller from
            # the dataset's state (a plain copy would copy the source's).
            ExtraArgs={"TaggingDirective": "REPLACE"},
            Config=boto3.s3.transfer.TransferConfig(
                multipart_threshold=COPY_PART_SIZE,
                multipart_chunksize=COPY_PART_SIZE,
                max_concurrency=DEFAULT_THREADS))
    except (botocore.exceptions.BotoCoreError,
            botocore.exceptions.ClientError) as exc:
        raise object_store.ObjectStoreError(
            f"cannot copy {_where(source_bucket, key)} to "
            f"{_where(bucket, key)}: {_describe(exc)}") from exc
    found = object_sha256(bucket, key)
    if found != expected:
        object_store.delete_objects(bucket, [key])
        raise VerificationError(
            f"copy at {_where(bucket, key)} has SHA256 {found}, expected "
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
    _check_tuning(chunk_size, threads)
    try:
        s3 = object_store.get_client()
        head = _head_or_fail(s3, bucket, key)
        expected = (expected_sha256
                    or head.get("Metadata", {}).get("sha256") or None)
        expected = expected.lower() if expected else None
        dest.parent.mkdir(parents=True, exist_ok=True)
        return _download(s3, bucket, key, dest, head, expected, label,
                         progress or _no_progress, chunk_size, threads)
    except (botocore.exceptions.BotoCoreError,
            botocore.exceptions.ClientError) as exc:
        raise object_store.ObjectStoreError(
            f"{_prefix(label)}cannot download {_where(bucket, key)} to "
            f"{dest}: {_describe(exc)}") from exc


# --- upload -----------------------------------------------------------------

@dataclass
class _Upload:
    path: Path
    bucket: str
    key: str
    expected_sha256: str | None
    label: str
    progress: Progress
    threads: int
    stored: dict[str, Any] | None

    def run(self, part_size: int) -> UploadResult:
        s3 = object_store.get_client()
        with open(self.path, "rb") as fh:
            size = os.fstat(fh.fileno()).st_size
            part_size = part_size_for(size, part_size)
            stored = (_head(s3, self.bucket, self.key)
                      if self.stored is UNKNOWN else self.stored)
            if stored is not None and stored["ContentLength"] == size:
                identical, sha256 = self.compare(s3, fh, size, stored,
                                                 part_size)
                if sha256 is not None:
                    self.check_expected(sha256)
                if identical:
                    self.progress(size)
                    return UploadResult(self.bucket, self.key, size,
                                        sha256, _clean(stored["ETag"]),
                                        uploaded=False)
                # Same size, other bytes: this is the only case in which
                # the file is read a second time.
                fh.seek(0)
            reported = ""
            if size <= part_size:
                sha256, etag, reported = self.put_single(s3, fh, size)
            else:
                sha256, etag = self.put_multipart(s3, fh, size, part_size)
        found = self.verify(s3, size, etag, reported)
        return UploadResult(self.bucket, self.key, size, sha256, found,
                            uploaded=True)

    def metadata(self) -> dict[str, str]:
        if self.expected_sha256:
            return {"sha256": self.expected_sha256}
        return {}

    def check_expected(self, sha256: str) -> None:
        """Refuse a local file that is not the one on record."""
        if self.expected_sha256 and sha256 != self.expected_sha256:
            raise VerificationError(
                f"{_prefix(self.label)}local file {self.path} does not "
                f"match the recorded checksum: expected SHA256 "
                f"{self.expected_sha256}, found {sha256}; not uploaded to "
                f"{_where(self.bucket, self.key)}")

    def compare(self, s3, fh: IO[bytes], size: int, stored: dict[str, Any],
                part_size: int) -> tuple[bool, str | None]:
        """Whether the stored object equals the file, and the file's SHA256.

        Reads the file once, computing its SHA256 and its ETag with the
        part layout of the stored object. The SHA256 is None when the
        layout cannot be known (then the file is simply uploaded).
        """
        stored_etag = _clean(stored.get("ETag", ""))
        if "-" not in stored_etag:
            layout = None  # single-part object: ETag is the MD5 of it all
        else:
            try:
                count = int(stored_etag.rsplit("-", 1)[1])
            except ValueError:
                return False, None
            layout = part_size
            if -(-size // part_size) != count:
                layout = _stored_part_size(s3, self.bucket, self.key,
                                           size, count)
                if layout is None:
                    return False, None
        sha256, etag = _hash_file(fh, size, layout)
        return etag == stored_etag, sha256

    def put_single(self, s3, fh: IO[bytes],
                   size: int) -> tuple[str, str, str]:
        """PUT the file; returns its SHA256, its MD5 and the store's ETag."""
        body = _read_exact(fh, size, self.path)
        _check_eof(fh, self.path)
        sha256 = hashlib.sha256(body).hexdigest()
        # Checked before anything is written to the store.
        self.check_expected(sha256)
        etag = hashlib.md5(body, usedforsecurity=False).hexdigest()
        resp = s3.put_object(Bucket=self.bucket, Key=self.key, Body=body,
                             Metadata=self.metadata())
        self.progress(size)
        return sha256, etag, _clean(resp.get("ETag", ""))

    def put_multipart(self, s3, fh: IO[bytes], size: int,
                      part_size: int) -> tuple[str, str]:
        upload_id = s3.create_multipart_upload(
            Bucket=self.bucket, Key=self.key,
            Metadata=self.metadata())["UploadId"]
        try:
            sha256, part_md5s = self.send_parts(s3, fh, size, part_size,
                                                upload_id)
            # A file that is not the recorded one never becomes visible.
            self.check_expected(sha256)
            parts = [{"PartNumber": number, "ETag": etag}
                     for number, (etag, _) in sorted(part_md5s.items())]
            s3.complete_multipart_upload(
                Bucket=self.bucket, Key=self.key, UploadId=upload_id,
                MultipartUpload={"Parts": parts})
        except BaseException:
            _abort(s3, self.bucket, self.key, upload_id)
            raise
        md5s = [md5 for _, (_, md5) in sorted(part_md5s.items())]
        return sha256, multipart_etag(md5s)

    def send_parts(self, s3, fh: IO[bytes], size: int, part_size: int,
                   upload_id: str
                   ) -> tuple[str, dict[int, tuple[str, bytes]]]:
        """Read parts in order, upload them in parallel.

        This thread reads and feeds the SHA256 (which must see the bytes
        in order); the pool threads compute each part's MD5 and send it.
        At most ``window`` parts exist in memory at any time.
        """
        window = _window(part_size, self.threads)
        sha = hashlib.sha256()
        results: dict[int, tuple[str, bytes]] = {}
        # Part buffers are allocated once and reused: a new 16 MiB object
        # per part makes the allocator's heap grow with the file size
        # (seen: +90 MiB per GiB), reuse keeps memory flat.
        free: list[bytearray] = []
        allocated = 0
        pending: dict[Future, bytearray] = {}

        def collect(done: set[Future]) -> None:
            for future in done:
                free.append(pending.pop(future))
                number, etag, md5, length = future.result()
                results[number] = (etag, md5)
                self.progress(length)

        pool = ThreadPoolExecutor(self.threads,
                                  thread_name_prefix="dcor-upload")
        try:
            for number, offset in enumerate(range(0, size, part_size), 1):
                if not free and allocated < window:
                    free.append(bytearray(part_size))
                    allocated += 1
                if not free:
                    done, _ = wait_futures(pending,
                                           return_when=FIRST_COMPLETED)
                    collect(done)
                buffer = free.pop()
                length = min(part_size, size - offset)
                _read_into(fh, buffer, length, self.path)
                # The last part is shorter than the buffer; it is copied
                # once because botocore wants bytes-like bodies, not views.
                body = buffer if length == part_size else bytes(
                    memoryview(buffer)[:length])
                sha.update(body)
                pending[pool.submit(self.send_part, s3, upload_id,
                                    number, body)] = buffer
            _check_eof(fh, self.path)
            done, _ = wait_futures(pending)
            collect(done)
        finally:
            # Running parts finish before the caller may abort the upload;
            # a part landing after the abort would linger in the store.
            pool.shutdown(wait=True, cancel_futures=True)
        return sha.hexdigest(), results

    def send_part(self, s3, upload_id: str, number: int,
                  body: bytes | bytearray) -> tuple[int, str, bytes, int]:
        # The MD5 is computed from the very buffer that is sent.
        md5 = hashlib.md5(body, usedforsecurity=False).digest()
        resp = s3.upload_part(Bucket=self.bucket, Key=self.key,
                              UploadId=upload_id, PartNumber=number,
                              Body=body)
        return number, resp["ETag"], md5, len(body)

    def verify(self, s3, size: int, etag: str, reported: str = "") -> str:
        """Compare the stored object with what was sent; delete a bad one.

        ``reported`` is the ETag the store computed for a single PUT (the
        MD5 of the bytes it received, for a body of exactly ``size``
        bytes); without it the ETag comes from head_object, because Ceph
        RGW 16 returns an empty ETag from CompleteMultipartUpload. Saving
        that request matters for many small files.
        """
        if reported:
            found_etag, found_size = reported, size
        else:
            head = _head(s3, self.bucket, self.key)
            if head is None:
                raise VerificationError(
                    f"{_prefix(self.label)}{_where(self.bucket, self.key)} "
                    f"is missing right after its upload: expected ETag "
                    f"{etag}, size {size}")
            found_etag = _clean(head.get("ETag", ""))
            found_size = head["ContentLength"]
        if found_etag == etag and found_size == size:
            return found_etag
        # The local file is the source of truth, so the object can go.
        try:
            s3.delete_object(Bucket=self.bucket, Key=self.key)
            fate = "the object was deleted"
        except (botocore.exceptions.BotoCoreError,
                botocore.exceptions.ClientError) as exc:
            fate = f"deleting the object failed: {_describe(exc)}"
        raise VerificationError(
            f"{_prefix(self.label)}{_where(self.bucket, self.key)} does not "
            f"match the uploaded file {self.path}: expected ETag {etag} "
            f"and size {size}, found ETag {found_etag or '(none)'} and "
            f"size {found_size}; {fate}")


def _hash_file(fh: IO[bytes], size: int,
               part_size: int | None) -> tuple[str, str]:
    """SHA256 and S3 ETag of the file, read once.

    ``part_size`` None means the ETag of a single PUT. The MD5s run in a
    helper thread alongside the SHA256, so both cores are used.
    """
    sha = hashlib.sha256()
    md5s: list[bytes] = []
    part_md5 = hashlib.md5(usedforsecurity=False)
    part_end = size if part_size is None else min(part_size, size)
    offset = 0
    with ThreadPoolExecutor(1, thread_name_prefix="dcor-md5") as helper:
        md5_job: Future | None = None
        while offset < size:
            chunk = _read_exact(fh, min(_READ_CHUNK, part_end - offset),
                                fh.name)
            if md5_job is not None:
                md5_job.result()
            md5_job = helper.submit(part_md5.update, chunk)
            sha.update(chunk)
            offset += len(chunk)
            if offset == part_end:
                md5_job.result()
                md5_job = None
                md5s.append(part_md5.digest())
                part_md5 = hashlib.md5(usedforsecurity=False)
                if part_size is not None:
                    part_end = min(part_end + part_size, size)
        if md5_job is not None:
            md5_job.result()
    _check_eof(fh, fh.name)
    if part_size is None:
        etag = md5s[0].hex() if md5s else part_md5.hexdigest()
    else:
        etag = multipart_etag(md5s)
    return sha.hexdigest(), etag


def _stored_part_size(s3, bucket: str, key: str, size: int,
                      count: int) -> int | None:
    """Part size of a multipart object made with another part size.

    Uses HEAD with partNumber=1 where the store supports it (Ceph RGW 16
    ignores it and answers for the whole object; then None).
    """
    try:
        head = s3.head_object(Bucket=bucket, Key=key, PartNumber=1)
    except botocore.exceptions.ClientError:
        return None
    length = head.get("ContentLength", 0)
    if head.get("PartsCount") == count and 0 < length < size \
            and -(-size // length) == count:
        return length
    return None


def _abort(s3, bucket: str, key: str, upload_id: str) -> None:
    """Abort a multipart upload, best effort (a prune command cleans up)."""
    try:
        s3.abort_multipart_upload(Bucket=bucket, Key=key,
                                  UploadId=upload_id)
    except Exception as exc:
        logger.warning("Could not abort multipart upload %s of %s: %s",
                       upload_id, _where(bucket, key), _describe(exc))


# --- download ---------------------------------------------------------------

def _download(s3, bucket: str, key: str, dest: Path, head: dict[str, Any],
              expected: str | None, label: str, progress: Progress,
              chunk_size: int, threads: int) -> DownloadResult:
    size = head["ContentLength"]
    # Downloads of killed runs stay otherwise: this is where they would be.
    fsops.remove_stale_temps(dest.parent)
    # A unique name per download, so concurrent downloads do not collide.
    tmp = fsops.create_temp(dest.parent, dest.name, "download")
    try:
        sha = hashlib.sha256()
        written = 0
        with open(tmp, "wb") as out, contextlib.closing(_iter_object(
                s3, bucket, key, size, head["ETag"], chunk_size,
                threads)) as chunks:
            for chunk in chunks:
                sha.update(chunk)
                out.write(chunk)
                written += len(chunk)
                progress(len(chunk))
            out.flush()
            os.fsync(out.fileno())
        digest = sha.hexdigest()
        if written != size:
            raise VerificationError(
                f"{_prefix(label)}download of {_where(bucket, key)} has "
                f"the wrong size: expected {size} bytes, found {written}")
        if expected and digest != expected:
            raise VerificationError(
                f"{_prefix(label)}{_where(bucket, key)} does not match the "
                f"recorded checksum: expected SHA256 {expected}, found "
                f"{digest}; {dest} not written")
        os.replace(tmp, dest)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    fsync_dir(dest.parent)
    return DownloadResult(bucket, key, dest, size, digest,
                          _clean(head["ETag"]))


def _iter_object(s3, bucket: str, key: str, size: int, etag: str,
                 chunk_size: int, threads: int) -> Iterator[bytearray]:
    """The object's bytes in order, fetched by parallel range GETs.

    At most ``window`` ranges are fetched or held at once, counting the
    one the caller is working on. Close the generator when not
    exhausting it (contextlib.closing), so that the pool is shut down.
    """
    window = _window(chunk_size, threads)
    offsets = iter(range(0, size, chunk_size))
    pending: collections.deque[Future] = collections.deque()
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


def _get_range(s3, bucket: str, key: str, etag: str, offset: int,
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
                        _where(bucket, key))


def _read_body(body, length: int) -> bytearray:
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
        raise VerificationError(
            f"range GET returned {'more' if extra else pos} bytes instead "
            f"of {length}")
    return buf


# --- helpers ----------------------------------------------------------------

def _check_tuning(part_size: int, threads: int) -> None:
    if not MIN_PART_SIZE <= part_size <= MAX_PART_SIZE:
        raise ValueError(f"part size must be between {MIN_PART_SIZE} and "
                         f"{MAX_PART_SIZE} bytes, not {part_size}")
    if threads < 1:
        raise ValueError(f"threads must be at least 1, not {threads}")


def _window(part_size: int, threads: int) -> int:
    """Parts held in memory at once: one more than threads, within budget."""
    return max(1, min(threads + 1, MEMORY_BUDGET // part_size))


def _read_exact(fh: IO[bytes], length: int, name: Any) -> bytes:
    data = fh.read(length)
    while len(data) < length:
        more = fh.read(length - len(data))
        if not more:
            raise VerificationError(
                f"local file {name} shrank while it was being read")
        data += more
    return data


def _read_into(fh: IO[bytes], buffer: bytearray, length: int,
               name: Any) -> None:
    """Fill ``buffer[:length]`` from ``fh`` (no new objects)."""
    view = memoryview(buffer)[:length]
    filled = 0
    while filled < length:
        n = fh.readinto(view[filled:])
        if not n:
            raise VerificationError(
                f"local file {name} shrank while it was being read")
        filled += n


def _check_eof(fh: IO[bytes], name: Any) -> None:
    if fh.read(1):
        raise VerificationError(
            f"local file {name} grew while it was being read")


def _head(s3, bucket: str, key: str) -> dict[str, Any] | None:
    try:
        return s3.head_object(Bucket=bucket, Key=key)
    except botocore.exceptions.ClientError as exc:
        if object_store.is_not_found(exc):
            return None
        raise


def _head_or_fail(s3, bucket: str, key: str) -> dict[str, Any]:
    head = _head(s3, bucket, key)
    if head is None:
        raise object_store.ObjectStoreError(
            f"there is no object {_where(bucket, key)}")
    return head


def _describe(exc: BaseException) -> str:
    if object_store.error_code(exc) == "PreconditionFailed":
        return "the object was replaced while it was being read"
    return object_store.describe_error(exc)


def _clean(etag: str) -> str:
    return etag.strip('"')


def _where(bucket: str, key: str) -> str:
    return f"s3://{bucket}/{key}"


def _prefix(label: str) -> str:
    return f"{label}: " if label else ""


def _no_progress(_nbytes: int) -> None:
    pass
