"""What the plugin's templates ask (template helpers)."""
from __future__ import annotations

from typing import Any

import ckan.model as model

from ckanext.dcor_depot import config


def direct_upload_enabled(dataset_ref: str | None) -> bool:
    """Whether the resource form of this dataset sends a chosen file
    straight to the object store (``resource_upload_s3_urls``).

    Only with the store configured and for a dataset in an organization
    (which has a bucket); otherwise CKAN's own form upload is used.
    """
    if not config.s3_available() or not dataset_ref:
        return False
    dataset = model.Package.get(dataset_ref)
    return dataset is not None and bool(dataset.owner_org)


def get_helpers() -> dict[str, Any]:
    return {"dcor_depot_direct_upload_enabled": direct_upload_enabled}
