"""Keep the ``public=true`` object tags in step with dataset visibility.

An object is public exactly when its dataset is public (not private) and
active. The tags change inside the dataset update, before it is committed:
if the store cannot be reached the update fails, so the database and the
store never disagree in the dangerous direction (private data readable).
"""
from __future__ import annotations

import logging
from typing import Any

import ckan.model as model
import ckan.plugins.toolkit as tk

from . import config, layout, object_store

log = logging.getLogger(__name__)

#: Context key under which the chained package_update remembers whether the
#: dataset's objects were public before the update.
CONTEXT_KEY = "dcor_depot_was_public"


def _model_is_public(pkg: model.Package | None) -> bool:
    return bool(pkg and not pkg.private and pkg.state == "active")


def remember_visibility(context: dict[str, Any],
                        data_dict: dict[str, Any]) -> None:
    """Record the dataset's visibility before an update (cheap DB read)."""
    ref = data_dict.get("id") or data_dict.get("name")
    pkg = model.Package.get(ref) if ref else None
    if pkg is not None:
        context.setdefault(CONTEXT_KEY, {})[pkg.id] = _model_is_public(pkg)


def after_dataset_update(context: dict[str, Any],
                         data: dict[str, Any]) -> None:
    """Retag a dataset's objects when its visibility changed."""
    if not config.s3_available():
        return
    ref = data.get("id") or data.get("name")
    pkg = model.Package.get(ref) if ref else None
    if pkg is None:
        return
    public = _model_is_public(pkg)
    before = context.get(CONTEXT_KEY, {}).get(pkg.id)
    if before is not None and before == public:
        return  # nothing changed: no request to the store
    set_dataset_public(pkg, public)


def set_dataset_public(pkg: model.Package, public: bool) -> int:
    """Tag (or untag) every artifact of every resource of ``pkg``.

    Untagging covers deleted resources too. Returns the number of objects
    changed; missing artifacts are skipped. Raises ValidationError with a
    clear message when the store fails, which aborts the dataset update.
    """
    query = model.Session.query(model.Resource.id).filter(
        model.Resource.package_id == pkg.id)
    if public:
        query = query.filter(model.Resource.state == "active")
    resource_ids = [row[0] for row in query]
    if not resource_ids or not pkg.owner_org:
        return 0
    bucket = object_store.bucket_name(pkg.owner_org)
    changed = 0
    try:
        for rid in resource_ids:
            for artifact in layout.ARTIFACTS:
                key = layout.object_key(rid, artifact)
                if object_store.set_public(bucket, key, public):
                    changed += 1
    except object_store.ObjectStoreError as exc:
        what = "public" if public else "private"
        raise tk.ValidationError({"private": [
            f"could not make the data of dataset {pkg.name} {what} in the "
            f"object store ({exc}); nothing was changed, try again"]}
        ) from exc
    log.info("Made %d objects of dataset %s %s", changed, pkg.name,
             "public" if public else "private")
    return changed


def sync_datasets(dataset_ids: list[str]) -> None:
    """Bring the tags of several datasets in line with their state."""
    if not config.s3_available():
        return
    for dataset_id in dataset_ids:
        pkg = model.Package.get(dataset_id)
        if pkg is not None:
            set_dataset_public(pkg, _model_is_public(pkg))


def make_datasets_private(dataset_ids: list[str]) -> None:
    """Remove the public tags of several datasets' objects."""
    if not config.s3_available():
        return
    for dataset_id in dataset_ids:
        pkg = model.Package.get(dataset_id)
        if pkg is not None:
            set_dataset_public(pkg, False)


def make_resource_private(resource_id: str) -> None:
    """Remove the public tags of one resource's objects (before deletion)."""
    if not config.s3_available():
        return
    resource = model.Resource.get(resource_id)
    pkg = resource.package if resource is not None else None
    if pkg is None or not pkg.owner_org:
        return
    bucket = object_store.bucket_name(pkg.owner_org)
    try:
        for artifact in layout.ARTIFACTS:
            object_store.set_public(
                bucket, layout.object_key(resource.id, artifact), False)
    except object_store.ObjectStoreError as exc:
        raise tk.ValidationError({"id": [
            f"could not close access to the data of resource {resource.id} "
            f"in the object store ({exc}); nothing was deleted, try again"]}
        ) from exc
