"""What the plugin's templates ask (template helpers)."""
from __future__ import annotations

from typing import Any

import ckan.model as model

from ckanext.dcor_depot import config


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


def get_helpers() -> dict[str, Any]:
    return {"dcor_depot_direct_upload_enabled": direct_upload_enabled,
            "dcor_depot_direct_upload_dataset_id": direct_upload_dataset_id}
