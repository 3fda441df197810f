"""A small client for direct uploads to a DCOR site (``requests`` only).

It imports nothing of CKAN or of the rest of this plugin, so it works
wherever ``requests`` is installed::

    from ckanext.dcor_depot.client import upload_file

    result = upload_file("https://dcor.example.org", token, "my-dataset",
                         "cells.rtdc",
                         resource_fields={"description": "Run 3"})
    print(result.resource_id, result.sha256, result.verified)

or from a shell (the token may also be in ``DCOR_API_TOKEN``)::

    python -m ckanext.dcor_depot.client upload \\
        --site https://dcor.example.org --dataset my-dataset cells.rtdc

Parts go straight to the object store, several at once; failed parts
are sent again; an interrupted upload of the same, unchanged file is
resumed by the next run; at the end the SHA256 the site records is
compared with the file's.
"""
from __future__ import annotations

from ckanext.dcor_depot.client.api import ClientError
from ckanext.dcor_depot.client.progress import ProgressCallback, ProgressLine
from ckanext.dcor_depot.client.state import default_state_dir
from ckanext.dcor_depot.client.upload import (
    UploadResult,
    VerificationError,
    upload_file,
    verify_sha256,
)

__all__ = [
    "ClientError",
    "ProgressCallback",
    "ProgressLine",
    "UploadResult",
    "VerificationError",
    "default_state_dir",
    "upload_file",
    "verify_sha256",
]
