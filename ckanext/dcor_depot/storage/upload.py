"""The upload half of the verified transfers (see :mod:`.transfer`).

The local file is read once: while reading, the SHA256 of the whole file
and the MD5 of each part are computed, and afterwards the ETag and size
the store reports are compared with what was sent.
"""
from __future__ import annotations

import datetime
import hashlib
import io
import logging
import os
import time
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor
from concurrent.futures import wait as wait_futures
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import botocore.exceptions

from ckanext.dcor_depot.progress import Progress
from ckanext.dcor_depot.storage import multipart, object_store, survey
from ckanext.dcor_depot.storage import transfer_common as common
from ckanext.dcor_depot.storage.multipart import clean_etag
from ckanext.dcor_depot.storage.transfer_common import (
    UNKNOWN,
    UploadResult,
    mismatch,
    prefix,
    where,
)

logger = logging.getLogger(__name__)

# Buffer size for reading without uploading (comparing with a stored
# object). Small: these are copies.
_READ_CHUNK = 8 * multipart.MiB

#: Per part: its number, the ETag the store answered, its MD5, its size.
_SentPart = tuple[int, str, bytes, int]


@dataclass
class Upload:
    """One verified upload of ``path`` to ``bucket/key``."""
    path: Path
    bucket: str
    key: str
    expected_sha256: str | None
    label: str
    progress: Progress
    threads: int
    #: what the caller knows of the object, or UNKNOWN (look it up)
    stored: dict[str, Any] | None

    def run(self, part_size: int) -> UploadResult:
        s3 = object_store.get_client()
        started = time.monotonic()
        result = self.transfer(s3, part_size)
        self.abort_leftovers(s3, time.monotonic() - started, result.etag)
        return result

    def transfer(self, s3: Any, part_size: int) -> UploadResult:
        with open(self.path, "rb") as fh:
            size = os.fstat(fh.fileno()).st_size
            part_size = multipart.part_size_for(size, part_size)
            stored = (object_store.find_object(s3, self.bucket, self.key)
                      if self.stored is UNKNOWN else self.stored)
            if stored is not None and stored["ContentLength"] == size:
                kept = self.keep_identical(s3, fh, size, stored, part_size)
                if kept is not None:
                    return kept
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

    def abort_leftovers(self, s3: Any, elapsed: float, etag: str) -> None:
        """Abort the key's multipart uploads begun before this one.

        They are attempts cut short where even their abort failed (the
        store went away, the worker was killed); the object is complete
        and verified now, so their parts only take space. Times are the
        store's (the object's date less the ``elapsed`` seconds of this
        upload), so a skewed local clock cannot make a newer upload look
        older. A worker still racing with an aborted upload fails and is
        retried: it finds the object complete. When another writer
        replaced the object meanwhile (other ETag), its date says nothing
        of this upload's start: nothing is aborted.
        """
        try:
            leftovers = [item for item in survey.open_uploads(
                s3, self.bucket, prefix=self.key) if item["Key"] == self.key]
            head = (object_store.find_object(s3, self.bucket, self.key)
                    if leftovers else None)
            if head is None or clean_etag(head.get("ETag", "")) != etag:
                return
            began = head["LastModified"] - datetime.timedelta(
                seconds=elapsed + 1)
            for item in leftovers:
                if item["Initiated"] < began:
                    s3.abort_multipart_upload(Bucket=self.bucket,
                                              Key=self.key,
                                              UploadId=item["UploadId"])
                    logger.info("Aborted the earlier multipart upload %s of "
                                "%s", item["UploadId"],
                                where(self.bucket, self.key))
        except (botocore.exceptions.BotoCoreError,
                botocore.exceptions.ClientError) as exc:
            # The object is verified: the parts wait for the bucket's
            # lifecycle rule or dcor-prune-stale-multipart-uploads.
            logger.warning("Could not clean earlier uploads of %s: %s",
                           where(self.bucket, self.key), exc)

    def metadata(self) -> dict[str, str]:
        if self.expected_sha256:
            return {"sha256": self.expected_sha256}
        return {}

    def check_expected(self, sha256: str) -> None:
        """Refuse a local file that is not the one on record."""
        if self.expected_sha256 and sha256 != self.expected_sha256:
            raise mismatch(
                f"{prefix(self.label)}local file {self.path} does not "
                f"match the recorded checksum: expected SHA256 "
                f"{self.expected_sha256}, found {sha256}; not uploaded to "
                f"{where(self.bucket, self.key)}")

    def keep_identical(self, s3: Any, fh: io.BufferedReader, size: int,
                       stored: dict[str, Any], part_size: int
                       ) -> UploadResult | None:
        """The result when the stored object equals the file, else None.

        A file that is not the one on record is refused here already.
        """
        compared = self.compare(s3, fh, size, stored, part_size)
        if compared is None:
            return None
        sha256, identical = compared
        self.check_expected(sha256)
        if not identical:
            return None
        self.progress(size)
        return UploadResult(self.bucket, self.key, size, sha256,
                            clean_etag(stored["ETag"]), uploaded=False)

    def compare(self, s3: Any, fh: IO[bytes], size: int,
                stored: dict[str, Any], part_size: int
                ) -> tuple[str, bool] | None:
        """The file's SHA256 and whether the stored object equals the file.

        Reads the file once, computing its SHA256 and its ETag with the
        part layout of the stored object. None (nothing read) when the
        layout cannot be known: then the file is simply uploaded.
        """
        stored_etag = clean_etag(stored.get("ETag", ""))
        # None: single-part object, the ETag is the MD5 of it all.
        layout: int | None = None
        if multipart.is_multipart_etag(stored_etag):
            count = multipart.etag_part_count(stored_etag)
            if count is None:
                return None
            layout = part_size
            if multipart.part_count(size, part_size) != count:
                layout = stored_part_size(s3, self.bucket, self.key,
                                          size, count)
                if layout is None:
                    return None
        sha256, etag = hash_file(fh, size, layout)
        return sha256, etag == stored_etag

    def put_single(self, s3: Any, fh: IO[bytes],
                   size: int) -> tuple[str, str, str]:
        """PUT the file; returns its SHA256, its MD5 and the store's ETag."""
        body = common.read_exact(fh, size, self.path)
        common.check_eof(fh, self.path)
        sha256 = hashlib.sha256(body).hexdigest()
        # Checked before anything is written to the store.
        self.check_expected(sha256)
        etag = hashlib.md5(body, usedforsecurity=False).hexdigest()
        resp = s3.put_object(Bucket=self.bucket, Key=self.key, Body=body,
                             Metadata=self.metadata())
        self.progress(size)
        return sha256, etag, clean_etag(resp.get("ETag", ""))

    def put_multipart(self, s3: Any, fh: io.BufferedReader, size: int,
                      part_size: int) -> tuple[str, str]:
        """Upload the file in parts; returns its SHA256 and its ETag."""
        parts = PartUpload.start(s3, self)
        try:
            sha256, sent = parts.send_all(fh, size, part_size)
            # A file that is not the recorded one never becomes visible.
            self.check_expected(sha256)
            parts.complete(sent)
        except BaseException:
            parts.abort()
            raise
        md5s = [md5 for _, (_, md5) in sorted(sent.items())]
        return sha256, multipart.multipart_etag(md5s)

    def verify(self, s3: Any, size: int, etag: str,
               reported: str = "") -> str:
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
            head = object_store.find_object(s3, self.bucket, self.key)
            if head is None:
                raise mismatch(
                    f"{prefix(self.label)}{where(self.bucket, self.key)} "
                    f"is missing right after its upload: expected ETag "
                    f"{etag}, size {size}")
            found_etag = clean_etag(head.get("ETag", ""))
            found_size = head["ContentLength"]
        if found_etag == etag and found_size == size:
            return found_etag
        same = self.etag_if_stored_equals_file(s3, size)
        if same is not None:
            # Another writer (a racing job or command) stored the same
            # bytes in another part layout: its object is good.
            return same
        # The local file is the source of truth, so the object can go.
        try:
            s3.delete_object(Bucket=self.bucket, Key=self.key)
            fate = "the object was deleted"
        except object_store.BOTO_ERRORS as exc:
            fate = ("deleting the object failed: "
                    f"{object_store.describe_error(exc)}")
        raise mismatch(
            f"{prefix(self.label)}{where(self.bucket, self.key)} does not "
            f"match the uploaded file {self.path}: expected ETag {etag} "
            f"and size {size}, found ETag {found_etag or '(none)'} and "
            f"size {found_size}; {fate}")

    def etag_if_stored_equals_file(self, s3: Any, size: int) -> str | None:
        """The ETag of the object now stored if it holds the local file's
        bytes (read again, in the stored object's part layout)."""
        head = object_store.find_object(s3, self.bucket, self.key)
        if head is None or head["ContentLength"] != size:
            return None
        with open(self.path, "rb") as fh:
            compared = self.compare(s3, fh, size, head,
                                    multipart.part_size_for(size))
        if compared is None or not compared[1]:
            return None
        return clean_etag(head["ETag"])


@dataclass
class PartUpload:
    """The parts of one multipart upload of :class:`Upload`'s file."""
    s3: Any
    upload: Upload
    upload_id: str

    @classmethod
    def start(cls, s3: Any, upload: Upload) -> PartUpload:
        upload_id = s3.create_multipart_upload(
            Bucket=upload.bucket, Key=upload.key,
            Metadata=upload.metadata())["UploadId"]
        return cls(s3, upload, upload_id)

    def send_all(self, fh: io.BufferedReader, size: int, part_size: int
                 ) -> tuple[str, dict[int, tuple[str, bytes]]]:
        """Read parts in order, upload them in parallel.

        This thread reads and feeds the SHA256 (which must see the bytes
        in order); the pool threads compute each part's MD5 and send it.
        At most ``window`` parts exist in memory at any time. Returns the
        SHA256 and, per part number, the part's ETag and MD5.
        """
        threads = self.upload.threads
        window = multipart.window(part_size, threads)
        sha = hashlib.sha256()
        results: dict[int, tuple[str, bytes]] = {}
        # Part buffers are allocated once and reused: a new 16 MiB object
        # per part makes the allocator's heap grow with the file size
        # (seen: +90 MiB per GiB), reuse keeps memory flat.
        free: list[bytearray] = []
        allocated = 0
        pending: dict[Future[_SentPart], bytearray] = {}

        def collect(done: set[Future[_SentPart]]) -> None:
            for future in done:
                free.append(pending.pop(future))
                number, etag, md5, length = future.result()
                results[number] = (etag, md5)
                self.upload.progress(length)

        pool = ThreadPoolExecutor(threads, thread_name_prefix="dcor-upload")
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
                common.read_into(fh, buffer, length, self.upload.path)
                # The last part is shorter than the buffer; it is copied
                # once because botocore wants bytes-like bodies, not views.
                body = buffer if length == part_size else bytes(
                    memoryview(buffer)[:length])
                sha.update(body)
                pending[pool.submit(self.send, number, body)] = buffer
            common.check_eof(fh, self.upload.path)
            done, _ = wait_futures(pending)
            collect(done)
        finally:
            # Running parts finish before the caller may abort the upload;
            # a part landing after the abort would linger in the store.
            pool.shutdown(wait=True, cancel_futures=True)
        return sha.hexdigest(), results

    def send(self, number: int, body: bytes | bytearray) -> _SentPart:
        # The MD5 is computed from the very buffer that is sent.
        md5 = hashlib.md5(body, usedforsecurity=False).digest()
        resp = self.s3.upload_part(
            Bucket=self.upload.bucket, Key=self.upload.key,
            UploadId=self.upload_id, PartNumber=number, Body=body)
        return number, resp["ETag"], md5, len(body)

    def complete(self, sent: dict[int, tuple[str, bytes]]) -> None:
        parts = [{"PartNumber": number, "ETag": etag}
                 for number, (etag, _) in sorted(sent.items())]
        self.s3.complete_multipart_upload(
            Bucket=self.upload.bucket, Key=self.upload.key,
            UploadId=self.upload_id, MultipartUpload={"Parts": parts})

    def abort(self) -> None:
        """Best effort: a prune command cleans up what is left."""
        try:
            self.s3.abort_multipart_upload(
                Bucket=self.upload.bucket, Key=self.upload.key,
                UploadId=self.upload_id)
        except Exception as exc:
            logger.warning(
                "Could not abort multipart upload %s of %s: %s",
                self.upload_id, where(self.upload.bucket, self.upload.key),
                object_store.describe_error(exc))


def hash_file(fh: IO[bytes], size: int,
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
        md5_job: Future[None] | None = None
        while offset < size:
            chunk = common.read_exact(
                fh, min(_READ_CHUNK, part_end - offset), fh.name)
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
    common.check_eof(fh, fh.name)
    if part_size is None:
        etag = md5s[0].hex() if md5s else part_md5.hexdigest()
    else:
        etag = multipart.multipart_etag(md5s)
    return sha.hexdigest(), etag


def stored_part_size(s3: Any, bucket: str, key: str, size: int,
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
            and multipart.part_count(size, length) == count:
        return length
    return None
