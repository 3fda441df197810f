"""The buckets' policy as the store has it and applies it, for
``dcor-depot-check``: which buckets of the site have another policy than
the plugin's, replacing it, and how the store answers anonymous reads in
a temporary bucket with the plugin's policy.

Failures are StoreErrors (the store's answers translated here); the
check decides what they mean.
"""
from __future__ import annotations

import json
from typing import Any

import requests

from ckanext.dcor_depot import config
from ckanext.dcor_depot.storage import object_store

#: Keys of the two objects in the temporary bucket.
PROBE_PUBLIC_KEY = "dcor-check/tagged-public"
PROBE_PRIVATE_KEY = "dcor-check/untagged"


def anonymous_reads(bucket: str) -> tuple[int | str, int | str]:
    """HTTP status (or why there is none) of an anonymous GET of an
    object tagged public and of an untagged one, in the new bucket
    ``bucket`` with the plugin's policy.

    The bucket and its objects are removed whatever happens.
    """
    s3 = object_store.get_client()
    with object_store.translated(f"temporary bucket {bucket}"):
        s3.create_bucket(Bucket=bucket)
        try:
            s3.put_bucket_policy(Bucket=bucket, Policy=json.dumps(
                object_store.bucket_policy(bucket)))
            s3.put_object(Bucket=bucket, Key=PROBE_PUBLIC_KEY, Body=b"public",
                          Tagging=f"{object_store.PUBLIC_TAG}=true")
            s3.put_object(Bucket=bucket, Key=PROBE_PRIVATE_KEY,
                          Body=b"private")
            return (_anonymous_status(bucket, PROBE_PUBLIC_KEY),
                    _anonymous_status(bucket, PROBE_PRIVATE_KEY))
        finally:
            object_store.delete_objects(
                bucket, object_store.list_keys(bucket))
            s3.delete_bucket(Bucket=bucket)


def _anonymous_status(bucket: str, key: str) -> int | str:
    """HTTP status of a GET without credentials (or why there is none)."""
    try:
        return requests.get(object_store.object_url(bucket, key),
                            timeout=30,
                            verify=config.s3_settings().ssl_verify
                            ).status_code
    except requests.RequestException as exc:
        return f"no answer ({type(exc).__name__})"


def normalized(policy: object) -> object:
    """A policy with one-element lists as their element (stores may
    return ``"*"`` for ``["*"]``)."""
    if isinstance(policy, dict):
        return {key: normalized(value) for key, value in policy.items()}
    if isinstance(policy, list):
        items = [normalized(item) for item in policy]
        return items[0] if len(items) == 1 else items
    return policy


def _policy_of(s3: Any, bucket: str) -> object:
    """The bucket's policy (None: it has none)."""
    try:
        return json.loads(s3.get_bucket_policy(Bucket=bucket)["Policy"])
    except object_store.BOTO_ERRORS as exc:
        if object_store.error_code(exc) == "NoSuchBucketPolicy":
            return None
        raise


def differing_policies() -> list[str]:
    """The site's buckets whose policy is not the plugin's."""
    s3 = object_store.get_client()
    differing = []
    with object_store.leading("reading the bucket policies"):
        for bucket in object_store.site_buckets():
            try:
                policy = _policy_of(s3, bucket)
            except object_store.BOTO_ERRORS as exc:
                if object_store.error_code(exc) == "NoSuchBucket":
                    continue  # removed meanwhile
                raise
            wanted = object_store.bucket_policy(bucket)
            if normalized(policy) != normalized(wanted):
                differing.append(bucket)
    return differing


def replace_policies(buckets: list[str]) -> None:
    """Give ``buckets`` the plugin's policy."""
    with object_store.translated("replacing the bucket policies"):
        for bucket in buckets:
            object_store.get_client().put_bucket_policy(
                Bucket=bucket, Policy=json.dumps(
                    object_store.bucket_policy(bucket)))
