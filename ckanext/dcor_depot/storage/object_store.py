"""The S3-compatible object store: client, buckets, access tags, URLs.

Buckets hold one organization's objects each. Their policy lets anyone read
objects tagged ``public=true`` and nothing else, so public/private is
enforced by the store itself; this module only sets and removes the tag.

Boto's errors become the plugin's in one place: :func:`store_error` (and
:func:`translated` for a block of requests) makes them
:class:`~ckanext.dcor_depot.errors.StoreError` carrying the store's error
code (:class:`~ckanext.dcor_depot.errors.NotFound` for "no such thing").
No boto error leaves ``storage/``.
"""
from __future__ import annotations

import contextlib
import functools
import json
import logging
import random
import re
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any, ParamSpec, TypeVar

import boto3
import botocore.config
import botocore.exceptions

from ckanext.dcor_depot import config, errors
from ckanext.dcor_depot.storage import cors, lifecycle

log = logging.getLogger(__name__)

PUBLIC_TAG = "public"

# Characters of a bucket name (S3 naming rules) standing in for the
# organization id.
_ORG_ID_PATTERN = r"[a-z0-9][a-z0-9.-]*"

# Part of the S3 error vocabulary that means "no such thing".
_NOT_FOUND_CODES = {"404", "NoSuchKey", "NoSuchBucket", "NotFound",
                    "NoSuchTagSet", "NoSuchUpload"}

# Answers to a request that lost a race with another request changing the
# same object (Ceph RGW refuses concurrent tag changes with
# OperationAborted); the same request succeeds a moment later.
_CONFLICT_CODES = {"OperationAborted", "ConcurrentModification"}
_CONFLICT_ATTEMPTS = 6

#: What boto raises: ClientError when the store refuses a request (it
#: carries the store's error code), BotoCoreError when there is no answer.
BOTO_ERRORS = (botocore.exceptions.BotoCoreError,
               botocore.exceptions.ClientError)

_P = ParamSpec("_P")
_T = TypeVar("_T")

_known_buckets: set[str] = set()
_bucket_lock = threading.Lock()


def bucket_policy(bucket: str) -> dict[str, Any]:
    """Anonymous read of exactly the objects tagged public=true."""
    return {
        "Version": "2012-10-17",
        "Statement": [{
            "Sid": "AnonymousReadOfPublicTaggedObjects",
            "Effect": "Allow",
            "Principal": {"AWS": ["*"]},
            "Action": ["s3:GetObject"],
            "Resource": [f"arn:aws:s3:::{bucket}/*"],
            "Condition": {
                "StringEquals": {f"s3:ExistingObjectTag/{PUBLIC_TAG}": "true"}
            },
        }],
    }


@functools.lru_cache(maxsize=4)
def _client_for(settings: config.S3Settings, max_pool: int):
    client_config = botocore.config.Config(
        # Request bodies are not hashed for the signature: the transfer
        # routine checks every byte itself (MD5 per part against the ETag,
        # SHA256 of the file), so a third hash of the same bytes would only
        # cost CPU (about a fifth of an upload's time on a busy machine).
        s3={"addressing_style": "path", "payload_signing_enabled": False},
        signature_version="s3v4",
        # RGW, older MinIO and Swift reject aws-chunked bodies with trailing
        # checksums; verification is done by this plugin instead.
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
        retries={"max_attempts": 4, "mode": "standard"},
        connect_timeout=10,
        read_timeout=120,
        max_pool_connections=max_pool,
    )
    return boto3.session.Session().client(
        "s3",
        endpoint_url=settings.endpoint_url,
        aws_access_key_id=settings.access_key_id,
        aws_secret_access_key=settings.secret_access_key,
        verify=settings.ssl_verify,
        region_name="us-east-1",
        config=client_config,
    )


def get_client(max_pool: int = 32):
    """A (cached, thread-safe) boto3 S3 client built from the CKAN config."""
    if not config.s3_available():
        raise errors.StoreError(
            "S3 is not configured: set dcor_object_store.access_key_id, "
            "secret_access_key and endpoint_url in the CKAN config",
            code=errors.NOT_CONFIGURED)
    return _client_for(config.s3_settings(), max_pool)


def bucket_name(organization_id: str) -> str:
    return config.s3_settings().bucket_template.format(
        organization_id=organization_id)


def object_url(bucket: str, key: str) -> str:
    """Path-style URL of an object."""
    return f"{config.s3_settings().endpoint_url}/{bucket}/{key}"


def parse_object_url(url: str) -> tuple[str, str] | None:
    """``(bucket, key)`` of a URL made by :func:`object_url` (None for a
    URL of another store or another form)."""
    head = f"{config.s3_settings().endpoint_url}/"
    if not isinstance(url, str) or not url.startswith(head):
        return None
    bucket, sep, key = url[len(head):].partition("/")
    return (bucket, key) if bucket and sep and key else None


def bucket_regex(template: str | None = None) -> re.Pattern[str]:
    """Regex matching the bucket names made from the bucket template."""
    template = template or config.s3_settings().bucket_template
    head, sep, tail = template.partition("{organization_id}")
    if not sep:
        raise ValueError(f"bucket template {template!r} lacks "
                         "{organization_id}")
    return re.compile(f"^{re.escape(head)}(?P<org>{_ORG_ID_PATTERN})"
                      f"{re.escape(tail)}$")


def bucket_organization(bucket: str) -> str | None:
    """The organization id a site bucket was named for (None: not ours)."""
    return _bucket_organization(bucket,
                                config.s3_settings().bucket_template)


@functools.lru_cache(maxsize=4096)
def _bucket_organization(bucket: str, template: str) -> str | None:
    # Cached: the visibility predicate asks for every object it decides.
    match = bucket_regex(template).match(bucket)
    return match.group("org") if match else None


def url_organization(url: str | None) -> str | None:
    """The organization whose bucket an object URL names (None: no URL,
    or not one of this site's buckets)."""
    parsed = parse_object_url(url) if url else None
    return bucket_organization(parsed[0]) if parsed else None


def url_organizations(urls: Iterable[str | None]) -> set[str]:
    """The organizations whose buckets these object URLs name."""
    return {org for org in map(url_organization, urls) if org}


def error_code(exc: BaseException) -> str | None:
    """The store's code for a refused request (``NoSuchKey``, ...).

    None for failures without an answer (connection, timeout): decisions
    about errors are taken on this code, never on message text.
    """
    if not isinstance(exc, botocore.exceptions.ClientError):
        return None
    code = exc.response.get("Error", {}).get("Code")
    return None if code is None else str(code)


def is_not_found(exc: BaseException) -> bool:
    return error_code(exc) in _NOT_FOUND_CODES


def describe_error(exc: BaseException) -> str:
    """One line saying what went wrong with the store."""
    endpoint = config.s3_settings().endpoint_url
    if isinstance(exc, botocore.exceptions.EndpointConnectionError):
        return f"object store at {endpoint} is unreachable"
    if isinstance(exc, (botocore.exceptions.ConnectTimeoutError,
                        botocore.exceptions.ReadTimeoutError)):
        return f"object store at {endpoint} timed out"
    if not isinstance(exc, botocore.exceptions.ClientError):
        return f"object store error: {exc}"
    code = error_code(exc)
    if code in ("InvalidAccessKeyId", "SignatureDoesNotMatch"):
        return (f"object store at {endpoint} rejected the credentials "
                f"({code}): check dcor_object_store.access_key_id and "
                "secret_access_key")
    if code == "PreconditionFailed":
        # The only conditional requests are the If-Match range GETs of
        # the transfers, which read an object with a known ETag.
        return "the object was replaced while it was being read"
    if code is None:
        code = "?"
    message = exc.response.get("Error", {}).get("Message", "")
    return f"object store refused the request: {code} {message}".strip()


def store_error(exc: BaseException, what: str = "") -> errors.StoreError:
    """The plugin's error for a failure of the store.

    ``what`` says what was being done (``cannot read s3://b/k``) and
    leads the message. A boto error becomes a StoreError saying what the
    store answered, with its error code (NotFound for "no such thing");
    a StoreError keeps its class, code and message.
    """
    if isinstance(exc, errors.StoreError):
        kind, message, code = type(exc), str(exc), exc.code
    else:
        code = error_code(exc)
        kind = (errors.NotFound if code in _NOT_FOUND_CODES
                else errors.StoreError)
        message = describe_error(exc)
    return kind(f"{what}: {message}" if what else message, code=code)


@contextlib.contextmanager
def translated(what: str = "") -> Iterator[None]:
    """Raise the boto errors of the block as :func:`store_error` does
    (StoreErrors of the block pass unchanged)."""
    try:
        yield
    except BOTO_ERRORS as exc:
        raise store_error(exc, what) from exc


@contextlib.contextmanager
def leading(what: str) -> Iterator[None]:
    """Like :func:`translated`, and ``what`` also leads the message of
    every StoreError of the block."""
    try:
        yield
    except (errors.StoreError, *BOTO_ERRORS) as exc:
        raise store_error(exc, what) from exc


def translate_errors(func: Callable[_P, _T]) -> Callable[_P, _T]:
    """Turn boto errors of ``func`` into StoreError with a clear text."""
    @functools.wraps(func)
    def wrapper(*args: _P.args, **kwargs: _P.kwargs) -> _T:
        with translated():
            return func(*args, **kwargs)
    return wrapper


@translate_errors
def site_buckets() -> list[str]:
    """Names of the existing buckets that belong to this site."""
    pattern = bucket_regex()
    resp = get_client().list_buckets()
    return sorted(b["Name"] for b in resp.get("Buckets", [])
                  if pattern.match(b["Name"]))


@translate_errors
def ensure_bucket(bucket: str) -> None:
    """Create ``bucket`` with the public-tag policy unless it exists; its
    lifecycle and CORS rules are the plugin's (added to any others).

    Idempotent and safe when several processes create the same bucket.
    """
    if bucket in _known_buckets:
        return
    with _bucket_lock:
        if bucket in _known_buckets:
            return
        s3 = get_client()
        try:
            s3.head_bucket(Bucket=bucket)
            exists = True
        except botocore.exceptions.ClientError as exc:
            if not is_not_found(exc):
                raise
            exists = False
        if not exists:
            try:
                s3.create_bucket(Bucket=bucket)
            except botocore.exceptions.ClientError as exc:
                if error_code(exc) not in ("BucketAlreadyOwnedByYou",
                                           "BucketAlreadyExists"):
                    raise
        # (Re)applying the policy is cheap and repairs a bucket created
        # by hand without it.
        s3.put_bucket_policy(Bucket=bucket,
                             Policy=json.dumps(bucket_policy(bucket)))
        lifecycle.ensure_rule(s3, bucket)
        ensure_cors(s3, bucket, config.site_origin())
        _known_buckets.add(bucket)


def ensure_cors(s3: Any, bucket: str, origin: str | None) -> None:
    """Let pages of ``origin`` (the site) send parts to the bucket: the
    plugin's CORS rule, kept among every other rule (an operator's stay).

    A store that refuses (no permission, no CORS support) is logged, not
    fatal: only uploads from the web form need the rule, every other
    path works without it.
    """
    if origin is None:
        return
    try:
        try:
            rules = s3.get_bucket_cors(Bucket=bucket)["CORSRules"]
        except botocore.exceptions.ClientError as exc:
            if error_code(exc) != "NoSuchCORSConfiguration":
                raise
            rules = []
        merged = cors.merged_rules(rules, origin)
        if merged is not None:
            s3.put_bucket_cors(Bucket=bucket,
                               CORSConfiguration={"CORSRules": merged})
    except BOTO_ERRORS as exc:
        log.warning("Bucket %s has no CORS rule for %s (%s): uploads from "
                    "the web form to it will fail; set "
                    "ckanext.dcor_depot.browser_direct_upload = false or "
                    "add the rule by hand", bucket, origin, exc)


@translate_errors
def head_object(bucket: str, key: str) -> dict[str, Any] | None:
    """The object's metadata, or None if there is no such object."""
    return find_object(get_client(), bucket, key)


def find_object(s3: Any, bucket: str, key: str) -> dict[str, Any] | None:
    """:func:`head_object` through the client ``s3``, untranslated.

    For callers that translate the boto errors themselves, saying what
    they were doing (see :func:`translated`).
    """
    try:
        return s3.head_object(Bucket=bucket, Key=key)
    except botocore.exceptions.ClientError as exc:
        if is_not_found(exc):
            return None
        raise


def object_exists(bucket: str, key: str) -> bool:
    return head_object(bucket, key) is not None


@translate_errors
def get_tags(bucket: str, key: str) -> dict[str, str] | None:
    """The object's tags, or None if there is no such object."""
    try:
        resp = get_client().get_object_tagging(Bucket=bucket, Key=key)
    except botocore.exceptions.ClientError as exc:
        if is_not_found(exc):
            return None
        raise
    return {t["Key"]: t["Value"] for t in resp.get("TagSet", [])}


@translate_errors
def set_public(bucket: str, key: str, public: bool) -> bool:
    """Open (tag ``public=true``) or close (no tags) an object.

    The plugin owns the objects' tag sets, so this is one
    PutObjectTagging or DeleteObjectTagging request, with no read first.
    Returns False when the object does not exist (nothing to tag).
    Retried when another worker changes the object's tags at the same time.
    """
    s3 = get_client()
    attempt = 1
    while True:
        try:
            if public:
                s3.put_object_tagging(Bucket=bucket, Key=key, Tagging={
                    "TagSet": [{"Key": PUBLIC_TAG, "Value": "true"}]})
            else:
                s3.delete_object_tagging(Bucket=bucket, Key=key)
            return True
        except botocore.exceptions.ClientError as exc:
            if is_not_found(exc):
                return False
            if (error_code(exc) not in _CONFLICT_CODES
                    or attempt == _CONFLICT_ATTEMPTS):
                raise
        # Random back-off, so that the racing requests drift apart.
        time.sleep(random.uniform(0.05, 0.1) * 2**attempt)
        attempt += 1


@translate_errors
def delete_objects(bucket: str, keys: list[str]) -> None:
    """Delete ``keys`` from ``bucket`` (missing ones are no error)."""
    s3 = get_client()
    for start in range(0, len(keys), 1000):  # the request's limit
        resp = s3.delete_objects(Bucket=bucket, Delete={
            "Objects": [{"Key": key} for key in keys[start:start + 1000]],
            "Quiet": True})
        failed = [e for e in resp.get("Errors", [])
                  if e.get("Code") not in _NOT_FOUND_CODES]
        if failed:
            raise errors.StoreError(
                f"could not delete {len(failed)} objects of bucket "
                f"{bucket}, e.g. {failed[0].get('Key')}: "
                f"{failed[0].get('Code')} {failed[0].get('Message', '')}",
                code=failed[0].get("Code"))


@translate_errors
def list_keys(bucket: str) -> list[str]:
    """Every key of a bucket ([] when it does not exist)."""
    keys: list[str] = []
    paginator = get_client().get_paginator("list_objects_v2")
    try:
        for page in paginator.paginate(Bucket=bucket):
            keys += [obj["Key"] for obj in page.get("Contents", [])]
    except botocore.exceptions.ClientError as exc:
        if error_code(exc) != "NoSuchBucket":
            raise
    return keys


@translate_errors
def ensure_lifecycle_rule(bucket: str) -> bool:
    """Add the plugin's lifecycle rule to ``bucket`` (a refusal is
    logged); whether the bucket carries it now."""
    s3 = get_client()
    lifecycle.ensure_rule(s3, bucket)
    return lifecycle.has_rule(s3, bucket)


@translate_errors
def check_connection() -> None:
    """Raise StoreError unless the store answers with our credentials."""
    get_client().list_buckets()


class BucketListing:
    """Sizes and ETags of a bucket's objects, from a bounded listing.

    One listing request covers up to 1000 objects where looking them up
    one by one would take 1000 requests. Listing stops after ``max_pages``
    pages; keys after the last listed one are then unknown.
    """

    def __init__(self, bucket: str, max_pages: int, prefix: str = "") -> None:
        self.objects: dict[str, dict[str, Any]] = {}
        self.last_key: str | None = None  # None: the listing is complete
        self.prefix = prefix
        with translated():
            try:
                self._list(bucket, max_pages)
            except botocore.exceptions.ClientError as exc:
                if error_code(exc) != "NoSuchBucket":
                    raise
                self.objects, self.last_key = {}, None  # nothing stored yet

    def _list(self, bucket: str, max_pages: int) -> None:
        s3 = get_client()
        kwargs: dict[str, Any] = {"Bucket": bucket, "Prefix": self.prefix}
        for _ in range(max(1, max_pages)):
            resp = s3.list_objects_v2(**kwargs)
            for obj in resp.get("Contents", []):
                self.objects[obj["Key"]] = {
                    "ContentLength": obj["Size"], "ETag": obj["ETag"]}
            if not resp.get("IsTruncated"):
                self.last_key = None
                return
            kwargs["ContinuationToken"] = resp["NextContinuationToken"]
            self.last_key = resp["Contents"][-1]["Key"]

    def knows(self, key: str) -> bool:
        return key.startswith(self.prefix) and (
            self.last_key is None or key <= self.last_key)

    def get(self, key: str) -> dict[str, Any] | None:
        """The object's size and ETag, None if absent (check knows())."""
        return self.objects.get(key)
