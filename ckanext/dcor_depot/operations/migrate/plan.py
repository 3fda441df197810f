"""What to do with a resource: options, skip reasons, per-resource plans.

Decisions only: nothing here reads a file or talks to CKAN; the store
is only listed (:class:`BucketListings`).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

from ckanext.dcor_depot import errors
from ckanext.dcor_depot.records import inventory
from ckanext.dcor_depot.storage import layout, object_store, transfer

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class MigrationOptions:
    #: head_object every artifact, even of resources marked s3_available
    verify_existence: bool = False
    #: read every stored byte and compare with the SHA256 (implies the above)
    verify_checksum: bool = False
    #: delete local files once their objects are verified byte by byte
    delete_local: bool = False
    #: report only, change nothing
    dry_run: bool = False

    @property
    def verify(self) -> bool:
        return self.verify_existence or self.verify_checksum


class SkipReason(str, Enum):
    """Why a resource needs no look at its files (the value is printed)."""
    LINK = "not an upload (link to elsewhere)"
    MOVING = ("its data move to the bucket of its organization "
              "(dcor-depot-move-dataset)")
    IN_STORE = "already in S3 (s3_available)"


@dataclass(frozen=True)
class ResourcePlan:
    """Everything a transfer thread needs: no CKAN calls in threads."""
    record: inventory.ResourceRecord
    bucket: str
    paths: dict[str, Path]
    keys: dict[str, str]
    #: size/ETag (or None: absent) of the artifacts' objects, when known
    #: from a bucket listing
    stored: dict[str, dict[str, Any] | None] = field(default_factory=dict)


def moving(s3_url: str | None, bucket: str, key: str) -> bool:
    """The resource's data are in another bucket (a dataset that changed
    organization, see :mod:`~ckanext.dcor_depot.operations.move`)."""
    return bool(s3_url) and s3_url != object_store.object_url(bucket, key)


def skip_reason(record: inventory.ResourceRecord,
                options: MigrationOptions) -> SkipReason | None:
    """Why a resource needs no look at its files (None if it does).

    Links have no files. A resource marked ``s3_available`` is skipped
    unless the objects are to be verified or local files deleted.
    """
    if record.url_type != "upload":
        return SkipReason.LINK
    if record.owner_org and moving(
            record.s3_url, object_store.bucket_name(record.owner_org),
            layout.object_key(record.id)):
        return SkipReason.MOVING
    if record.s3_available and not (options.verify or options.delete_local):
        return SkipReason.IN_STORE
    return None


def no_bucket_error(resource_id: str, dataset_name: str) -> errors.StoreError:
    return errors.StoreError(f"resource {resource_id}: its dataset "
                          f"{dataset_name} has no organization, so it has "
                          "no bucket")


def plan_resource(record: inventory.ResourceRecord,
                  options: MigrationOptions) -> ResourcePlan | None:
    """The plan for one resource, or None when it is to be skipped."""
    if skip_reason(record, options):
        return None
    if not record.owner_org:
        raise no_bucket_error(record.id, record.dataset_name)
    return ResourcePlan(
        record=record,
        bucket=object_store.bucket_name(record.owner_org),
        paths={a: layout.artifact_local_path(record.id, a)
               for a in layout.ARTIFACTS},
        keys={a: layout.object_key(record.id, a) for a in layout.ARTIFACTS},
    )


def expected_sha256(plan: ResourcePlan, artifact: str) -> str | None:
    """The SHA256 on record for an artifact: only the resource has one."""
    return plan.record.sha256 if artifact == "resource" else None


#: A bucket is listed (instead of looking up each object) when at least
#: this many resources of it are migrated; each listing page (1000 keys)
#: must save this many lookups.
LISTING_MIN_RESOURCES = 10


class BucketListings:
    """Bucket listings for runs touching many objects of a bucket.

    A bucket is listed (under ``prefix``) when at least
    :data:`LISTING_MIN_RESOURCES` of the run's resources are in it; the
    objects of the others are looked up one by one.
    """

    def __init__(self, records: list[inventory.ResourceRecord],
                 prefix: str = "") -> None:
        self.prefix = prefix
        self.counts: dict[str | None, int] = {}
        for record in records:
            self.counts[record.owner_org] = \
                self.counts.get(record.owner_org, 0) + 1
        self.listings: dict[str, object_store.BucketListing | None] = {}

    def stored(self, owner_org: str, key: str) -> dict[str, Any] | None:
        """Size and ETag of an object (None: absent), or
        ``transfer.UNKNOWN`` when no listing knows it. A failing listing
        is logged and the objects looked up one by one."""
        bucket = object_store.bucket_name(owner_org)
        if bucket not in self.listings:
            count = self.counts.get(owner_org, 0)
            try:
                self.listings[bucket] = (
                    object_store.BucketListing(
                        bucket, max_pages=count // LISTING_MIN_RESOURCES,
                        prefix=self.prefix)
                    if count >= LISTING_MIN_RESOURCES else None)
            except errors.StoreError as exc:
                log.warning("Listing %s failed (%s); looking up objects "
                            "one by one", bucket, exc)
                self.listings[bucket] = None
        listing = self.listings[bucket]
        if listing is None or not listing.knows(key):
            return transfer.UNKNOWN
        return listing.get(key)

    def fill(self, plan: ResourcePlan) -> None:
        """Put what the listings know about the plan's objects into it."""
        owner_org = plan.record.owner_org
        if not owner_org:
            return
        for artifact, key in plan.keys.items():
            stored = self.stored(owner_org, key)
            if stored is not transfer.UNKNOWN:
                plan.stored[artifact] = stored
