"""Downloads of files that live only in the store: what the view needs.

A resource of a direct upload (``url_type: s3_upload``), or an upload
whose local file is gone (``--delete-after-migration``), has its bytes
only in the object store. Its download URL then answers 302 to a fresh
presigned URL, so the bytes never pass through CKAN's web process. Who
may download is decided exactly as CKAN decides it (``resource_show``
and ``package_show`` for the requesting user) before any URL is made;
everything else is left to CKAN's own download view (:mod:`..views`).
"""
from __future__ import annotations

import mimetypes
import posixpath
import re
from typing import Any
from urllib.parse import unquote, urlsplit

import ckan.model as model
import ckan.plugins.toolkit as tk

from ckanext.dcor_depot import config, names
from ckanext.dcor_depot.storage import layout, object_store, presigned


def url_file_name(resource: dict[str, Any]) -> str:
    """The file name a resource's data are downloaded as: the last part
    of its ``url`` (CKAN's quoted download URL, as shown)."""
    stored = str(resource.get("url") or "").rstrip("/")
    name = unquote(posixpath.basename(urlsplit(stored).path))
    return safe_file_name(name or str(resource.get("name") or "")
                          or str(resource["id"]))


def safe_file_name(name: str) -> str:
    """``name`` as one path segment: no slashes, control characters or
    dot names (other characters are kept; URLs quote them)."""
    cleaned = "".join("_" if char in "/\\" or ord(char) < 32
                      or ord(char) == 127 else char
                      for char in name).strip()
    return cleaned if cleaned.strip(".") else "data"


def download_url_of(dataset_id: str, resource_id: str, name: str) -> str:
    """CKAN's download URL of a resource, as CKAN shows it for uploads
    (the ``url`` a direct upload is created with)."""
    return tk.url_for("resource.download", id=dataset_id,
                      resource_id=resource_id,
                      filename=safe_file_name(name), qualified=True)


def store_location(resource: dict[str, Any]) -> tuple[str, str] | None:
    """``(bucket, key)`` to download from if the file is only in the
    store, else None (CKAN serves it, or has nothing to serve)."""
    url_type = resource.get("url_type")
    if url_type not in names.FILE_URL_TYPES \
            or not config.s3_available():
        return None
    if url_type == "upload" and (
            not tk.asbool(resource.get("s3_available"))
            # (A link planted at the upload path is no file of ours: the
            # verified object is served instead.)
            or layout.owned_file(layout.ckan_upload_path(resource["id"]))):
        return None  # still on block storage, or never in the store
    return object_store.parse_object_url(resource.get("s3_url") or "")


def readable_resource(dataset_ref: str, resource_id: str,
                      context: dict[str, Any]) -> dict[str, Any]:
    """What the download needs of an active resource of the dataset the
    URL names, if the user may read it (``resource_show``'s auth, which
    asks ``package_show``'s). ObjectNotFound / NotAuthorized otherwise.

    Read from the database rows, not by ``resource_show``, which would
    build the whole dataset for every download.
    """
    if "\x00" in resource_id + dataset_ref:
        # PostgreSQL refuses NUL in a query: no row has it.
        raise tk.ObjectNotFound("no such resource in this dataset")
    resource = model.Resource.get(resource_id)
    dataset = model.Package.get(dataset_ref)
    if (resource is None or resource.state != "active" or dataset is None
            or dataset.id != resource.package_id):
        raise tk.ObjectNotFound("no such resource in this dataset")
    tk.check_access("resource_show", context, {"id": resource.id})
    extras = resource.extras or {}
    return {"id": resource.id, "name": resource.name, "url": resource.url,
            "url_type": resource.url_type, "mimetype": resource.mimetype,
            "s3_available": extras.get("s3_available"),
            "s3_url": extras.get("s3_url")}


def foreign_upload(resource: dict[str, Any]) -> bool:
    """Whether the upload path leads to a file the plugin does not own
    (a planted symlink): answered 404, never served, and not handed to
    CKAN's view (whose own check would fail with a server error)."""
    if resource.get("url_type") != "upload":
        return False
    try:
        path = layout.ckan_upload_path(resource["id"])
    except ValueError:
        return False  # an id of before the layout: CKAN decides
    return layout.foreign_file(path) is not None


def media_type(value: Any) -> str | None:
    """A user-set ``mimetype`` only if it is a plain ``type/subtype``."""
    text = str(value or "")
    return text if _MEDIA_TYPE.fullmatch(text) else None


_MEDIA_TYPE = re.compile(r"[\w.+-]+/[\w.+-]+")


def presigned_url(resource: dict[str, Any],
                  location: tuple[str, str]) -> str:
    """A fresh URL that downloads the resource's object at ``location``
    under the resource's file name and media type."""
    name = url_file_name(resource)
    return presigned.download_url(
        *location, filename=name,
        lifetime=config.direct_upload_settings().download_url_lifetime,
        content_type=media_type(resource.get("mimetype"))
        or mimetypes.guess_type(name)[0])
