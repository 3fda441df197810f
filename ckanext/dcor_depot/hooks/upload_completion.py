"""The ``complete_url`` of DCOR-Aid's uploads: S3's completion, answered
by the plugin.

DCOR-Aid POSTs a CompleteMultipartUpload body there with no credentials
(the URL's secret is the credential), reads the object's ETag from the
``ETag`` header, retries on failure and looks for ``<Error>`` in the
body. So the answer looks like S3's, and a repeated request answers as
the first one did.
"""
from __future__ import annotations

import logging
from typing import Any
from xml.sax.saxutils import escape

from flask import Blueprint, Response, request

from ckanext.dcor_depot import errors
from ckanext.dcor_depot.operations import dcoraid_upload
from ckanext.dcor_depot.records import upload_grants

log = logging.getLogger(__name__)

blueprint = Blueprint("dcor_depot_uploads", __name__)

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
    except dcoraid_upload.CompletionRefused as exc:
        return _xml_error(exc.code, str(exc))
    except upload_grants.UploadBusy as exc:
        return _xml_error("SlowDown", str(exc))
    except errors.SourceError as exc:
        return _xml_error("InvalidPart", str(exc))
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


blueprint.add_url_rule("/dcor-depot/uploads/<resource_id>/complete/<secret>",
                       view_func=complete, methods=["POST"])


def exempt_from_csrf() -> None:
    """No cookie authenticates this view (its URL's secret does), so
    CSRF protection has nothing to protect; DCOR-Aid sends no token."""
    from ckan.config.middleware.flask_app import csrf
    csrf.exempt(f"{complete.__module__}.{complete.__name__}")
