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

from ckanext.dcor_depot import errors
from ckanext.dcor_depot.storage import object_store, presigned, survey


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
    """Every incomplete multipart upload of a bucket (NotFound when the
    bucket does not exist)."""
    for item in survey.bucket_uploads(bucket):
        yield StaleUpload(bucket, item["Key"], item["UploadId"],
                          item["Initiated"])


def prune_multipart_uploads(older_than_days: float, *, dry_run: bool = False,
                            on_result: Callable[[PruneOutcome], None]
                            ) -> None:
    """Abort the multipart uploads initiated more than N days ago.

    ``on_result`` is called for every upload found, young ones included
    (``PruneAction.KEPT``). Raises StoreError when the store cannot be
    listed; a failing abort is reported through ``on_result``.
    """
    if older_than_days < 0:
        raise ValueError("the age in days must not be negative")
    cutoff = (datetime.datetime.now(datetime.timezone.utc)
              - datetime.timedelta(days=older_than_days))
    buckets = object_store.site_buckets()
    for bucket in buckets:
        try:
            uploads = list(multipart_uploads(bucket))
        except errors.NotFound:
            continue  # deleted meanwhile
        for upload in uploads:
            on_result(_prune_one(upload, cutoff, dry_run))


def _prune_one(upload: StaleUpload, cutoff: datetime.datetime,
               dry_run: bool) -> PruneOutcome:
    if upload.initiated > cutoff:
        return PruneOutcome(upload, PruneAction.KEPT)
    if dry_run:
        return PruneOutcome(upload, PruneAction.WOULD_ABORT)
    try:
        # Completed or aborted meanwhile: False.
        ended = presigned.abort(upload.bucket, upload.key, upload.upload_id)
    except errors.StoreError as exc:
        return PruneOutcome(upload, PruneAction.FAILED, str(exc))
    return PruneOutcome(upload, PruneAction.ABORTED if ended
                        else PruneAction.GONE)
