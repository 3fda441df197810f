"""The object store as the tests look into it, past the plugin: the
unit tier's made-up endpoint, and what a real bucket holds."""
from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Iterator
from typing import Any

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


@contextlib.contextmanager
def s3_requests() -> Iterator[list[str]]:
    """The names of the S3 operations the plugin's client sends meanwhile
    (e.g. ``HeadObject``, ``ListObjectsV2``), seen by botocore itself."""
    sent: list[str] = []

    def record(model: Any, **_: Any) -> None:
        sent.append(model.name)

    events = object_store.get_client().meta.events
    events.register("before-call.s3", record, unique_id="tests-s3-requests")
    try:
        yield sent
    finally:
        events.unregister("before-call.s3", unique_id="tests-s3-requests")
