"""Direct uploads: clients send a file's parts straight to the store.

:func:`issue` starts (or resumes) a multipart upload at the key of a new
resource and returns presigned URLs for the parts the store does not hold
yet; what was issued is recorded (:mod:`records.upload_grants`) so that
creating the resource can check it. :func:`abort` ends an upload. Who
may do either is decided by the caller (the actions check
``resource_create`` on the dataset first).
"""
from __future__ import annotations

import dataclasses
import datetime
import time
import uuid
from dataclasses import dataclass
from typing import Any

from ckanext.dcor_depot import config, errors
from ckanext.dcor_depot.records import ckan_data, search_index, upload_grants
from ckanext.dcor_depot.records.upload_grants import UploadGrant
from ckanext.dcor_depot.storage import (
    layout,
    multipart,
    object_store,
    presigned,
    transfer,
)


@dataclass(frozen=True)
class UploadRequest:
    dataset_id: str
    owner_org: str
    user_id: str
    name: str
    size: int


def check_size(size: Any) -> int:
    """The declared size as bytes, within what the site accepts."""
    if isinstance(size, bool):
        raise errors.SourceError("size must be a number of bytes")
    try:
        number = int(size)
    except (TypeError, ValueError):
        raise errors.SourceError(
            f"size must be a number of bytes, not {size!r}") from None
    limit = config.direct_upload_settings().max_size
    if number < 0 or number > limit:
        raise errors.SourceError(
            f"size must be between 0 and {limit} bytes, not {number}")
    return number


def issue(request: UploadRequest, resume_id: str | None = None
          ) -> dict[str, Any]:
    """Start an upload of a new resource (or resume ``resume_id``) and
    return its id, the upload id and the URLs of the parts still needed."""
    settings = config.direct_upload_settings()
    now = time.time()
    if resume_id is None:
        check_open_uploads(request.user_id, settings.max_open_per_user, now)
        grant = _start(request, settings.part_size)
    else:
        grant = _resume(request, resume_id)
        if not upload_grants.is_open(grant, now):
            # An expired upload opened again counts like a new one.
            check_open_uploads(request.user_id, settings.max_open_per_user,
                               now)
    # New URLs, new deadline (also for a resumed upload).
    grant = dataclasses.replace(grant,
                                expires_at=now + settings.url_lifetime)
    layout_ = presigned.PartLayout(grant.size, grant.part_size)
    stored = ({} if resume_id is None else presigned.stored_parts(
        grant.bucket, grant.key, grant.upload_id))
    done = sorted(n for n, part in stored.items() if layout_.fits(part))
    missing = [n for n in layout_.numbers if n not in done]
    urls = presigned.part_urls(
        grant.bucket, grant.key, grant.upload_id,
        {n: layout_.part_bytes(n) for n in missing}, settings.url_lifetime)
    upload_grants.save(grant, now)
    return {
        "resource_id": grant.resource_id,
        "upload_id": grant.upload_id,
        "size": grant.size,
        "part_size": grant.part_size,
        "expires": datetime.datetime.fromtimestamp(
            grant.expires_at, datetime.timezone.utc).isoformat(),
        "parts": [{"part_number": n, "size": layout_.part_bytes(n),
                   "url": urls[n]} for n in missing],
        "complete_parts": done,
    }


def check_open_uploads(user_id: str, limit: int, now: float) -> None:
    # A soft cap: two concurrent requests may both pass it once.
    count = upload_grants.open_uploads(user_id, now)
    if count >= limit:
        raise errors.SourceError(
            f"you have {count} direct uploads open (at most {limit}): "
            "create their resources, let them expire or end them with "
            "resource_upload_s3_abort first")


def _start(request: UploadRequest, part_size: int) -> UploadGrant:
    resource_id = str(uuid.uuid4())
    bucket = object_store.bucket_name(request.owner_org)
    key = layout.object_key(resource_id)
    upload_id = presigned.start(bucket, key)
    return UploadGrant(
        resource_id=resource_id, dataset_id=request.dataset_id,
        user_id=request.user_id, name=request.name, size=request.size,
        part_size=presigned.PartLayout.for_size(request.size,
                                                part_size).part_size,
        bucket=bucket, key=key, upload_id=upload_id, expires_at=0.0,
        organization_id=request.owner_org)


def _resume(request: UploadRequest, resume_id: str) -> UploadGrant:
    grant = granted(resume_id, request.dataset_id, request.user_id)
    if grant.size != request.size:
        raise errors.SourceError(
            f"upload {resume_id} was issued for {grant.size} bytes, not "
            f"{request.size}")
    if grant.completed_etag:
        raise errors.SourceError(
            f"upload {resume_id} is complete: create its resource")
    return grant


def granted(resource_id: str, dataset_id: str, user_id: str,
            owner_org: str | None = None) -> UploadGrant:
    """The grant of ``resource_id`` if it was issued to this user for this
    dataset, or (DCOR-Aid's dialect, which names no dataset) for
    ``owner_org``, the dataset's organization now. SourceError
    otherwise, with the same text for every case, so that ids of other
    users' uploads are not revealed."""
    grant = upload_grants.load(resource_id)
    if grant is not None and grant.dialect == "dcoraid":
        matches = bool(owner_org) and grant.organization_id == owner_org
    else:
        matches = grant is not None and grant.dataset_id == dataset_id
    if grant is None or not matches or grant.user_id != user_id:
        raise errors.SourceError(
            f"no upload {resource_id} was issued to you for this dataset")
    return grant


def abort(grant: UploadGrant) -> bool:
    """End an upload and forget it; False if the store had ended it.

    An upload already completed (its resource not created) has an object
    that nothing refers to: it goes too.
    """
    with object_store.leading(f"cannot abort the upload of {grant.key}"):
        ended = presigned.abort(grant.bucket, grant.key, grant.upload_id)
    if grant.completed_etag and not ckan_data.resource_facts(
            grant.resource_id):
        object_store.delete_objects(grant.bucket, [grant.key])
    upload_grants.delete(grant)
    return ended


@dataclass(frozen=True)
class FinishedUpload:
    url: str
    #: the object's ETag
    etag: str
    #: the ETag a client computes for the file (``etag`` of the resource)
    client_etag: str

    def owned_fields(self) -> dict[str, Any]:
        """The plugin-owned fields its resource is created with."""
        return {"s3_available": True, "s3_url": self.url,
                "etag": self.client_etag}


def finish(grant: UploadGrant, now: float | None = None) -> FinishedUpload:
    """Turn a granted upload into the object of its resource.

    The parts must cover exactly the declared size; the store's ETag of
    the completed object must be the one the parts give. Expired URLs do
    not matter once the parts are all there. The grant stays (marked
    complete) until the resource exists, so a creation that fails later
    can be retried without sending the file again. The caller holds the
    upload's claim.
    """
    url = object_store.object_url(grant.bucket, grant.key)
    if grant.completed_etag:
        grant = _check_completed(grant)
        return FinishedUpload(url, grant.completed_etag,
                              grant.client_etag or grant.completed_etag)
    try:
        stored = presigned.stored_parts(grant.bucket, grant.key,
                                        grant.upload_id)
    except errors.NotFound as exc:
        raise errors.SourceError(str(exc)) from exc
    try:
        parts = covering_parts(grant, stored)
    except errors.SourceError:
        if grant.expires_at < (time.time() if now is None else now):
            raise errors.SourceError(
                f"the upload {grant.resource_id} expired: resume it "
                "(resource_upload_s3_urls with its resource_id) for new "
                "URLs") from None
        raise
    grant = complete(grant, parts)
    return FinishedUpload(url, grant.completed_etag, grant.client_etag)


def complete(grant: UploadGrant, parts: list[presigned.StoredPart]
             ) -> UploadGrant:
    """Complete the upload from ``parts``; the grant as noted."""
    expected = presigned.expected_etag(parts)
    grant = dataclasses.replace(
        grant, completed_etag=expected,
        client_etag=parts[0].etag if len(parts) == 1 else expected)
    # Noted first: if the store completes but its answer is lost, a retry
    # finds the object instead of a missing upload.
    upload_grants.save(grant, time.time())
    presigned.complete(grant.bucket, grant.key, grant.upload_id, parts)
    return grant


def _check_completed(grant: UploadGrant) -> UploadGrant:
    """A retried creation: the object must be the one the parts made.
    Returns the grant as the object now is."""
    head = object_store.head_object(grant.bucket, grant.key)
    if (head is not None and head["ContentLength"] == grant.size
            and multipart.clean_etag(head["ETag"]) == grant.completed_etag):
        return grant
    # The completion did not happen (or the answer said so): the parts
    # are still there if the upload is, perhaps others than before (a
    # part sent again): the ETags are those of the parts now.
    try:
        stored = presigned.stored_parts(grant.bucket, grant.key,
                                        grant.upload_id)
    except errors.NotFound as exc:
        if head is not None and not ckan_data.resource_facts(
                grant.resource_id):
            # Not what was declared, and no resource refers to it.
            object_store.delete_objects(grant.bucket, [grant.key])
        raise errors.SourceError(
            f"upload {grant.resource_id} has neither parts nor a complete "
            "object of the declared size: start again") from exc
    return complete(grant, covering_parts(grant, stored))


def done(grant: UploadGrant) -> None:
    """The resource exists: the grant is used up."""
    upload_grants.delete(grant)


def covering_parts(grant: UploadGrant,
                    stored: dict[int, presigned.StoredPart]
                    ) -> list[presigned.StoredPart]:
    """The parts in order if they are exactly those of the declared size."""
    layout_ = presigned.PartLayout(grant.size, grant.part_size)
    missing = [n for n in layout_.numbers if n not in stored]
    wrong = sorted(n for n, part in stored.items() if not layout_.fits(part))
    if missing or wrong:
        raise errors.SourceError(
            f"the parts of upload {grant.resource_id} do not make "
            f"{grant.size} bytes yet: "
            + "; ".join(text for text in (
                f"missing parts {missing}" if missing else "",
                f"parts of the wrong size or number {wrong}" if wrong
                else "") if text))
    return [stored[n] for n in layout_.numbers]


def record_sha256(resource_id: str) -> str | None:
    """Job after a direct upload: the SHA256 of the stored object, read
    with parallel range requests and recorded. Returns it (None when the
    resource is gone or has it already)."""
    facts = ckan_data.resource_facts(resource_id)
    if facts is None or facts.state != "active" \
            or facts.extras.get("sha256"):
        return None
    where = object_store.parse_object_url(facts.extras.get("s3_url") or "")
    if where is None:
        raise errors.SourceError(f"resource {resource_id} has no object in "
                                "this store")
    sha256 = transfer.object_sha256(*where)
    search_index.record_resource_fields(facts.dataset_id, resource_id,
                                        {"sha256": sha256})
    return sha256
