"""The object store as the tests look into it, past the plugin: the
unit tier's made-up endpoint, and what a real bucket holds."""
from __future__ import annotations

import hashlib

from ckanext.dcor_depot.storage import object_store

#: The endpoint of the unit tier's S3 settings (nothing answers there).
ENDPOINT = "https://s3.example.org"


def open_uploads(bucket: str) -> list[str]:
    """Keys of the multipart uploads open in ``bucket`` ([] when there
    is no such bucket)."""
    s3 = object_store.get_client()
    try:
        reply = s3.list_multipart_uploads(Bucket=bucket)
    except s3.exceptions.NoSuchBucket:
        return []
    return [u["Key"] for u in reply.get("Uploads", [])]


def object_sha256(bucket: str, key: str) -> str | None:
    """SHA256 of an object's bytes, streamed (None: no such object)."""
    if object_store.head_object(bucket, key) is None:
        return None
    body = object_store.get_client().get_object(
        Bucket=bucket, Key=key)["Body"]
    digest = hashlib.sha256()
    for chunk in iter(lambda: body.read(1 << 20), b""):
        digest.update(chunk)
    return digest.hexdigest()
