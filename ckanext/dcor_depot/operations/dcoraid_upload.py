"""DCOR-Aid's dialect of direct uploads (``dcoraid`` 1.1).

DCOR-Aid asks with an organization and a file size only. It computes the
part layout itself (n = ceil(size / 1 GiB) parts of ceil(size / n) bytes,
the last one the rest) and fails when the answer holds another number of
URLs, so the layout here is exactly that one. For one part it PUTs the
whole file to the one URL and expects no completion URL; for several it
POSTs a CompleteMultipartUpload body to ``complete_url``.

Every URL handed out is an ``UploadPart`` URL of a multipart upload the
plugin started at the resource's final key, also for one part: the
gateway honours an unsigned ``x-amz-copy-source`` header on a presigned
``PutObject`` URL (it would copy any object the plugin's credential can
read) and refuses it on ``UploadPart`` URLs. Completing the upload ends
its upload id, so no URL can write again once the object exists.
``complete_url`` points at the plugin (:func:`complete_for_client`),
which completes from the parts the store holds, idempotently.
"""
from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ckanext.dcor_depot import config, errors
from ckanext.dcor_depot.operations import direct_upload
from ckanext.dcor_depot.records import upload_grants
from ckanext.dcor_depot.records.upload_grants import UploadGrant
from ckanext.dcor_depot.storage import (
    layout,
    multipart,
    object_store,
    presigned,
)

#: DCOR-Aid's largest part.
PART_LIMIT = 1 << 30
#: DCOR-Aid's largest number of parts.
MAX_PARTS = 10_000


@dataclass(frozen=True)
class DcoraidRequest:
    organization_id: str
    user_id: str
    size: int


def part_layout(size: int) -> presigned.PartLayout:
    """The parts DCOR-Aid cuts a file of ``size`` bytes into."""
    count = max(1, -(-size // PART_LIMIT))
    return presigned.PartLayout(size, max(1, -(-size // count)))


def issue(request: DcoraidRequest,
          completion_url: Callable[[str, str], str]) -> dict[str, Any]:
    """Start an upload for a new resource of the organization.

    ``completion_url(resource_id, secret)`` makes the URL that completes
    it. Returns DCOR-Aid's answer: ``upload_urls`` (in part order),
    ``complete_url`` (None for one part) and ``resource_id``.
    """
    settings = config.direct_upload_settings()
    parts = part_layout(request.size)
    if parts.count > MAX_PARTS:
        raise errors.SourceError(
            f"a file of {request.size} bytes needs more than {MAX_PARTS} "
            "parts of 1 GiB")
    now = time.time()
    direct_upload.check_open_uploads(request.user_id,
                                     settings.max_open_per_user, now)
    lifetime = config.dcoraid_url_lifetime()
    resource_id = str(uuid.uuid4())
    bucket = object_store.bucket_name(request.organization_id)
    key = layout.object_key(resource_id)
    upload_id = presigned.start(bucket, key)
    secret = secrets.token_urlsafe(32)
    grant = UploadGrant(
        resource_id=resource_id, dataset_id="", user_id=request.user_id,
        name="", size=request.size, part_size=parts.part_size,
        bucket=bucket, key=key, upload_id=upload_id,
        expires_at=now + lifetime, organization_id=request.organization_id,
        dialect="dcoraid", completion_secret_sha256=_digest(secret))
    urls = presigned.part_urls(
        bucket, key, upload_id,
        {n: parts.part_bytes(n) for n in parts.numbers}, lifetime)
    upload_grants.save(grant, now)
    return {
        "upload_urls": [urls[n] for n in parts.numbers],
        "complete_url": (completion_url(resource_id, secret)
                         if parts.count > 1 else None),
        "resource_id": resource_id,
    }


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _refused(code: str, message: str) -> errors.SourceError:
    """A completion request that S3 would answer with the error ``code``."""
    return errors.SourceError(message, code=code)


def grant_for_completion(resource_id: str, secret: str) -> UploadGrant:
    """The grant whose completion URL carries ``secret``."""
    grant = upload_grants.load(resource_id)
    if (grant is None or grant.dialect != "dcoraid"
            or not hmac.compare_digest(grant.completion_secret_sha256,
                                       _digest(secret))):
        raise _refused("NoSuchUpload",
                                "no such upload, or not this URL's")
    return grant


_PART = re.compile(
    r"<Part>\s*<PartNumber>\s*(\d{1,5})\s*</PartNumber>\s*"
    r"<ETag>\s*(?:\"|&quot;)?([0-9a-fA-F]{32})(?:\"|&quot;)?\s*</ETag>\s*"
    r"</Part>")


def listed_parts(body: str) -> list[str]:
    """The part ETags a CompleteMultipartUpload body lists, in order of
    their numbers 1..n (SourceError with code ``MalformedXML`` if it is
    not such a list)."""
    found = [(int(number), etag.lower())
             for number, etag in _PART.findall(body)]
    if not found or [n for n, _ in found] != list(range(1, len(found) + 1)):
        raise _refused(
            "MalformedXML", "the body must list parts 1 to n, each with "
            "its PartNumber and ETag")
    return [etag for _, etag in found]


def complete_for_client(grant: UploadGrant, etags: list[str]) -> str:
    """Complete the upload if the listed parts are the stored ones (or
    confirm an earlier completion of the same parts); returns the
    object's ETag. The caller holds the upload's claim."""
    if grant.completed_etag:
        made = multipart.multipart_etag([bytes.fromhex(e) for e in etags])
        if made != grant.completed_etag:
            raise _refused(
                "InvalidPart", "the upload was completed with other parts")
        return direct_upload.finish(grant).etag  # checks the object
    try:
        stored = presigned.stored_parts(grant.bucket, grant.key,
                                        grant.upload_id)
    except errors.NotFound as exc:
        raise _refused("NoSuchUpload", str(exc)) from exc
    parts = direct_upload.covering_parts(grant, stored)
    if [part.etag for part in parts] != etags:
        raise _refused(
            "InvalidPart", "the listed ETags are not those of the stored "
            "parts")
    return direct_upload.complete(grant, parts).completed_etag
