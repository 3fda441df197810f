"""Who may call the plugin's actions: CKAN auth functions.

``resource_upload_s3_urls`` is allowed to whoever may create resources in
the dataset (``resource_create``), or in DCOR-Aid's dialect datasets in
the organization (``package_create``); ``resource_upload_s3_abort`` to
the user the upload was issued to while they still may, and to a
sysadmin for another user's upload only with ``force: true``;
``resource_upload_s3_status`` to that user and sysadmins;
``dcor_depot_usage`` to sysadmins only.
"""
from __future__ import annotations

from typing import Any

import ckan.model as model
import ckan.plugins.toolkit as tk
import flask
from ckan.lib import api_token
from ckan.types import AuthResult, Context, DataDict

from ckanext.dcor_depot.logic import schema
from ckanext.dcor_depot.records import upload_grants


def is_dcoraid(data_dict: DataDict) -> bool:
    """DCOR-Aid's dialect names an organization, not a dataset."""
    return "organization_id" in data_dict and "package_id" not in data_dict


def dataset_ref(data_dict: DataDict) -> str:
    ref = data_dict.get("package_id")
    if not isinstance(ref, str) or not ref:
        raise tk.ValidationError({"package_id": ["Missing value"]})
    if "\x00" in ref:
        # Before any query: PostgreSQL refuses NUL (500).
        raise tk.ValidationError(
            {"package_id": ["cannot contain NUL characters"]})
    return ref


def organization_ref(data_dict: DataDict) -> str:
    ref = data_dict.get("organization_id")
    if not isinstance(ref, str) or not ref or "\x00" in ref:
        raise tk.ValidationError({"organization_id": ["Missing value"]})
    return ref


def upload_urls(context: Context, data_dict: DataDict) -> AuthResult:
    if is_dcoraid(data_dict):
        return {"success": tk.check_access(
            "package_create", context,
            {"owner_org": organization_ref(data_dict)})}
    return {"success": tk.check_access(
        "resource_create", context,
        {"package_id": dataset_ref(data_dict)})}


def require_api_token(context: Context) -> None:
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


# Checked for sysadmins too: CKAN lets them pass an unmarked auth
# function, and a sysadmin must not end another user's upload by mistake.
@tk.auth_sysadmins_check
def upload_abort(context: Context, data_dict: DataDict) -> AuthResult:
    grant, user = _grant_of(context, data_dict)
    if user is not None and user.id == grant.user_id:
        return {"success": True}
    if (user is not None and user.sysadmin
            and schema.explicit_true(data_dict.get("force", False))):
        return {"success": True}
    return {"success": False,
            "msg": "the upload was issued to another user"
            + (" (a sysadmin ends it with force: true)"
               if user is not None and user.sysadmin else "")}


@tk.auth_sysadmins_check
def upload_status(context: Context, data_dict: DataDict) -> AuthResult:
    grant, user = _grant_of(context, data_dict)
    if user is not None and (user.id == grant.user_id or user.sysadmin):
        return {"success": True}
    return {"success": False, "msg": "the upload was issued to another user"}


def usage(context: Context, data_dict: DataDict) -> AuthResult:
    # Sysadmins pass every auth function without calling it.
    return {"success": False,
            "msg": tk._("Only sysadmins may see the storage usage")}


def get_auth_functions() -> dict[str, Any]:
    return {"resource_upload_s3_urls": upload_urls,
            "resource_upload_s3_abort": upload_abort,
            "resource_upload_s3_status": upload_status,
            "dcor_depot_usage": usage}
