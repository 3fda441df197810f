"""Multipart uploads that clients send straight to the store.

The plugin starts the upload and hands out presigned ``UploadPart`` URLs:
each one can write one part of one upload, nothing else. Completing the
upload (which makes the object) stays with the plugin, so no URL can
overwrite an object or create one the plugin did not check.
"""
from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import quote

from ckanext.dcor_depot import errors
from ckanext.dcor_depot.storage import multipart, object_store

#: Answers of the store for an upload that was completed, aborted or
#: expired (Ceph RGW says NoSuchKey).
_GONE_CODES = ("NoSuchUpload", "NoSuchKey")


@dataclass(frozen=True)
class PartLayout:
    """How a file of ``size`` bytes is cut into parts."""
    size: int
    part_size: int

    @classmethod
    def for_size(cls, size: int, part_size: int) -> PartLayout:
        return cls(size, multipart.part_size_for(size, part_size))

    @property
    def count(self) -> int:
        # An empty file is one empty part.
        return max(1, multipart.part_count(self.size, self.part_size))

    @property
    def numbers(self) -> range:
        return range(1, self.count + 1)

    def fits(self, part: StoredPart) -> bool:
        """Whether a stored part is one of this layout, of its size."""
        return (part.number in self.numbers
                and part.size == self.part_bytes(part.number))

    def part_bytes(self, number: int) -> int:
        """Size of part ``number`` (1-based)."""
        if not 1 <= number <= self.count:
            raise ValueError(f"no part {number} in {self.count} parts")
        if number < self.count:
            return self.part_size
        return self.size - (self.count - 1) * self.part_size


@dataclass(frozen=True)
class StoredPart:
    number: int
    size: int
    etag: str


def start(bucket: str, key: str) -> str:
    """Start a multipart upload of ``key``; returns its upload id."""
    object_store.ensure_bucket(bucket)
    with object_store.translated(f"cannot start an upload of {key}"):
        reply = object_store.get_client().create_multipart_upload(
            Bucket=bucket, Key=key)
    return reply["UploadId"]


def part_urls(bucket: str, key: str, upload_id: str,
              sizes: dict[int, int], lifetime: int) -> dict[int, str]:
    """Presigned ``UploadPart`` URLs of the given parts (number: size).
    Each URL signs its part's Content-Length, so it takes exactly that
    many bytes. No request is made: the URLs are signed locally."""
    s3 = object_store.get_client()
    with object_store.translated(f"cannot sign the parts of {key}"):
        return {number: s3.generate_presigned_url(
            "upload_part", ExpiresIn=lifetime,
            Params={"Bucket": bucket, "Key": key, "UploadId": upload_id,
                    "PartNumber": number, "ContentLength": size})
            for number, size in sizes.items()}


def stored_parts(bucket: str, key: str, upload_id: str
                 ) -> dict[int, StoredPart]:
    """The parts the store holds for an upload; NotFound (code
    ``NoSuchUpload``) if the upload no longer exists."""
    s3 = object_store.get_client()
    found: dict[int, StoredPart] = {}
    kwargs = {"Bucket": bucket, "Key": key, "UploadId": upload_id}
    try:
        while True:
            reply = s3.list_parts(**kwargs)
            for part in reply.get("Parts", []):
                found[part["PartNumber"]] = StoredPart(
                    part["PartNumber"], part["Size"],
                    multipart.clean_etag(part["ETag"]))
            if not reply.get("IsTruncated"):
                return found
            kwargs["PartNumberMarker"] = reply["NextPartNumberMarker"]
    except object_store.BOTO_ERRORS as exc:
        if object_store.error_code(exc) in _GONE_CODES:
            raise errors.NotFound(f"the upload of {key} no longer exists "
                                  "(completed, aborted or expired)",
                                  code="NoSuchUpload") from exc
        # Only the upload's own end means "gone": a missing bucket or a
        # refusal is a failure of the store, not a finished upload.
        failure = object_store.store_error(
            exc, f"cannot list the parts of {key}")
        raise errors.StoreError(str(failure), code=failure.code) from exc


def abort(bucket: str, key: str, upload_id: str) -> bool:
    """End an upload and free its parts; False if it was gone already.
    A failure is a StoreError saying what the store answered (the caller
    says what was being done)."""
    try:
        object_store.get_client().abort_multipart_upload(
            Bucket=bucket, Key=key, UploadId=upload_id)
    except object_store.BOTO_ERRORS as exc:
        if object_store.error_code(exc) in _GONE_CODES:
            return False
        raise object_store.store_error(exc) from exc
    return True


def expected_etag(parts: list[StoredPart]) -> str:
    """The ETag of the object these parts make."""
    return multipart.multipart_etag(
        [bytes.fromhex(part.etag) for part in parts])


def complete(bucket: str, key: str, upload_id: str,
             parts: list[StoredPart]) -> str:
    """Complete an upload from exactly ``parts`` and check the object the
    store made: its ETag must be the one these parts give. Returns it."""
    expected = expected_etag(parts)
    with object_store.translated(f"cannot complete the upload of {key}"):
        object_store.get_client().complete_multipart_upload(
            Bucket=bucket, Key=key, UploadId=upload_id,
            MultipartUpload={"Parts": [
                {"PartNumber": part.number, "ETag": f'"{part.etag}"'}
                for part in parts]})
    head = object_store.head_object(bucket, key)
    found = multipart.clean_etag(head["ETag"]) if head else None
    if found != expected:
        raise errors.StoreError(
            f"the store made {key} with ETag {found}, not {expected} as "
            "its parts give", code=errors.MISMATCH)
    return expected


def download_url(bucket: str, key: str, filename: str, lifetime: int,
                 content_type: str | None = None) -> str:
    """A presigned ``GetObject`` URL whose answer names ``filename`` as
    an attachment (no request is made)."""
    params = {"Bucket": bucket, "Key": key,
              "ResponseContentDisposition": content_disposition(filename)}
    if content_type:
        params["ResponseContentType"] = content_type
    with object_store.translated(f"cannot sign a download of {key}"):
        return object_store.get_client().generate_presigned_url(
            "get_object", Params=params, ExpiresIn=lifetime)


def content_disposition(filename: str) -> str:
    """``attachment`` with the file name, for every browser: a plain ASCII
    name and, for the rest, its UTF-8 form (RFC 6266)."""
    plain = "".join(char if " " <= char <= "~" and char not in '"\\'
                    else "_" for char in filename) or "download"
    if plain == filename:
        return f'attachment; filename="{plain}"'
    return (f'attachment; filename="{plain}"; '
            f"filename*=UTF-8''{quote(filename, safe='')}")
