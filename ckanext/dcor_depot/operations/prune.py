"""Abort stale incomplete multipart uploads in this site's buckets.

A killed upload leaves its parts in the store: invisible as an object, but
taking space until the multipart upload is aborted. Only buckets whose
names match this site's bucket template are touched.
"""
from __future__ import annotations

import datetime
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from enum import Enum
from typing import Any

from ckanext.dcor_depot.storage import object_store, survey


@dataclass(frozen=True)
class StaleUpload:
    bucket: str
    key: str
    upload_id: str
    initiated: datetime.datetime


class PruneAction(str, Enum):
    """What happened to an upload; the value is the word printed."""
    ABORTED = "aborted"
    WOULD_ABORT = "would abort"
    #: too young to be stale
    KEPT = "kept"
    #: completed or aborted by someone else meanwhile
    GONE = "gone"
    FAILED = "failed"


@dataclass
class PruneOutcome:
    upload: StaleUpload
    action: PruneAction
    error: str = ""


def multipart_uploads(bucket: str) -> Iterator[StaleUpload]:
    """Every incomplete multipart upload of a bucket (paginated)."""
    for item in survey.open_uploads(object_store.get_client(), bucket):
        yield StaleUpload(bucket, item["Key"], item["UploadId"],
                          item["Initiated"])


def prune_multipart_uploads(older_than_days: float, *, dry_run: bool = False,
                            on_result: Callable[[PruneOutcome], None]
                            ) -> None:
    """Abort the multipart uploads initiated more than N days ago.

    ``on_result`` is called for every upload found, young ones included
    (``PruneAction.KEPT``). Raises ObjectStoreError when the store cannot be
    listed; a failing abort is reported through ``on_result``.
    """
    if older_than_days < 0:
        raise ValueError("the age in days must not be negative")
    cutoff = (datetime.datetime.now(datetime.timezone.utc)
              - datetime.timedelta(days=older_than_days))
    s3 = object_store.get_client()
    with object_store.translated():
        buckets = object_store.site_buckets()
    for bucket in buckets:
        try:
            uploads = list(multipart_uploads(bucket))
        except object_store.BOTO_ERRORS as exc:
            if object_store.is_not_found(exc):
                continue  # deleted meanwhile
            raise object_store.store_error(
                exc, f"cannot list the multipart uploads of bucket {bucket}"
            ) from exc
        for upload in uploads:
            on_result(_prune_one(s3, upload, cutoff, dry_run))


def _prune_one(s3: Any, upload: StaleUpload, cutoff: datetime.datetime,
               dry_run: bool) -> PruneOutcome:
    if upload.initiated > cutoff:
        return PruneOutcome(upload, PruneAction.KEPT)
    if dry_run:
        return PruneOutcome(upload, PruneAction.WOULD_ABORT)
    try:
        s3.abort_multipart_upload(Bucket=upload.bucket, Key=upload.key,
                                  UploadId=upload.upload_id)
    except object_store.BOTO_ERRORS as exc:
        # Completed or aborted meanwhile (Ceph RGW says NoSuchKey).
        if object_store.error_code(exc) in ("NoSuchUpload", "NoSuchKey"):
            return PruneOutcome(upload, PruneAction.GONE)
        return PruneOutcome(upload, PruneAction.FAILED,
                            object_store.describe_error(exc))
    return PruneOutcome(upload, PruneAction.ABORTED)
