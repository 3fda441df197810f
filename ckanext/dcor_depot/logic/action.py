"""The plugin's actions: chained CKAN actions and its own.

Every action calls ``check_access`` before it looks at anything, so a
refused call changes nothing; the plugin's own actions then validate
their input with a schema (:mod:`.schema`).

- Chained ``package_create``/``package_update`` apply the rules of
  plugin-owned fields (:mod:`.resource_rules`) and register direct
  uploads (:mod:`.registration`); ``resource_create`` of
  ``url_type: s3_upload`` completes a granted upload first.
- The bulk and organization actions only note the datasets that CKAN
  2.11 changes with plain SQL (invisible to the session's change
  tracking); noting a dataset never opens anything its committed state
  does not allow. None of these touches the object store: tags follow
  the database at its commits (:mod:`.transactions`).
- ``resource_upload_s3_urls``, ``resource_upload_s3_abort`` and
  ``resource_upload_s3_status``: direct uploads, in the plugin's and in
  DCOR-Aid's dialect; ``dcor_depot_usage``: storage per organization.
"""
from __future__ import annotations

import datetime
import functools
import time
from typing import Any

import ckan.model as model
import ckan.plugins.toolkit as tk
import flask
from ckan.types import Context, DataDict

from ckanext.dcor_depot import config, errors, names
from ckanext.dcor_depot.logic import (
    auth,
    download,
    registration,
    resource_rules,
    schema,
    transactions,
)
from ckanext.dcor_depot.operations import dcoraid_upload, direct_upload
from ckanext.dcor_depot.operations.audit import run as audit_run
from ckanext.dcor_depot.records import upload_grants
from ckanext.dcor_depot.storage import presigned


# ------------------------------------------------------- chained actions
@tk.chained_action
def package_create(original: Any, context: Context,
                   data_dict: DataDict) -> Any:
    tk.check_access("package_create", context, data_dict)
    resource_rules.check_new_dataset(context, data_dict)
    transactions.note_chosen_ids(resource_rules.chosen_ids(data_dict))
    return original(context, data_dict)


@tk.chained_action
def package_update(original: Any, context: Context,
                   data_dict: DataDict) -> Any:
    ref = data_dict.get("id") or data_dict.get("name")
    pkg = model.Package.get(ref) if ref else None
    if pkg is None:
        return original(context, data_dict)  # CKAN's own error
    tk.check_access("package_update", dict(context, package=pkg),
                    dict(data_dict, id=pkg.id))
    with registration.registered_uploads(context, pkg, data_dict):
        resource_rules.check_dataset_update(context, pkg, data_dict)
        transactions.note_chosen_ids(resource_rules.chosen_ids(data_dict))
        return original(context, data_dict)


def _listed_datasets(data_dict: DataDict) -> list[str]:
    """Every listed dataset; at the commit only those that belong to
    ``org_id`` then (the ones CKAN changed) count."""
    datasets = data_dict.get("datasets") or []
    if not isinstance(datasets, list):
        return []
    return [str(d) for d in datasets]


def _bulk(name: str) -> Any:
    @tk.chained_action
    def action(original: Any, context: Context, data_dict: DataDict) -> Any:
        tk.check_access(name, context, data_dict)
        transactions.touch_datasets(
            _listed_datasets(data_dict),
            required_org=str(data_dict.get("org_id") or ""))
        return original(context, data_dict)
    action.__name__ = name
    return action


def _organization_removal(name: str) -> Any:
    @tk.chained_action
    def action(original: Any, context: Context, data_dict: DataDict) -> Any:
        tk.check_access(name, context, data_dict)
        group = model.Group.get(data_dict.get("id") or "")
        if group is not None and group.is_organization:
            rows = model.Session.query(model.Package.id).filter(
                model.Package.owner_org == group.id)
            transactions.touch_datasets([row[0] for row in rows])
        return original(context, data_dict)
    action.__name__ = name
    return action


@tk.chained_action
def resource_create(original: Any, context: Context,
                    data_dict: DataDict) -> Any:
    # Before the access check, whose queries PostgreSQL would refuse.
    resource_rules.refuse_nul(data_dict)
    if data_dict.get("url_type") == names.URL_TYPE_S3_UPLOAD:
        return _create_from_upload(original, context, data_dict)
    return original(context, data_dict)


# ------------------------------------------------------- direct uploads
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
    if auth.is_dcoraid(data_dict) or (flask.has_request_context()
                                      and flask.request.method != "POST"):
        # GET and HEAD (which Flask adds to GET routes) carry no CSRF
        # token: only an API token may ask that way.
        auth.require_api_token(context)
    tk.check_access("resource_upload_s3_urls", context, data_dict)
    if auth.is_dcoraid(data_dict):
        return _dcoraid_upload_urls(context, data_dict)
    dataset = model.Package.get(auth.dataset_ref(data_dict))
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
    except errors.DcorDepotError as exc:
        raise tk.ValidationError({"upload": [str(exc)]}) from exc


def _require_store() -> None:
    if not config.s3_available():
        raise tk.ValidationError({"upload": [
            "direct uploads need the object store, which is not configured"
        ]})


def _user(context: Context) -> model.User:
    user = model.User.get(context.get("user") or "")
    if user is None:
        raise tk.NotAuthorized("direct uploads need a user")
    return user


def _dcoraid_upload_urls(context: Context,
                         data_dict: DataDict) -> dict[str, Any]:
    org = model.Group.get(auth.organization_ref(data_dict))
    if org is None or not org.is_organization or org.state != "active":
        raise tk.ObjectNotFound("no such organization")
    _require_store()
    user = _user(context)
    try:
        data = schema.validated(data_dict, schema.dcoraid_upload_urls(),
                                context)
    except tk.ValidationError as exc:
        # One key, as ever: DCOR-Aid's dialect reports under "upload".
        raise tk.ValidationError({"upload": [
            message for messages in exc.error_dict.values()
            for message in messages]}) from exc
    try:
        return dcoraid_upload.issue(
            dcoraid_upload.DcoraidRequest(org.id, user.id, data["file_size"]),
            _completion_url)
    except errors.DcorDepotError as exc:
        raise tk.ValidationError({"upload": [str(exc)]}) from exc


def _completion_url(resource_id: str, secret: str) -> str:
    return tk.url_for("dcor_depot_uploads.complete", resource_id=resource_id,
                      secret=secret, qualified=True)


def _request(context: Context, data_dict: DataDict,
             dataset: model.Package) -> direct_upload.UploadRequest:
    _require_store()
    if not dataset.owner_org:
        raise tk.ValidationError({"package_id": [
            "the dataset has no organization, so it has no bucket"]})
    data = schema.validated(data_dict, schema.upload_urls(), context)
    user = _user(context)
    return direct_upload.UploadRequest(
        dataset_id=dataset.id, owner_org=dataset.owner_org,
        user_id=user.id, name=data["name"], size=data["size"])


def _check_resumable(resource_id: Any) -> None:
    if model.Resource.get(resource_id) is not None:
        raise tk.ValidationError({"resource_id": [
            "a resource with this id exists; its upload is finished"]})


def resource_upload_s3_abort(context: Context,
                             data_dict: DataDict) -> dict[str, Any]:
    """End a direct upload: its parts are freed, its id cannot be used.

    :param resource_id: the id ``resource_upload_s3_urls`` returned
    :param force: (optional, sysadmins) ``true`` to end an upload issued
        to another user; without it a sysadmin is refused like anybody
        else (403, nothing changed)
    """
    tk.check_access("resource_upload_s3_abort", context, data_dict)
    rid = schema.validated(data_dict, schema.upload_ref(),
                           context)["resource_id"]
    try:
        with upload_grants.claimed(rid):
            # Read under the claim: a concurrent call may have used it.
            grant = upload_grants.load(rid)
            if grant is None:
                raise tk.ObjectNotFound("no such upload")
            return {"aborted": direct_upload.abort(grant)}
    except errors.DcorDepotError as exc:
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
    rid = schema.validated(data_dict, schema.upload_ref(),
                           context)["resource_id"]
    grant = upload_grants.load(rid)
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
    except errors.NotFound:
        return False
    return True


def _create_from_upload(original: Any, context: Context,
                        data_dict: DataDict) -> Any:
    """``resource_create`` with ``url_type: s3_upload``: complete the
    granted upload (checked against what was issued), then create the
    resource with its object recorded."""
    tk.check_access("resource_create", context, data_dict)
    resource_rules.refuse_plugin_fields(data_dict)
    dataset = model.Package.get(auth.dataset_ref(data_dict))
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
                    "url": download.download_url_of(
                        dataset.id, rid,
                        grant.name or str(data_dict.get("name") or ""))}
            with resource_rules.verified_upload(rid, owned):
                created = original(context, data)
            direct_upload.done(grant)
    except errors.DcorDepotError as exc:
        raise tk.ValidationError({"upload": [str(exc)]}) from exc
    registration.follow_moves(dataset.id)
    return created


# ----------------------------------------------------------------- usage
# Not side-effect free (no GET): each call lists every bucket and walks
# the depots, which a cross-site GET must not be able to start.
def dcor_depot_usage(context: Context, data_dict: DataDict
                     ) -> dict[str, Any]:
    """Storage used per organization, read now from the store and disks.

    :param organization: (optional) the name of an organization, or a
        list of names; default: every organization
    :returns: ``{"organizations": [...]}``, per organization its name,
        ``objects`` and ``object_bytes`` by artifact kind (resource,
        condensed, preview, other), ``total_objects``,
        ``total_object_bytes``, ``block_bytes``, ``multipart_uploads``,
        ``multipart_bytes``, ``orphan_objects`` and ``orphan_bytes``
    """
    tk.check_access("dcor_depot_usage", context, data_dict)
    wanted = schema.organization_names(data_dict.get("organization"))
    try:
        rows = audit_run.measure_usage(tuple(wanted))
    except ValueError as exc:
        raise tk.ValidationError({"organization": [str(exc)]}) from exc
    except errors.StoreError as exc:
        raise tk.ValidationError({"store": [str(exc)]}) from exc
    return {"organizations": rows}


def get_actions() -> dict[str, Any]:
    urls: Any = resource_upload_s3_urls
    if config.s3_available():
        # DCOR-Aid asks by GET. Without a store the action stays POST-only:
        # CKAN's "Bad request" to a GET is what makes DCOR-Aid fall back
        # to uploading through CKAN.
        urls = tk.side_effect_free(functools.wraps(
            resource_upload_s3_urls)(_call_urls))
    actions: dict[str, Any] = {
        "package_create": package_create,
        "package_update": package_update,
        "resource_create": resource_create,
        "resource_upload_s3_urls": urls,
        "resource_upload_s3_abort": resource_upload_s3_abort,
        "resource_upload_s3_status": resource_upload_s3_status,
        "dcor_depot_usage": dcor_depot_usage,
    }
    for name in ("bulk_update_private", "bulk_update_public",
                 "bulk_update_delete"):
        actions[name] = _bulk(name)
    for name in ("organization_delete", "organization_purge"):
        actions[name] = _organization_removal(name)
    return actions


def _call_urls(context: Context, data_dict: DataDict) -> dict[str, Any]:
    return resource_upload_s3_urls(context, data_dict)
