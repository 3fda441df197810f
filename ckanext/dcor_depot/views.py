"""The plugin's pages and URLs (Flask blueprints).

- **Downloads** (``/dataset/<id>/resource/<rid>/download[/<name>]``,
  registered before CKAN's own): a file only in the object store is
  answered with a 302 to a fresh presigned URL, once CKAN's
  ``resource_show`` auth allowed it; files on block storage are handed
  to CKAN's own view (:mod:`.logic.download`).
- **The operator page** (``/ckan-admin/dcor-depot``): sysadmins only
  (CKAN's ``sysadmin`` auth function, asked before anything is read;
  everyone else gets 403, as on CKAN's own admin pages). It shows the
  last audit, each organization's storage from that audit's report and
  the resource counts by state read from the database now.
- **The complete_url of DCOR-Aid's uploads**
  (``/dcor-depot/uploads/<rid>/complete/<secret>``): DCOR-Aid POSTs a
  CompleteMultipartUpload body there with no credentials (the URL's
  secret is the credential), reads the object's ETag from the ``ETag``
  header, retries on failure and looks for ``<Error>`` in the body. So
  the answer looks like S3's, and a repeated request answers as the
  first one did.
"""
from __future__ import annotations

import logging
from typing import Any
from xml.sax.saxutils import escape

import ckan.model as model
import ckan.plugins.toolkit as tk
from ckan.lib import signals
from ckan.views import resource as ckan_resource_views
from flask import Blueprint, Response, request

from ckanext.dcor_depot import errors, names
from ckanext.dcor_depot.logic import download as downloads
from ckanext.dcor_depot.operations import dcoraid_upload, operator_overview
from ckanext.dcor_depot.operations.audit.usage import human_bytes
from ckanext.dcor_depot.records import upload_grants

log = logging.getLogger(__name__)

download_blueprint = Blueprint("dcor_depot_download", __name__)
admin_blueprint = Blueprint("dcor_depot_admin", __name__,
                            url_prefix="/ckan-admin")
uploads_blueprint = Blueprint("dcor_depot_uploads", __name__)


def _context() -> dict[str, Any]:
    return {"model": model, "session": model.Session,
            "user": tk.current_user.name, "auth_user_obj": tk.current_user}


# ------------------------------------------------------------ downloads
def download(id: str, resource_id: str,  # noqa: A002 - CKAN's route
             filename: str | None = None) -> Any:
    try:
        resource = downloads.readable_resource(id, resource_id, _context())
    except tk.ObjectNotFound:
        return tk.abort(404, tk._("Resource not found"))
    except tk.NotAuthorized:
        return tk.abort(403, tk._("Not authorized to download resource"))
    location = downloads.store_location(resource)
    if location is None:
        if resource.get("url_type") == names.URL_TYPE_S3_UPLOAD \
                or downloads.foreign_upload(resource):
            return tk.abort(404, tk._("No download is available"))
        return ckan_resource_views.download("dataset", id, resource_id,
                                            filename)
    url = downloads.presigned_url(resource, location)
    signals.resource_download.send(resource_id)
    return private_redirect(url)


def private_redirect(url: str) -> Any:
    """302 to a URL that carries its own credentials: never cached by a
    shared cache, never passed on as a referrer."""
    tk.request.environ["__no_cache__"] = True  # CKAN: Cache-Control private
    response = tk.redirect_to(url)
    response.cache_control.no_store = True
    response.headers["Referrer-Policy"] = "no-referrer"
    return response


# Registered before CKAN's own blueprints, these rules take the download
# URLs; the view hands every file still on block storage back to CKAN.
download_blueprint.add_url_rule(
    "/dataset/<id>/resource/<resource_id>/download", view_func=download)
download_blueprint.add_url_rule(
    "/dataset/<id>/resource/<resource_id>/download/<filename>",
    view_func=download)


# -------------------------------------------------------- operator page
#: The command that writes the report the page shows.
AUDIT_COMMAND = "ckan dcor-depot-audit"


def require_sysadmin() -> None:
    """403 unless the user is a sysadmin (anonymous visitors too)."""
    try:
        tk.check_access("sysadmin", _context())
    except tk.NotAuthorized:
        tk.abort(403, tk._("Need to be system administrator to administer"))


def operator_page() -> Any:
    require_sysadmin()
    shown = operator_overview.overview()
    rotation = operator_overview.kept_rotation()
    return tk.render("dcor_depot/admin.html", extra_vars={
        "overview": shown, "human_bytes": human_bytes,
        "rotation": rotation,
        "shares": operator_overview.rotation_rows(rotation),
        "audit_command": AUDIT_COMMAND,
        "max_findings": operator_overview.MAX_FINDINGS_SHOWN})


admin_blueprint.add_url_rule("/dcor-depot", endpoint="index",
                             view_func=operator_page)


# ------------------------------------------- DCOR-Aid's completion URL
#: A body listing 10,000 parts is about 0.8 MB.
MAX_BODY = 2 * 1024 * 1024
#: HTTP status of each S3 error code answered here.
_STATUS = {"NoSuchUpload": 404, "InvalidPart": 400, "MalformedXML": 400,
           "EntityTooLarge": 400, "SlowDown": 503, "InternalError": 500}


def _xml_error(code: str, message: str) -> Response:
    body = ('<?xml version="1.0" encoding="UTF-8"?>\n'
            f"<Error><Code>{code}</Code>"
            f"<Message>{escape(message)}</Message></Error>")
    return Response(body, status=_STATUS.get(code, 400),
                    content_type="application/xml")


def complete(resource_id: str, secret: str) -> Any:
    """Complete the upload of ``resource_id`` (``secret`` from its URL)."""
    try:
        # The secret first: nobody else gets the body read.
        grant = dcoraid_upload.grant_for_completion(resource_id, secret)
        if (request.content_length or 0) > MAX_BODY:
            return _xml_error("EntityTooLarge", "the body is too large")
        raw = request.stream.read(MAX_BODY + 1)
        if len(raw) > MAX_BODY:
            return _xml_error("EntityTooLarge", "the body is too large")
        etags = dcoraid_upload.listed_parts(raw.decode("utf-8", "replace"))
        with upload_grants.claimed(resource_id):
            # Read again under the claim: a concurrent request may have
            # completed it.
            grant = dcoraid_upload.grant_for_completion(resource_id, secret)
            etag = dcoraid_upload.complete_for_client(grant, etags)
    except errors.Busy as exc:
        return _xml_error("SlowDown", str(exc))
    except errors.SourceError as exc:
        # The code is S3's answer where the completion chose one.
        return _xml_error(exc.code or "InvalidPart", str(exc))
    except errors.DcorDepotError as exc:
        log.warning("Could not complete upload %s: %s", resource_id, exc)
        return _xml_error("InternalError", "the store could not complete "
                          "the upload; try again")
    body = ('<?xml version="1.0" encoding="UTF-8"?>\n'
            "<CompleteMultipartUploadResult>"
            f"<Key>{escape(grant.key)}</Key>"
            f"<ETag>&quot;{etag}&quot;</ETag>"
            "</CompleteMultipartUploadResult>")
    response = Response(body, status=200, content_type="application/xml")
    response.headers["ETag"] = f'"{etag}"'
    return response


uploads_blueprint.add_url_rule(
    "/dcor-depot/uploads/<resource_id>/complete/<secret>",
    view_func=complete, methods=["POST"])


def exempt_from_csrf() -> None:
    """No cookie authenticates the completion URL (its secret does), so
    CSRF protection has nothing to protect; DCOR-Aid sends no token."""
    from ckan.config.middleware.flask_app import csrf
    csrf.exempt(f"{complete.__module__}.{complete.__name__}")


def get_blueprints() -> list[Blueprint]:
    exempt_from_csrf()
    return [download_blueprint, admin_blueprint, uploads_blueprint]
