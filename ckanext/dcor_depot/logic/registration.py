"""Registering a direct upload by naming its resource in a dataset update.

DCOR-Aid turns an upload into a resource with ``package_revise``
(``update__resources__extend: [{id, name, s3_available: true}]``). Any
update that adds a resource naming an id or setting ``s3_available``
(``package_revise``, ``package_update``, ``resource_create`` …) is taken
as such a registration, for every user, sysadmins included: the id must
have been issued to the calling user for the dataset's organization (or,
in the plugin's own dialect, for the dataset), and its object must be
complete with the declared size. Only in-process callers that skip
authorization (the plugin's own commands) choose ids freely.

On success the resource gets ``url_type: s3_upload``, ``size``,
``s3_url``, ``url`` and ``etag`` from what was verified; its SHA256 and
backup jobs follow its commit (:mod:`.transactions`).
"""
from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from typing import Any

import ckan.model as model
import ckan.plugins.toolkit as tk
from ckan.types import Context

from ckanext.dcor_depot import errors, names
from ckanext.dcor_depot.logic import download, resource_rules
from ckanext.dcor_depot.operations import direct_upload, move
from ckanext.dcor_depot.records import upload_grants
from ckanext.dcor_depot.records.upload_grants import UploadGrant

log = logging.getLogger(__name__)


def _registering(resource: dict[str, Any], stored: set[str]) -> bool:
    rid = resource.get("id")
    if isinstance(rid, str) and rid in stored:
        return False  # an existing resource: not a registration
    if resource_rules.is_verified_upload(resource):
        return False  # resource_create of the plugin's dialect did it
    return (resource_rules.present(rid)
            or resource_rules.present(resource.get("s3_available")))


def _refuse(field: str, message: str) -> None:
    raise tk.ValidationError({field: [message]})


@contextlib.contextmanager
def registered_uploads(context: Context, pkg: model.Package,
                       data_dict: dict[str, Any]) -> Iterator[None]:
    """Around a dataset update: verify and fill in the uploads its new
    resources register (refusing the update otherwise); once the update
    went through, their grants are used up."""
    resources = data_dict.get("resources")
    if context.get("ignore_auth") or not isinstance(resources, list):
        yield
        return
    stored = {row[0] for row in model.Session.query(model.Resource.id)
              .filter(model.Resource.package_id == pkg.id)
              .filter(model.Resource.state == "active")}
    new = [res for res in resources
           if isinstance(res, dict) and _registering(res, stored)]
    if not new:
        yield
        return
    user = model.User.get(context.get("user") or "")
    if user is None:
        raise tk.NotAuthorized("registering an upload needs a user")
    with contextlib.ExitStack() as stack:
        # Everything that can refuse, before the store changes.
        grants = [_granted(stack, resource, pkg, user.id)
                  for resource in new]
        for resource in new:
            resource_rules.refuse_plugin_fields(resource, ("s3_available",))
        for resource, grant in zip(new, grants, strict=True):
            _finish(stack, resource, grant, pkg)
        yield
        for grant in grants:
            direct_upload.done(grant)
    follow_moves(pkg.id)


def follow_moves(dataset_id: str) -> None:
    """The dataset may have changed organization since a plugin-dialect
    upload was issued for it: its data follow it."""
    try:
        move.request_move_if_needed(dataset_id)
    except Exception:  # noqa: BLE001 - the resources exist: report only
        log.exception("Could not check whether the data of dataset %s "
                      "must move; run dcor-depot-move-dataset --pending",
                      dataset_id)


def _granted(stack: contextlib.ExitStack, resource: dict[str, Any],
             pkg: model.Package, user_id: str) -> UploadGrant:
    """The grant the resource's id names, held for this request."""
    resource_rules.check_shape(resource)
    rid = resource.get("id")
    if not resource_rules.present(rid):
        _refuse("s3_available", "s3_available is set by the dcor_depot "
                "plugin: name the resource_id resource_upload_s3_urls "
                "returned to register an upload")
    resource_rules.check_id("resource", rid)
    try:
        stack.enter_context(upload_grants.claimed(str(rid)))
        return direct_upload.granted(str(rid), pkg.id, user_id,
                                     pkg.owner_org)
    except errors.Busy as exc:
        raise tk.ValidationError({"id": [str(exc)]}) from exc
    except errors.SourceError as exc:
        raise tk.ValidationError({"id": [
            f"{exc} (the id of a new resource is chosen by CKAN, or is "
            "one resource_upload_s3_urls issued to you)"]}) from exc


def _finish(stack: contextlib.ExitStack, resource: dict[str, Any],
            grant: UploadGrant, pkg: model.Package) -> None:
    """Complete (or check) the upload and fill in what was verified."""
    try:
        finished = direct_upload.finish(grant)
    except errors.SourceError as exc:
        raise tk.ValidationError({"id": [str(exc)]}) from exc
    except errors.DcorDepotError as exc:
        raise tk.ValidationError({"upload": [str(exc)]}) from exc
    owned = finished.owned_fields()
    # Named as declared when the URLs were issued (DCOR-Aid declares no
    # name: then the resource's).
    name = grant.name or str(resource.get("name") or "")
    resource.update(owned, url_type=names.URL_TYPE_S3_UPLOAD, size=grant.size,
                    url=download.download_url_of(pkg.id, grant.resource_id,
                                                  name))
    stack.enter_context(resource_rules.verified_upload(grant.resource_id,
                                                       owned))
