"""What the plugin's own actions accept: CKAN schemas.

Each action asks ``check_access`` first and then validates its input
with one of these (``tk.navl_validate``), so a refused call is never
told what is wrong with its input. A failed check answers CKAN's 409
with the field's message. The dataset or organization an upload is for
is checked by :mod:`.auth` (``dataset_ref``, ``organization_ref``),
which needs it before the access check; ``force`` is read only there.
"""
from __future__ import annotations

from typing import Any

import ckan.plugins.toolkit as tk
from ckan.types import Context, Schema

from ckanext.dcor_depot import errors
from ckanext.dcor_depot.operations import direct_upload
from ckanext.dcor_depot.storage import layout


def no_nul(value: Any) -> Any:
    # PostgreSQL stores no NUL: a query with one would fail (500).
    if isinstance(value, str) and "\x00" in value:
        raise tk.Invalid("cannot contain NUL characters")
    return value


def file_name(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise tk.Invalid("Missing value")
    if "\x00" in value:
        raise tk.Invalid("a file name cannot contain NUL characters")
    return value.strip()


def byte_size(value: Any) -> int:
    """A declared file size within what the site accepts."""
    try:
        return direct_upload.check_size(
            None if value is tk.missing else value)
    except errors.SourceError as exc:
        raise tk.Invalid(str(exc)) from None


def resource_id(value: Any) -> str:
    try:
        return layout.check_id(value)
    except ValueError:
        raise tk.Invalid("not a valid resource id") from None


def explicit_true(value: Any) -> bool:
    # Explicit only: JSON true or the text "true" (a form post).
    return value is True or (isinstance(value, str)
                             and value.strip().lower() == "true")


def name_list(value: Any) -> list[str]:
    names = [value] if isinstance(value, str) else value
    if not isinstance(names, list) or not all(isinstance(name, str)
                                              for name in names):
        raise tk.Invalid("a name or a list of names")
    return names


def organization_names(value: Any) -> list[str]:
    """``dcor_depot_usage``'s ``organization``: nothing (every
    organization), a name or a list of names. Checked before CKAN's
    flattening, which would drop a list of objects unseen."""
    try:
        return name_list(value or [])
    except tk.Invalid as exc:
        raise tk.ValidationError({"organization": [exc.error]}) from None


def _validators(*names: str) -> list[Any]:
    return [tk.get_validator(name) for name in names]


def upload_urls() -> Schema:
    """``resource_upload_s3_urls`` in the plugin's dialect."""
    return {"name": [file_name],
            "size": [byte_size],
            "resource_id": [*_validators("ignore_empty"), resource_id]}


def dcoraid_upload_urls() -> Schema:
    """``resource_upload_s3_urls`` in DCOR-Aid's dialect."""
    return {"file_size": [byte_size]}


def upload_ref() -> Schema:
    """``resource_upload_s3_abort`` and ``resource_upload_s3_status``."""
    return {"resource_id": [*_validators("not_empty", "unicode_safe"),
                            no_nul]}


def validated(data_dict: dict[str, Any], schema: Schema,
              context: Context) -> dict[str, Any]:
    """The validated data, or CKAN's ValidationError (409)."""
    data, problems = tk.navl_validate(data_dict, schema, context)
    if problems:
        raise tk.ValidationError(problems)
    return data
