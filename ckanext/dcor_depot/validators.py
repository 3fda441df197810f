"""Validators for this plugin's config options.

CKAN runs them on start-up (declared in ``config_declaration.yaml``); a
value they reject stops CKAN with a message naming the option.
"""
from __future__ import annotations

import os
import string
from typing import Any
from urllib.parse import urlparse

import ckan.plugins.toolkit as tk

__all__ = [
    "dcor_depot_absolute_path",
    "dcor_depot_bucket_template",
    "dcor_depot_folder_name",
    "dcor_depot_http_url",
    "dcor_depot_part_size",
    "dcor_depot_positive_int",
    "dcor_depot_upload_max_size",
    "dcor_depot_url_lifetime",
    "dcor_depot_strict_bool",
]

#: Part sizes S3 accepts (all parts but the last).
_MIN_PART = 5 * 2**20
_MAX_PART = 5 * 2**30

_TRUE = {"true", "yes", "on", "1"}
_FALSE = {"false", "no", "off", "0"}


def dcor_depot_strict_bool(value: Any) -> bool:
    """A boolean written as true/false (yes/no, on/off, 1/0)."""
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise tk.Invalid(f"expected true or false, got {value!r}")


def dcor_depot_absolute_path(value: Any) -> str:
    """An absolute filesystem path."""
    text = str(value).strip()
    if not os.path.isabs(text):
        raise tk.Invalid(f"expected an absolute path, got {value!r}")
    return os.path.normpath(text)


def dcor_depot_folder_name(value: Any) -> str:
    """A single folder name (no separators, not '.' or '..')."""
    text = str(value).strip()
    if "/" in text or text in (".", "..") or "\0" in text:
        raise tk.Invalid(f"expected a plain folder name, got {value!r}")
    return text


def dcor_depot_http_url(value: Any) -> str:
    """An http(s) URL with a host."""
    text = str(value).strip()
    parsed = urlparse(text)
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise tk.Invalid(
            f"expected an http:// or https:// URL, got {value!r}")
    return text.rstrip("/")


def dcor_depot_bucket_template(value: Any) -> str:
    """A bucket name template using exactly the field {organization_id}."""
    text = str(value).strip()
    try:
        fields = {name for _, name, _, _ in string.Formatter().parse(text)
                  if name is not None}
    except ValueError as exc:
        raise tk.Invalid(f"malformed template {value!r}: {exc}") from exc
    if fields != {"organization_id"}:
        raise tk.Invalid(
            "the bucket name template must contain {organization_id} and "
            f"no other field, got {value!r}")
    return text


def dcor_depot_positive_int(value: Any) -> int:
    """A whole number greater than zero."""
    try:
        number = int(str(value).strip())
    except ValueError:
        raise tk.Invalid(f"expected a whole number, got {value!r}") from None
    if number <= 0:
        raise tk.Invalid(f"expected a number greater than 0, got {value!r}")
    return number


def dcor_depot_part_size(value: Any) -> int:
    """A multipart part size S3 accepts: 5 MiB to 5 GiB."""
    number = dcor_depot_positive_int(value)
    if not _MIN_PART <= number <= _MAX_PART:
        raise tk.Invalid(f"expected a part size from {_MIN_PART} to "
                         f"{_MAX_PART} bytes, got {value!r}")
    return number


#: Longest validity of a SigV4 presigned URL (7 days).
_MAX_URL_LIFETIME = 7 * 24 * 3600
#: Largest object S3 stores (5 TiB).
_MAX_OBJECT = 5 * 2**40


def dcor_depot_url_lifetime(value: Any) -> int:
    """Seconds a presigned URL is valid: 1 to 604800 (SigV4's limit)."""
    number = dcor_depot_positive_int(value)
    if number > _MAX_URL_LIFETIME:
        raise tk.Invalid(f"expected at most {_MAX_URL_LIFETIME} seconds "
                         f"(7 days), got {value!r}")
    return number


def dcor_depot_upload_max_size(value: Any) -> int:
    """The largest direct upload: up to 5 TiB (S3's largest object)."""
    number = dcor_depot_positive_int(value)
    if number > _MAX_OBJECT:
        raise tk.Invalid(f"expected at most {_MAX_OBJECT} bytes (5 TiB), "
                         f"got {value!r}")
    return number
