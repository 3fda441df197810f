"""Copy resources from block storage into the object store, verified."""
from __future__ import annotations

import logging

from . import ckan_data, layout, object_store, transfer

log = logging.getLogger(__name__)


def migrate_resource_to_s3(resource_id: str) -> bool:
    """Upload a resource's file to its organization's bucket.

    Skips the upload when an identical object is already there, verifies
    the stored bytes, tags the object public if the dataset is public and
    active, and records ``s3_available``, ``s3_url`` and ``sha256``.
    Returns whether it uploaded.
    """
    path = layout.ckan_upload_path(resource_id)
    if not path.exists():
        return False
    resource = ckan_data.resource_show(resource_id)
    dataset = ckan_data.package_show(resource["package_id"])
    bucket = object_store.bucket_name(dataset["owner_org"])
    key = layout.object_key(resource_id)
    result = transfer.upload_verified(
        path, bucket, key, expected_sha256=resource.get("sha256") or None,
        label=f"resource {resource_id}")
    apply_visibility(resource["package_id"], bucket, key)
    url = object_store.object_url(bucket, key)
    changes = {}
    if not resource.get("s3_available") or resource.get("s3_url") != url:
        changes.update(s3_available=True, s3_url=url)
    if not resource.get("sha256"):
        changes["sha256"] = result.sha256
    if changes:
        ckan_data.revise_resource(resource["package_id"], resource_id,
                                  changes)
    log.info("Resource %s %s s3://%s/%s", resource_id,
             "uploaded to" if result.uploaded else "already at", bucket, key)
    return result.uploaded


def apply_visibility(dataset_id: str, bucket: str, key: str) -> None:
    """Tag a fresh object like its dataset, then check again.

    The second look closes the window in which the dataset was made
    private while the object was being uploaded.
    """
    if ckan_data.is_public(ckan_data.package_show(dataset_id)):
        object_store.set_public(bucket, key, True)
        if not ckan_data.is_public(ckan_data.package_show(dataset_id)):
            object_store.set_public(bucket, key, False)
    else:
        object_store.set_public(bucket, key, False)
