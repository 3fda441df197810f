"""Validators for this plugin's config options.

CKAN runs them on start-up (declared in ``config_declaration.yaml``); a
value they reject stops CKAN with a message naming the option.
"""
from __future__ import annotations

import os
import re
import string
from typing import Any
from urllib.parse import urlsplit

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
    """An absolute filesystem path without ``..`` (normalised)."""
    text = str(value).strip()
    if not os.path.isabs(text):
        raise tk.Invalid(f"expected an absolute path, got {value!r}")
    if any(ord(char) < 32 or ord(char) == 127 for char in text):
        raise tk.Invalid(f"the path {value!r} contains control characters")
    # Collapsing "a/link/.." lexically gives another folder than the
    # system finds when "link" is a symlink: refused, not guessed.
    if ".." in text.split("/"):
        raise tk.Invalid(f"the path {value!r} contains '..': write the "
                         "folder itself")
    return os.path.normpath(text)


def dcor_depot_folder_name(value: Any) -> str:
    """A single folder name (no separators or control characters, not
    '.' or '..')."""
    text = str(value).strip()
    if ("/" in text or text in (".", "..")
            or any(ord(char) < 32 or ord(char) == 127 for char in text)):
        raise tk.Invalid(f"expected a plain folder name, got {value!r}")
    return text


def dcor_depot_http_url(value: Any) -> str:
    """An http(s) URL with a host, and nothing the plugin would copy
    into other URLs by mistake: no credentials (they would end up in
    every ``s3_url`` users see), query, fragment or blanks."""
    text = str(value).strip()
    parsed = urlsplit(text)
    # First: every later message repeats the value. A secret may hold
    # "/", "?" or "#", so the whole text is searched, not the netloc.
    if "@" in text:
        raise tk.Invalid(f"the URL ***@{text.rpartition('@')[2]} carries "
                         "credentials: remove them (the object store's go "
                         "in access_key_id and secret_access_key)")
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise tk.Invalid(
            f"expected an http:// or https:// URL, got {value!r}")
    if parsed.query or parsed.fragment or "?" in text or "#" in text:
        raise tk.Invalid(f"expected a URL without query or fragment, got "
                         f"{value!r}")
    if any(char.isspace() or ord(char) < 32 for char in text):
        raise tk.Invalid(f"expected a URL without blanks or control "
                         f"characters, got {value!r}")
    try:
        parsed.port  # noqa: B018 - raises for a port that is no number
    except ValueError:
        raise tk.Invalid(f"the port of {value!r} is not a number") from None
    return text.rstrip("/")


#: Characters S3 allows in bucket names (lowercase, digits, '.', '-').
_BUCKET_TEXT = re.compile(r"[a-z0-9.-]*")
#: Length of the organization id (a CKAN UUID) in a bucket name, and the
#: longest bucket name S3 accepts.
_ORG_ID_LENGTH = 36
_MAX_BUCKET = 63


def dcor_depot_bucket_template(value: Any) -> str:
    """A bucket name template using exactly the field {organization_id},
    once, as it is (no conversion or format), with only characters S3
    allows around it, short enough for a bucket name."""
    text = str(value).strip()
    try:
        parts = list(string.Formatter().parse(text))
    except ValueError as exc:
        raise tk.Invalid(f"malformed template {value!r}: {exc}") from exc
    fields = [(name, spec, conversion) for _, name, spec, conversion in parts
              if name is not None]
    if [name for name, _, _ in fields] != ["organization_id"]:
        raise tk.Invalid(
            "the bucket name template must contain {organization_id} once "
            f"and no other field, got {value!r}")
    if fields[0][1] or fields[0][2]:
        raise tk.Invalid("write {organization_id} without a conversion or "
                         f"format, got {value!r}")
    literal = "".join(piece for piece, _, _, _ in parts)
    if not _BUCKET_TEXT.fullmatch(literal):
        raise tk.Invalid(
            "a bucket name has only lowercase letters, digits, '.' and "
            f"'-'; the template {value!r} has other characters")
    sample = text.format(organization_id="0" * _ORG_ID_LENGTH)
    if not sample[0].isalnum() or not sample[-1].isalnum() \
            or ".." in sample:
        raise tk.Invalid(
            f"the template {value!r} makes bucket names S3 refuses: they "
            "start and end with a letter or digit and have no '..'")
    if len(literal) + _ORG_ID_LENGTH > _MAX_BUCKET:
        raise tk.Invalid(
            f"the template {value!r} makes bucket names longer than "
            f"{_MAX_BUCKET} characters (an organization id has "
            f"{_ORG_ID_LENGTH})")
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
