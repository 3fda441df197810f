"""What was issued for a direct upload, so that creation can check it.

``resource_upload_s3_urls`` records who may create which resource from
which upload: the dataset, the user, the declared size and until when.
The record lives in CKAN's Redis (where its jobs live) and expires by
itself a day after its URLs; a lost record only means that the upload
cannot be turned into a resource (nothing is ever opened by one).
"""
from __future__ import annotations

import contextlib
import dataclasses
import json
import secrets
from collections.abc import Iterator
from dataclasses import dataclass

import ckan.plugins.toolkit as tk
from ckan.lib import jobs as ckan_jobs

from ckanext.dcor_depot import errors

#: Seconds a grant is kept after its URLs expired (for abort and errors
#: that can still name it).
KEEP_AFTER_EXPIRY = 24 * 3600
#: Seconds a completed upload's grant is kept at least: its object waits
#: for its resource (the URLs' expiry does not end that).
KEEP_COMPLETED = 7 * 24 * 3600


@dataclass(frozen=True)
class UploadGrant:
    resource_id: str
    dataset_id: str
    user_id: str
    #: the file name declared when the URLs were issued
    name: str
    size: int
    part_size: int
    bucket: str
    key: str
    upload_id: str
    #: Unix time after which the URLs and the grant are no longer valid
    expires_at: float
    #: set once the plugin asked the store to complete the upload: the
    #: ETag the object must have (a retried creation checks it instead of
    #: completing again)
    completed_etag: str = ""
    #: the ETag a client computes for the file: the MD5 of a file sent as
    #: one part, the object's ETag otherwise (recorded as ``etag``)
    client_etag: str = ""
    #: the organization whose bucket holds the upload
    organization_id: str = ""
    #: ``plugin`` (issued for a dataset) or ``dcoraid`` (issued for an
    #: organization; DCOR-Aid's dialect)
    dialect: str = "plugin"
    #: SHA256 of the secret in the completion URL (DCOR-Aid's dialect)
    completion_secret_sha256: str = ""


def _redis_key(resource_id: str) -> str:
    site = tk.config.get("ckan.site_id") or "default"
    return f"ckanext-dcor_depot:{site}:upload-grant:{resource_id}"


def _user_key(user_id: str) -> str:
    site = tk.config.get("ckan.site_id") or "default"
    return f"ckanext-dcor_depot:{site}:open-uploads-of:{user_id}"


def save(grant: UploadGrant, now: float) -> None:
    keep = max(1, int(grant.expires_at - now) + KEEP_AFTER_EXPIRY)
    if grant.completed_etag:
        keep = max(keep, KEEP_COMPLETED)
    connection = ckan_jobs.connect_to_redis()
    with connection.pipeline() as pipe:
        pipe.set(_redis_key(grant.resource_id),
                 json.dumps(dataclasses.asdict(grant)), ex=keep)
        # The user's open uploads, each until its URLs expire.
        pipe.zadd(_user_key(grant.user_id),
                  {grant.resource_id: grant.expires_at})
        # Never shortened (an older grant saved again must not end the
        # set before newer grants expire).
        pipe.expire(_user_key(grant.user_id), keep, gt=True)
        pipe.expire(_user_key(grant.user_id), keep, nx=True)
        pipe.execute()


def open_uploads(user_id: str, now: float) -> int:
    """How many uploads issued to the user are neither used, aborted nor
    expired."""
    connection = ckan_jobs.connect_to_redis()
    connection.zremrangebyscore(_user_key(user_id), "-inf", now)
    return int(connection.zcard(_user_key(user_id)))


def is_open(grant: UploadGrant, now: float) -> bool:
    """Whether the grant counts among its user's open uploads now."""
    score = ckan_jobs.connect_to_redis().zscore(_user_key(grant.user_id),
                                                grant.resource_id)
    return score is not None and float(score) > now


def load(resource_id: str) -> UploadGrant | None:
    raw = ckan_jobs.connect_to_redis().get(_redis_key(resource_id))
    if raw is None:
        return None
    try:
        return UploadGrant(**json.loads(raw))
    except (TypeError, ValueError):
        return None  # written by another version: not to be trusted


def delete(grant: UploadGrant) -> None:
    with ckan_jobs.connect_to_redis().pipeline() as pipe:
        pipe.delete(_redis_key(grant.resource_id))
        pipe.zrem(_user_key(grant.user_id), grant.resource_id)
        pipe.execute()


#: Seconds a claim lasts at most (a request that died releases it then).
CLAIM_SECONDS = 3600


@contextlib.contextmanager
def claimed(resource_id: str) -> Iterator[None]:
    """Exclusive use of an upload for one request (creating, resuming or
    aborting it); Busy if another request holds it."""
    connection = ckan_jobs.connect_to_redis()
    key = _redis_key(resource_id) + ":claim"
    token = secrets.token_hex(8)
    if not connection.set(key, token, nx=True, ex=CLAIM_SECONDS):
        raise errors.Busy(f"upload {resource_id} is in use by another "
                          "request; try again when it is done")
    try:
        yield
    finally:
        # Only our own claim is released (it may have expired and been
        # taken by another request meanwhile).
        if connection.get(key) == token.encode():
            connection.delete(key)
