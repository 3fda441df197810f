"""What users may submit for resources: checked before CKAN saves anything.

Every action that creates or changes resources ends in ``package_create``
or ``package_update`` (``resource_create``, ``resource_update``,
``resource_patch``, ``package_patch``, ``package_revise`` call the latter),
so the chained versions of those two apply these rules to every path:

- ``s3_available``, ``s3_url``, ``sha256`` and ``etag`` belong to the
  plugin. Only sysadmins (the plugin's jobs run as the site user) may
  change them on existing resources; on new resources only the plugin's
  own in-process calls (``ignore_auth``) or a verified direct upload set
  them. On an update a missing field keeps its stored value, so the
  ``package_show`` → edit → ``package_update`` round trip keeps working.
- A resource's file is immutable: a new ``upload``, ``clear_upload`` or a
  different ``url_type`` on an existing resource is refused.
- Resource and dataset ids must be ids the storage layout accepts. Over
  the API nobody, sysadmins included, chooses the id of a new resource
  (the id decides where its data live: a user could otherwise take the
  id of a purged resource whose objects are still stored) except one
  issued for a direct upload (:mod:`.registration`); the plugin's own
  commands may, never one that exists.
- Keys starting with ``__`` (``__extras``) are refused in resources:
  CKAN's schema would copy their content over the checked fields.
"""
from __future__ import annotations

from collections.abc import Collection, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from types import MappingProxyType
from typing import Any

import ckan.authz as authz
import ckan.model as model
import ckan.plugins.toolkit as tk

from ckanext.dcor_depot import names
from ckanext.dcor_depot.storage import layout

#: Resource fields only the plugin (or a sysadmin) writes.
OWNED_FIELDS = names.OWNED_FIELDS


#: Resources being created from a verified direct upload in this request:
#: id -> the plugin-owned fields the plugin set for it.
_verified_uploads: ContextVar[Mapping[str, Mapping[str, Any]]] = ContextVar(
    "dcor_depot_verified_uploads", default=MappingProxyType({}))


@contextmanager
def verified_upload(resource_id: str,
                    fields: dict[str, Any]) -> Iterator[None]:
    """While the resource of a checked direct upload is created, accept
    its id, ``url_type: s3_upload`` and exactly these owned fields."""
    token = _verified_uploads.set(
        {**_verified_uploads.get(), resource_id: fields})
    try:
        yield
    finally:
        _verified_uploads.reset(token)


def is_verified_upload(resource: dict[str, Any]) -> bool:
    fields = _verified_uploads.get().get(str(resource.get("id")))
    return (fields is not None
            and resource.get("url_type") == names.URL_TYPE_S3_UPLOAD
            and all(_same(name, resource.get(name), value)
                    for name, value in fields.items()))


def refuse_plugin_fields(resource: dict[str, Any],
                         allowed: Collection[str] = ()) -> None:
    """A direct upload's resource: no owned field but those in ``allowed``
    (the ones the plugin verified), and no file (its file is in the
    store already)."""
    for field in OWNED_FIELDS:
        if field not in allowed and present(resource.get(field)):
            _refuse(field, f"{field} is set by the dcor_depot plugin once "
                    "the data are stored; leave it out")
    if _has_file(resource.get("upload")) or present(
            resource.get("clear_upload")):
        _refuse("upload", "the file of a direct upload is in the store "
                "already: send no file")


def is_trusted(context: dict[str, Any]) -> bool:
    """Sysadmins, including the site user the plugin's jobs act as."""
    return bool(authz.is_sysadmin(context.get("user")))


def may_choose_ids(context: dict[str, Any]) -> bool:
    """In-process callers that skip authorization (the plugin's own
    commands): HTTP requests cannot set ``ignore_auth``."""
    return bool(context.get("ignore_auth"))


def _refuse(field: str, message: str) -> None:
    raise tk.ValidationError({field: [message]})


def present(value: Any) -> bool:
    return value not in (None, "")


def _same(field: str, submitted: Any, stored: Any) -> bool:
    if field == "s3_available":
        try:
            return tk.asbool(submitted or False) == tk.asbool(stored
                                                              or False)
        except ValueError:  # not a boolean at all
            return False
    return str(submitted or "") == str(stored or "")


def check_id(kind: str, identifier: Any) -> None:
    """Refuse ids CKAN would accept but the storage layout cannot use."""
    try:
        layout.check_id(identifier)
    except ValueError:
        _refuse("id", f"{identifier!r} is not a valid {kind} id: use a "
                "plain UUID (letters, digits and dashes) or leave it out")


def check_new_dataset(context: dict[str, Any],
                      data_dict: dict[str, Any]) -> None:
    """``package_create``: the dataset id and its resources."""
    if present(data_dict.get("id")):
        check_id("dataset", data_dict["id"])
    trusted = may_choose_ids(context)
    for resource in _resource_dicts(data_dict):
        _check_new_resource(trusted, resource)


def check_dataset_update(context: dict[str, Any], pkg: model.Package,
                         data_dict: dict[str, Any]) -> None:
    """``package_update``: each submitted resource against the stored one.

    Fills missing plugin-owned fields and ``url_type`` of existing
    resources from the database (in place).
    """
    if "resources" not in data_dict:
        return
    stored = {res.id: res for res in model.Session.query(model.Resource)
              .filter(model.Resource.package_id == pkg.id)
              .filter(model.Resource.state == "active")}
    # Once per request: it costs a query (300 resources, 300 queries).
    trusted = is_trusted(context)
    for resource in _resource_dicts(data_dict):
        rid = resource.get("id")
        existing = stored.get(rid) if isinstance(rid, str) else None
        if existing is None:
            _check_new_resource(may_choose_ids(context), resource)
        else:
            _check_existing_resource(trusted, existing, resource)


def _resource_dicts(data_dict: dict[str, Any]) -> list[dict[str, Any]]:
    resources = data_dict.get("resources") or []
    if not isinstance(resources, list):
        return []
    dicts = [res for res in resources if isinstance(res, dict)]
    for res in dicts:
        check_shape(res)
    return dicts


def check_shape(resource: dict[str, Any]) -> None:
    """No NUL, and no ``__`` keys whose content CKAN would copy over the
    checked fields."""
    refuse_nul(resource)
    hidden = sorted(k for k in resource if str(k).startswith("__"))
    if hidden:
        _refuse(hidden[0], f"{hidden[0]} is not accepted in a resource: "
                "send its fields as plain keys")


def refuse_nul(resource: dict[str, Any]) -> None:
    # PostgreSQL stores no NUL: CKAN would answer 500 on the INSERT.
    for key, value in resource.items():
        if isinstance(value, str) and "\x00" in value:
            _refuse(str(key), f"{key} cannot contain NUL characters")


def _check_new_resource(trusted: bool, resource: dict[str, Any]) -> None:
    if not trusted and is_verified_upload(resource):
        refuse_plugin_fields(
            resource, _verified_uploads.get()[str(resource.get("id"))])
        trusted = True  # its id and owned fields were set by the plugin
    elif not trusted and resource.get("url_type") == names.URL_TYPE_S3_UPLOAD:
        _refuse("url_type", "a resource of a direct upload is created by "
                "resource_create with the id resource_upload_s3_urls "
                "returned, once its parts are uploaded")
    rid = resource.get("id")
    if present(rid):
        if not trusted:
            _refuse("id", "the id of a new resource is chosen by CKAN, or "
                    "is one resource_upload_s3_urls issued to you: leave "
                    "it out")
        check_id("resource", rid)
        if model.Session.query(model.Resource.id).filter(
                model.Resource.id == rid).first() is not None:
            _refuse("id", f"resource id {rid} is already taken: leave the "
                    "id out to get a new one")
    if trusted:
        return
    for field in OWNED_FIELDS:
        if present(resource.get(field)):
            _refuse(field, f"{field} is set by the dcor_depot plugin once "
                    "the data are stored; leave it out")


def _check_existing_resource(trusted: bool, existing: model.Resource,
                             resource: dict[str, Any]) -> None:
    if _has_file(resource.get("upload")) or present(
            resource.get("clear_upload")):
        _refuse("upload", f"the file of resource {existing.id} cannot be "
                "replaced or removed (resources are immutable data): add a "
                "new resource instead")
    stored_type = existing.url_type or ""
    if "url_type" not in resource:
        if stored_type:
            resource["url_type"] = stored_type
    elif (resource["url_type"] or "") != stored_type:
        _refuse("url_type", f"the url_type of resource {existing.id} cannot "
                f"change from {stored_type!r}: add a new resource instead")
    extras = existing.extras or {}
    for field in OWNED_FIELDS:
        if field not in resource:
            if field in extras:
                resource[field] = extras[field]
        elif not trusted and not _same(field, resource[field],
                                       extras.get(field)):
            _refuse(field, f"{field} is set by the dcor_depot plugin and "
                    f"cannot be changed (stored: {extras.get(field)!r})")


def _has_file(upload: Any) -> bool:
    """A file sent with the request (werkzeug FileStorage or cgi field)."""
    return bool(getattr(upload, "filename", None))


def chosen_ids(data_dict: dict[str, Any]) -> set[str]:
    """Resource ids the caller put in the request (after the checks: ids
    of existing resources or ids a sysadmin chose for new ones)."""
    return {res["id"] for res in _resource_dicts(data_dict)
            if isinstance(res.get("id"), str) and res["id"]}
