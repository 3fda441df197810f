"""Back up files that reached the object store directly to block storage."""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import ckan.plugins.toolkit as tk

from ckanext.dcor_depot.records import ckan_data, search_index
from ckanext.dcor_depot.storage import layout, object_store, transfer
from ckanext.dcor_depot.storage.fsops import file_sha256

log = logging.getLogger(__name__)


def backup_resource_from_s3_to_block_storage(
        resource_id: str, stored: dict[str, Any] | None = transfer.UNKNOWN,
        listed_in: str | None = None) -> str | bool:
    """Download an S3-route resource to the backup location, verified.

    Returns the backup path, or False when there is nothing to do (file on
    block storage, no backup location, resource not in S3). ``stored`` is
    the object's size and ETag if a listing of the bucket ``listed_in``
    knows it (None: absent); by default it is looked up.
    """
    if layout.owned_file(layout.ckan_upload_path(resource_id)):
        return False
    destination = layout.backup_path(resource_id)
    if destination is None:
        return False
    facts = ckan_data.resource_facts(resource_id)
    if (facts is None or facts.state != "active" or not facts.owner_org
            or not tk.asbool(facts.extras.get("s3_available"))):
        return False
    bucket = object_store.bucket_name(facts.owner_org)
    key = layout.object_key(resource_id)
    if listed_in != bucket:
        stored = transfer.UNKNOWN  # the dataset moved since the listing
    expected = facts.extras.get("sha256") or None
    if destination.is_file() and _is_complete(destination, bucket, key,
                                              expected, stored):
        return str(destination)
    transfer.download_verified(bucket, key, destination,
                               expected_sha256=expected,
                               label=f"resource {resource_id}")
    if expected and not facts.extras.get(ckan_data.VERIFIED_AT):
        # The stored bytes were just read and matched ``sha256``.
        search_index.record_resource_fields(
            facts.dataset_id, resource_id, ckan_data.verified_now())
    log.info("Backed up resource %s to %s", resource_id, destination)
    return str(destination)


def _is_complete(path: Path, bucket: str, key: str, expected: str | None,
                 stored: dict[str, Any] | None) -> bool:
    head = (object_store.head_object(bucket, key)
            if stored is transfer.UNKNOWN else stored)
    if head is None or head["ContentLength"] != path.stat().st_size:
        return False
    if expected is None:
        return True
    return file_sha256(path) == expected
