"""Where a resource's data are: what its page's "Data storage" box says.

Read from the resource's plugin fields (``s3_available``, ``s3_url``,
``s3_verified_at``) and from block storage (the upload path, the depot
file it links to, the backup). Paths and object keys are facts for
sysadmins; :meth:`StorageStatus.without_locations` drops them for
everyone else.
"""
from __future__ import annotations

import dataclasses
import datetime
import os
from dataclasses import dataclass
from typing import Any

import ckan.plugins.toolkit as tk

from ckanext.dcor_depot import config
from ckanext.dcor_depot.records import ckan_data
from ckanext.dcor_depot.records.inventory import FILE_URL_TYPES
from ckanext.dcor_depot.storage import layout, object_store


@dataclass(frozen=True)
class StorageStatus:
    in_store: bool
    #: when the stored bytes were last checked against ``sha256``
    #: ("2024-05-01 12:00 UTC"; None: never)
    verified_at: str | None
    #: a copy on block storage: the upload file (or the depot file it
    #: links to) or the backup
    backed_up: bool
    # Locations (sysadmins only; None when unknown or withheld):
    upload_path: str | None = None
    #: the depot file the upload path links to
    link_target: str | None = None
    backup_path: str | None = None
    #: ``bucket:key`` of the object
    object_location: str | None = None

    def without_locations(self) -> StorageStatus:
        return dataclasses.replace(self, upload_path=None, link_target=None,
                                   backup_path=None, object_location=None)


def is_file_resource(resource: dict[str, Any]) -> bool:
    return resource.get("url_type") in FILE_URL_TYPES


def storage_status(resource: dict[str, Any]) -> StorageStatus | None:
    """The status of a file resource (None for links or a resource whose
    id the layout does not accept)."""
    if not is_file_resource(resource):
        return None
    try:
        upload = layout.ckan_upload_path(str(resource.get("id")))
        backup = layout.backup_path(str(resource.get("id")))
    except ValueError:
        return None
    link = _link_target(upload)
    # A planted link to a file elsewhere is no copy of the resource.
    backed_up = layout.owned_file(upload) or (backup is not None
                                              and backup.is_file())
    return StorageStatus(
        in_store=tk.asbool(resource.get("s3_available", False)),
        verified_at=display_time(resource.get(ckan_data.VERIFIED_AT)),
        backed_up=backed_up,
        upload_path=str(upload) if upload.is_file() or link else None,
        link_target=link,
        backup_path=str(backup) if backup is not None
        and backup.is_file() else None,
        object_location=_object_location(resource.get("s3_url")))


def _link_target(path: Any) -> str | None:
    """Where a symlink at ``path`` points (resolved), None if it is none."""
    try:
        if not os.path.islink(path):
            return None
    except OSError:
        return None
    return os.path.realpath(path)


def _object_location(url: Any) -> str | None:
    if not isinstance(url, str) or not url or not config.s3_available():
        return None
    location = object_store.parse_object_url(url)
    return f"{location[0]}:{location[1]}" if location else None


def display_time(value: Any) -> str | None:
    """An ISO 8601 time as ``2024-05-01 12:00 UTC`` (a naive time is
    UTC); text that is no time is shown as it is, nothing as None."""
    if not isinstance(value, str) or not value.strip():
        return None
    try:
        moment = datetime.datetime.fromisoformat(
            value.strip().replace("Z", "+00:00"))
    except ValueError:
        return value.strip()
    if moment.tzinfo is not None:
        moment = moment.astimezone(datetime.timezone.utc)
    return moment.strftime("%Y-%m-%d %H:%M UTC")
