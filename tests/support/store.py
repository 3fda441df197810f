"""The object store as the tests look into it, past the plugin: the
unit tier's made-up endpoint, and what a real bucket holds."""
from __future__ import annotations

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
