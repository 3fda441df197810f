"""The actions of direct uploads: presigned part URLs, and their end.

``resource_upload_s3_urls`` may be called by whoever may create resources
in the dataset (``resource_create``); ``resource_upload_s3_abort`` by the
user the upload was issued to while they still may, and by a sysadmin for
another user's upload only with ``force: true``;
``resource_upload_s3_status`` (read-only) tells a client whether an
upload was issued to it and whether it can still be continued, so that
it ends only its own dead uploads. Each checks that first and changes
nothing in the store before.
"""
from __future__ import annotations

import datetime
import functools
import logging
import time
from typing import Any

import ckan.model as model
import ckan.plugins.toolkit as tk
import flask
from ckan.lib import api_token
from ckan.types import AuthResult, Context, DataDict

from ckanext.dcor_depot import config, errors, names
from ckanext.dcor_depot.hooks import downloads, registration, resource_rules
from ckanext.dcor_depot.operations import dcoraid_upload, direct_upload
from ckanext.dcor_depot.records import upload_grants
from ckanext.dcor_depot.storage import layout, presigned

log = logging.getLogger(__name__)


def _dataset_ref(data_dict: DataDict) -> str:
    ref = data_dict.get("package_id")
    if not isinstance(ref, str) or not ref:
        raise tk.ValidationError({"package_id": ["Missing value"]})
    if "\x00" in ref:
        # Before any query: PostgreSQL refuses NUL (500).
        raise tk.ValidationError(
            {"package_id": ["cannot contain NUL characters"]})
    return ref


def _is_dcoraid(data_dict: DataDict) -> bool:
    """DCOR-Aid's dialect names an organization, not a dataset."""
    return "organization_id" in data_dict and "package_id" not in data_dict


def _organization_ref(data_dict: DataDict) -> str:
    ref = data_dict.get("organization_id")
    if not isinstance(ref, str) or not ref or "\x00" in ref:
        raise tk.ValidationError({"organization_id": ["Missing value"]})
    return ref


# ------------------------------------------------------------------ auth
def upload_urls_auth(context: Context, data_dict: DataDict) -> AuthResult:
    if _is_dcoraid(data_dict):
        return {"success": tk.check_access(
            "package_create", context,
            {"owner_org": _organization_ref(data_dict)})}
    return {"success": tk.check_access(
        "resource_create", context,
        {"package_id": _dataset_ref(data_dict)})}


def _require_api_token(context: Context) -> None:
    """Refuse an HTTP call not authenticated by an API token: URLs are
    never issued to a GET that a page could make with a user's cookie."""
    if not flask.has_request_context() or not (
            flask.request.blueprint == "api"
            or flask.request.path.startswith("/api/")):
        return  # called in-process
    header = tk.config.get("apitoken_header_name") or "Authorization"
    token = flask.request.headers.get(header) or ""
    user = (api_token.get_user_from_token(token, update_access_time=False)
            if token else None)
    if user is None or user.name != context.get("user"):
        raise tk.NotAuthorized(
            "this form of resource_upload_s3_urls needs an API token "
            f"in the {header} header")


def _grant_of(context: Context, data_dict: DataDict
              ) -> tuple[upload_grants.UploadGrant, model.User | None]:
    """The upload named by ``resource_id`` and the acting user, once the
    user may still add resources to its dataset."""
    grant = upload_grants.load(str(data_dict.get("resource_id") or ""))
    if grant is None:
        raise tk.ObjectNotFound("no such upload")
    if grant.dialect == "dcoraid":
        # Issued for an organization, to whoever may create datasets there.
        tk.check_access("package_create", context,
                        {"owner_org": grant.organization_id})
    else:
        tk.check_access("resource_create", context,
                        {"package_id": grant.dataset_id})
    return grant, model.User.get(context.get("user") or "")


def _forced(data_dict: DataDict) -> bool:
    # Explicit only: JSON true or the text "true" (a form post).
    value = data_dict.get("force", False)
    return value is True or (isinstance(value, str)
                             and value.strip().lower() == "true")


# Checked for sysadmins too: CKAN lets them pass an unmarked auth
# function, and a sysadmin must not end another user's upload by mistake.
@tk.auth_sysadmins_check
def upload_abort_auth(context: Context, data_dict: DataDict) -> AuthResult:
    grant, user = _grant_of(context, data_dict)
    if user is not None and user.id == grant.user_id:
        return {"success": True}
    if user is not None and user.sysadmin and _forced(data_dict):
        return {"success": True}
    return {"success": False,
            "msg": "the upload was issued to another user"
            + (" (a sysadmin ends it with force: true)"
               if user is not None and user.sysadmin else "")}


@tk.auth_sysadmins_check
def upload_status_auth(context: Context, data_dict: DataDict) -> AuthResult:
    grant, user = _grant_of(context, data_dict)
    if user is not None and (user.id == grant.user_id or user.sysadmin):
        return {"success": True}
    return {"success": False, "msg": "the upload was issued to another user"}


def get_auth_functions() -> dict[str, Any]:
    return {"resource_upload_s3_urls": upload_urls_auth,
            "resource_upload_s3_abort": upload_abort_auth,
            "resource_upload_s3_status": upload_status_auth}


# --------------------------------------------------------------- actions
def resource_upload_s3_urls(context: Context,
                            data_dict: DataDict) -> dict[str, Any]:
    """Presigned part URLs for uploading a file straight to the store.

    :param package_id: the dataset the resource will belong to
    :param name: the file name
    :param size: the file's size in bytes
    :param resource_id: (optional) the id of an earlier call, to resume:
        only the parts the store does not hold yet get URLs
    :returns: ``resource_id``, ``upload_id``, ``size``, ``part_size``,
        ``expires`` and ``parts`` (``part_number``, ``size``, ``url``; PUT
        each part's bytes to its URL), ``complete_parts``

    DCOR-Aid's dialect instead takes ``organization_id`` and
    ``file_size`` and returns ``upload_urls``, ``complete_url`` and
    ``resource_id`` (:mod:`..operations.dcoraid_upload`).
    """
    if _is_dcoraid(data_dict) or (flask.has_request_context()
                                  and flask.request.method != "POST"):
        # GET and HEAD (which Flask adds to GET routes) carry no CSRF
        # token: only an API token may ask that way.
        _require_api_token(context)
    tk.check_access("resource_upload_s3_urls", context, data_dict)
    if _is_dcoraid(data_dict):
        return _dcoraid_upload_urls(context, data_dict)
    dataset = model.Package.get(_dataset_ref(data_dict))
    if dataset is None or dataset.state == "deleted":
        raise tk.ObjectNotFound("no such dataset")
    request = _request(context, data_dict, dataset)
    resume_id = data_dict.get("resource_id") or None
    if resume_id is not None:
        _check_resumable(resume_id)
    try:
        if resume_id is None:
            return direct_upload.issue(request)
        with upload_grants.claimed(resume_id):
            return direct_upload.issue(request, resume_id)
    except (errors.DcorDepotError, upload_grants.UploadBusy) as exc:
        raise tk.ValidationError({"upload": [str(exc)]}) from exc


def _dcoraid_upload_urls(context: Context,
                         data_dict: DataDict) -> dict[str, Any]:
    org = model.Group.get(_organization_ref(data_dict))
    if org is None or not org.is_organization or org.state != "active":
        raise tk.ObjectNotFound("no such organization")
    if not config.s3_available():
        raise tk.ValidationError({"upload": [
            "direct uploads need the object store, which is not configured"
        ]})
    user = model.User.get(context.get("user") or "")
    if user is None:
        raise tk.NotAuthorized("direct uploads need a user")
    try:
        size = direct_upload.check_size(data_dict.get("file_size"))
        return dcoraid_upload.issue(
            dcoraid_upload.DcoraidRequest(org.id, user.id, size),
            _completion_url)
    except errors.DcorDepotError as exc:
        raise tk.ValidationError({"upload": [str(exc)]}) from exc


def _completion_url(resource_id: str, secret: str) -> str:
    return tk.url_for("dcor_depot_uploads.complete", resource_id=resource_id,
                      secret=secret, qualified=True)


def resource_upload_s3_abort(context: Context,
                             data_dict: DataDict) -> dict[str, Any]:
    """End a direct upload: its parts are freed, its id cannot be used.

    :param resource_id: the id ``resource_upload_s3_urls`` returned
    :param force: (optional, sysadmins) ``true`` to end an upload issued
        to another user; without it a sysadmin is refused like anybody
        else (403, nothing changed)
    """
    tk.check_access("resource_upload_s3_abort", context, data_dict)
    rid = str(data_dict["resource_id"])
    try:
        with upload_grants.claimed(rid):
            # Read under the claim: a concurrent call may have used it.
            grant = upload_grants.load(rid)
            if grant is None:
                raise tk.ObjectNotFound("no such upload")
            return {"aborted": direct_upload.abort(grant)}
    except (errors.DcorDepotError, upload_grants.UploadBusy) as exc:
        raise tk.ValidationError({"upload": [str(exc)]}) from exc


def resource_upload_s3_status(context: Context,
                              data_dict: DataDict) -> dict[str, Any]:
    """What a direct upload is now, read-only: whether it is the caller's
    and whether ``resource_upload_s3_urls`` could continue it. Clients end
    (``resource_upload_s3_abort``) only an upload that is
    ``issued_to_you`` and ``expired`` or not ``resumable``.

    :param resource_id: the id ``resource_upload_s3_urls`` returned
    :returns: ``resource_id``, ``dataset_id``, ``issued_to_you``,
        ``expires`` and ``expired`` (of its current URLs), ``complete``
        (completed, its resource not created yet) and ``resumable`` (not
        complete, and the store still holds its parts)
    """
    tk.check_access("resource_upload_s3_status", context, data_dict)
    grant = upload_grants.load(str(data_dict["resource_id"]))
    if grant is None:
        raise tk.ObjectNotFound("no such upload")
    user = model.User.get(context.get("user") or "")
    complete = bool(grant.completed_etag)
    try:
        in_store = not complete and _store_holds(grant)
    except errors.DcorDepotError as exc:
        raise tk.ValidationError({"upload": [str(exc)]}) from exc
    return {
        "resource_id": grant.resource_id, "dataset_id": grant.dataset_id,
        "issued_to_you": user is not None and user.id == grant.user_id,
        "expires": datetime.datetime.fromtimestamp(
            grant.expires_at, datetime.timezone.utc).isoformat(),
        "expired": grant.expires_at < time.time(),
        "complete": complete, "resumable": in_store,
    }


def _store_holds(grant: upload_grants.UploadGrant) -> bool:
    """Whether the store still has the multipart upload (read-only)."""
    try:
        presigned.stored_parts(grant.bucket, grant.key, grant.upload_id)
    except presigned.UploadGone:
        return False
    return True


def _request(context: Context, data_dict: DataDict,
             dataset: model.Package) -> direct_upload.UploadRequest:
    if not config.s3_available():
        raise tk.ValidationError({"upload": [
            "direct uploads need the object store, which is not configured"
        ]})
    if not dataset.owner_org:
        raise tk.ValidationError({"package_id": [
            "the dataset has no organization, so it has no bucket"]})
    name = data_dict.get("name")
    if not isinstance(name, str) or not name.strip():
        raise tk.ValidationError({"name": ["Missing value"]})
    if "\x00" in name:
        # PostgreSQL stores no NUL: the resource could never be created.
        raise tk.ValidationError({"name": [
            "a file name cannot contain NUL characters"]})
    try:
        size = direct_upload.check_size(data_dict.get("size"))
    except direct_upload.DirectUploadError as exc:
        raise tk.ValidationError({"size": [str(exc)]}) from exc
    user = model.User.get(context.get("user") or "")
    if user is None:
        raise tk.NotAuthorized("direct uploads need a user")
    return direct_upload.UploadRequest(
        dataset_id=dataset.id, owner_org=dataset.owner_org,
        user_id=user.id, name=name.strip(), size=size)


def _check_resumable(resource_id: Any) -> None:
    try:
        layout.check_id(resource_id)
    except ValueError:
        raise tk.ValidationError(
            {"resource_id": ["not a valid resource id"]}) from None
    if model.Resource.get(resource_id) is not None:
        raise tk.ValidationError({"resource_id": [
            "a resource with this id exists; its upload is finished"]})


def create_from_upload(original: Any, context: Context,
                       data_dict: DataDict) -> Any:
    """``resource_create`` with ``url_type: s3_upload``: complete the
    granted upload (checked against what was issued), then create the
    resource with its object recorded."""
    tk.check_access("resource_create", context, data_dict)
    resource_rules.refuse_plugin_fields(data_dict)
    dataset = model.Package.get(_dataset_ref(data_dict))
    user = model.User.get(context.get("user") or "")
    if dataset is None or user is None:
        raise tk.ObjectNotFound("no such dataset")
    rid = str(data_dict.get("id") or "")
    try:
        with upload_grants.claimed(rid):
            grant = direct_upload.granted(rid, dataset.id, user.id,
                                          dataset.owner_org)
            finished = direct_upload.finish(grant)
            owned = finished.owned_fields()
            # The url is CKAN's download URL, named as declared when
            # the URLs were issued (the plugin's, not the client's).
            data = {**data_dict, **owned, "id": rid,
                    "url_type": names.URL_TYPE_S3_UPLOAD, "size": grant.size,
                    "url": downloads.download_url_of(
                        dataset.id, rid,
                        grant.name or str(data_dict.get("name") or ""))}
            with resource_rules.verified_upload(rid, owned):
                created = original(context, data)
            direct_upload.done(grant)
    except (errors.DcorDepotError, upload_grants.UploadBusy) as exc:
        raise tk.ValidationError({"upload": [str(exc)]}) from exc
    registration.follow_moves(dataset.id)
    return created


def get_actions() -> dict[str, Any]:
    urls: Any = resource_upload_s3_urls
    if config.s3_available():
        # DCOR-Aid asks by GET. Without a store the action stays POST-only:
        # CKAN's "Bad request" to a GET is what makes DCOR-Aid fall back
        # to uploading through CKAN.
        urls = tk.side_effect_free(functools.wraps(
            resource_upload_s3_urls)(_call_urls))
    return {"resource_upload_s3_urls": urls,
            "resource_upload_s3_abort": resource_upload_s3_abort,
            "resource_upload_s3_status": resource_upload_s3_status}


def _call_urls(context: Context, data_dict: DataDict) -> dict[str, Any]:
    return resource_upload_s3_urls(context, data_dict)
