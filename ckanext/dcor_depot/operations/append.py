"""Add a local file to a dataset as a new resource (``append-resource``).

The resource id is derived from the dataset id, the file name and the
file's SHA256 (as upstream derived it), so appending the same file twice
finds the first resource instead of adding a second one, and an
interrupted run can simply be repeated. The file is stored and verified
before the resource is created: a resource never points at data that are
not there.
"""
from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ckan.model as model
import ckan.plugins.toolkit as tk

from ckanext.dcor_depot import config, errors
from ckanext.dcor_depot.operations import visibility
from ckanext.dcor_depot.progress import Progress, ProgressBars, no_bars
from ckanext.dcor_depot.records import ckan_data
from ckanext.dcor_depot.storage import (
    fsops,
    layout,
    object_store,
    rtdc,
    transfer,
)
from ckanext.dcor_depot.storage.fsops import copy_verified, file_sha256
from ckanext.dcor_depot.storage.ids import reproducible_id


@dataclass(frozen=True)
class AppendResult:
    resource_id: str
    dataset_name: str
    #: False when the resource was already there
    created: bool
    #: where the bytes are: ``s3://bucket/key`` or a local path
    location: str
    #: the source was deleted (after its stored copy was verified)
    source_deleted: bool
    #: why the source was kept although its deletion was asked for
    source_kept_reason: str = ""


def resource_id_for(dataset_id: str, file_name: str, sha256: str) -> str:
    """Reproducible id of a file appended to a dataset (upstream's
    formula): of the dataset id, the file name and the file's SHA256 as
    a lower-case hex digest."""
    return reproducible_id(dataset_id, file_name, sha256)


def check_source(path: str | os.PathLike[str]) -> Path:
    """The file to append, or SourceError if it is not a readable file."""
    path = Path(path)
    try:
        info = path.stat()
    except FileNotFoundError:
        raise errors.SourceError(f"{path} does not exist") from None
    except OSError as exc:
        raise errors.SourceError(
            f"cannot access {path}: {exc.strerror}") from None
    if stat.S_ISDIR(info.st_mode):
        raise errors.SourceError(f"{path} is a directory, not a file")
    if not stat.S_ISREG(info.st_mode):
        raise errors.SourceError(f"{path} is not a regular file")
    try:
        with open(path, "rb") as fh:
            fh.read(1)
    except OSError as exc:
        raise errors.SourceError(
            f"cannot read {path}: {exc.strerror}") from None
    return path


def find_dataset(ref: str) -> dict[str, Any]:
    """The dataset with this id or name (drafts and private ones too)."""
    try:
        dataset = ckan_data.package_show(ref)
    except tk.ObjectNotFound:
        raise errors.SourceError(f"there is no dataset {ref!r}") from None
    if dataset.get("state") == "deleted":
        raise errors.SourceError(f"dataset {dataset['name']} is deleted")
    return dataset


def append_resource(path: str | os.PathLike[str], dataset_ref: str, *,
                    delete_source: bool = False,
                    progress: ProgressBars = no_bars) -> AppendResult:
    """Store ``path`` verified and add it to the dataset ``dataset_ref``.

    With S3 the file goes to the organization's bucket and the resource
    is created with ``s3_available`` (only the backup job follows);
    without S3 it is copied to CKAN's upload path and the resource is
    created like an upload (the symlink job follows). ``delete_source``
    removes ``path`` once the stored copy is verified. ``progress``
    shows the progress of hashing and storing. Raises SourceError for bad
    input and when storing fails; nothing is created then.
    """
    source = check_source(path)
    dataset = find_dataset(dataset_ref)
    is_rtdc = _check_rtdc(source)
    use_s3 = config.s3_available()
    if use_s3 and not dataset.get("owner_org"):
        raise errors.SourceError(
            f"dataset {dataset['name']} has no organization, so there is "
            "no bucket for its files")

    size = source.stat().st_size
    with progress("SHA256", size) as update:
        sha = file_sha256(source, update)
    rid = resource_id_for(dataset["id"], source.name, sha)
    existing = model.Resource.get(rid)
    if existing is not None and (existing.state != "active"
                                 or existing.package_id != dataset["id"]):
        raise errors.SourceError(
            f"resource {rid} for {source.name} exists but was deleted; "
            "restore it instead of appending again")

    with progress("store", size) as update:
        if use_s3:
            location, verified = _store_in_s3(source, dataset, rid, sha,
                                              existing is None, update)
        else:
            location, verified = _store_locally(source, rid, sha,
                                                existing is None, update)
    created = existing is None
    if created:
        _create_resource(source, dataset, rid, sha, size, is_rtdc, use_s3,
                         location)
    if location.startswith("s3://"):
        # After the resource exists, so a concurrent change of the
        # dataset's visibility sees it too; on a rerun this repairs a tag
        # that an interruption left out.
        visibility.reconcile([visibility.ObjectRef(
            dataset["owner_org"], dataset["id"], rid)])

    deleted, kept_reason = False, ""
    if delete_source:
        if verified:
            source.unlink()
            deleted = True
        else:
            kept_reason = "the stored copy could not be verified"
    return AppendResult(rid, dataset["name"], created, location, deleted,
                        kept_reason)


def _check_rtdc(source: Path) -> bool:
    """Whether the file is RT-DC data (checked: broken ones are refused)."""
    if not rtdc.claims_rtdc(source.name):
        return False
    try:
        rtdc.check_rtdc(source)
    except errors.SourceError as exc:
        raise errors.SourceError(f"{exc}; not appended") from None
    return True


def _store_in_s3(source: Path, dataset: dict[str, Any], rid: str, sha: str,
                 new: bool, progress: Progress) -> tuple[str, bool]:
    bucket = object_store.bucket_name(dataset["owner_org"])
    key = layout.object_key(rid)
    location = f"s3://{bucket}/{key}"
    if not new:
        resource = model.Resource.get(rid)
        if not tk.asbool((resource.extras or {}).get("s3_available")):
            # Appended without S3 earlier: its copy is on block storage.
            return _store_locally(source, rid, sha, new, progress)
    try:
        # Skips the transfer when an identical object is there (rerun).
        transfer.upload_verified(source, bucket, key, expected_sha256=sha,
                                 label=f"resource {rid}", progress=progress)
    except errors.StoreError as exc:
        raise errors.SourceError(str(exc)) from None
    return location, True


def _store_locally(source: Path, rid: str, sha: str, new: bool,
                   progress: Progress) -> tuple[str, bool]:
    """Copy ``source`` to the upload path through a verified temp file."""
    dest = layout.ckan_upload_path(rid)
    # A link planted at the path leads to no copy of ours (whatever it
    # holds): never a reason to delete the source.
    if layout.owned_file(dest) and file_sha256(dest) == sha:
        return str(dest), True
    if not new:
        # The resource exists and its file moved on (S3, another place):
        # do not put a second copy next to it.
        return str(dest), False
    dest.parent.mkdir(parents=True, exist_ok=True)
    # Copies of killed runs stay otherwise: this is where they would be.
    fsops.remove_stale_temps(dest.parent)
    temp = fsops.create_temp(dest.parent, dest.name, "part")
    try:
        read, written = copy_verified(source, temp, progress)
        # Both what was read and what landed on disk must be the file
        # whose SHA256 named the resource.
        if read != sha or written != sha:
            raise errors.SourceError(
                f"the copy of {source} at {dest} does not match its SHA256 "
                f"{sha}; not appended", code=errors.MISMATCH)
        os.replace(temp, dest)
    except OSError as exc:
        raise errors.SourceError(f"cannot copy {source} to {dest}: "
                                 f"{exc.strerror or exc}") from None
    finally:
        temp.unlink(missing_ok=True)
    return str(dest), True


def _create_resource(source: Path, dataset: dict[str, Any], rid: str,
                     sha: str, size: int, is_rtdc: bool, use_s3: bool,
                     location: str) -> None:
    data: dict[str, Any] = {
        "package_id": dataset["id"],
        "id": rid,
        "name": source.name,
        "url": source.name,
        "url_type": "upload",
        "size": size,
        "sha256": sha,
    }
    if is_rtdc:
        data.update(mimetype=rtdc.RTDC_MIMETYPE, format=rtdc.RTDC_FORMAT)
    if use_s3:
        bucket, key = location.removeprefix("s3://").split("/", 1)
        data.update(s3_available=True,
                    s3_url=object_store.object_url(bucket, key))
    try:
        tk.get_action("resource_create")(ckan_data.site_context(), data)
    except tk.ValidationError as exc:
        if not use_s3:
            # The source is still there: the copy may go.
            Path(location).unlink(missing_ok=True)
        raise errors.SourceError(
            f"CKAN refused the resource: {exc.error_summary}") from None
