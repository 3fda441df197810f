"""Template helpers: what the plugin's templates ask.

The resource form asks whether to send a chosen file straight to the
object store; the resource page asks for its *Data storage* box.
"""
from __future__ import annotations

from typing import Any

import ckan.authz as authz
import ckan.model as model
import ckan.plugins.toolkit as tk

from ckanext.dcor_depot import config
from ckanext.dcor_depot.operations import storage_status as status
from ckanext.dcor_depot.operations.audit.usage import human_bytes


def direct_upload_dataset_id(dataset_ref: str | None) -> str | None:
    """The id of the dataset whose resource form sends a chosen file
    straight to the object store (``resource_upload_s3_urls``); None when
    CKAN's own form upload is to be used.

    Only with the store configured, the option
    ``ckanext.dcor_depot.browser_direct_upload`` on, a site URL the
    buckets' CORS rule can name (else browsers may not send parts), and
    for a dataset in an organization (which has a bucket).
    """
    if (not dataset_ref or not config.s3_available()
            or not config.browser_direct_upload()
            or config.site_origin() is None):
        return None
    dataset = model.Package.get(dataset_ref)
    if dataset is None or not dataset.owner_org:
        return None
    return str(dataset.id)


def direct_upload_enabled(dataset_ref: str | None) -> bool:
    """Whether the resource form of this dataset uploads straight to the
    object store (see :func:`direct_upload_dataset_id`)."""
    return direct_upload_dataset_id(dataset_ref) is not None


def storage_status(resource: dict[str, Any] | None
                   ) -> status.StorageStatus | None:
    """The "Data storage" box of a resource page (None: no box, the
    resource is no file). CKAN shows the page only to those who may see
    the dataset; paths and the object key only sysadmins get."""
    if not isinstance(resource, dict):
        return None
    found = status.storage_status(resource)
    if found is None or _is_sysadmin():
        return found
    return found.without_locations()


def _is_sysadmin() -> bool:
    user = tk.current_user
    return bool(user and user.is_authenticated
                and authz.is_sysadmin(user.name))


def get_helpers() -> dict[str, Any]:
    return {"dcor_depot_direct_upload_enabled": direct_upload_enabled,
            "dcor_depot_direct_upload_dataset_id": direct_upload_dataset_id,
            "dcor_depot_storage_status": storage_status,
            "dcor_depot_display_time": status.display_time,
            "dcor_depot_human_bytes": human_bytes}
