"""The buckets' lifecycle rule: the store aborts forgotten uploads itself.

A multipart upload that is never completed (a client that gave up, a
direct upload nobody turned into a resource) holds its parts until it is
aborted. Every bucket the plugin uses gets one rule of its own (known by
its ID) that aborts such uploads after the prune command's default age;
an operator's rules stay as they are.
"""
from __future__ import annotations

import logging
from typing import Any

import botocore.exceptions

log = logging.getLogger(__name__)

#: Incomplete multipart uploads are aborted by the store itself after this
#: many days (the prune command's default age): no upload leaks parts.
ABORT_INCOMPLETE_AFTER_DAYS = 5
RULE_ID = "dcor-depot-abort-incomplete-multipart-uploads"


def rule() -> dict[str, Any]:
    return {"ID": RULE_ID, "Status": "Enabled",
            "Filter": {"Prefix": ""},
            "AbortIncompleteMultipartUpload": {
                "DaysAfterInitiation": ABORT_INCOMPLETE_AFTER_DAYS}}


def ensure_rule(s3: Any, bucket: str) -> None:
    """Add the plugin's rule to the bucket's lifecycle configuration,
    keeping every other rule (an operator's expiry rules stay).

    A store that refuses (no permission, no lifecycle support, rules it
    will not merge) is logged, not fatal: data still flow, and
    ``dcor-prune-stale-multipart-uploads`` does the same work by hand.
    """
    try:
        _merge_rule(s3, bucket)
    except (botocore.exceptions.BotoCoreError,
            botocore.exceptions.ClientError) as exc:
        log.warning("Bucket %s keeps its lifecycle rules without %s "
                    "(%s): prune stale uploads with "
                    "dcor-prune-stale-multipart-uploads", bucket, RULE_ID,
                    exc)


def _configuration(s3: Any, bucket: str) -> dict[str, Any]:
    """The bucket's lifecycle configuration (no rules: none)."""
    try:
        return s3.get_bucket_lifecycle_configuration(Bucket=bucket)
    except botocore.exceptions.ClientError as exc:
        if exc.response.get("Error", {}).get("Code") \
                != "NoSuchLifecycleConfiguration":
            raise
        return {"Rules": []}


def _applies(rules: list[dict[str, Any]]) -> bool:
    """The plugin's rule is among ``rules``, enabled and as it should be."""
    wanted = rule()["AbortIncompleteMultipartUpload"]
    return any(found.get("ID") == RULE_ID
               and found.get("Status") == "Enabled"
               and found.get("AbortIncompleteMultipartUpload") == wanted
               for found in rules)


def has_rule(s3: Any, bucket: str) -> bool:
    """Whether the bucket carries the plugin's rule, enabled."""
    return _applies(_configuration(s3, bucket)["Rules"])


def _merge_rule(s3: Any, bucket: str) -> None:
    current = _configuration(s3, bucket)
    rules = current["Rules"]
    if _applies(rules):
        return
    others = [found for found in rules if found.get("ID") != RULE_ID]
    extra = {}
    if "TransitionDefaultMinimumObjectSize" in current:
        # A bucket-wide setting of the configuration, kept as it was.
        extra["TransitionDefaultMinimumObjectSize"] = \
            current["TransitionDefaultMinimumObjectSize"]
    s3.put_bucket_lifecycle_configuration(
        Bucket=bucket, LifecycleConfiguration={"Rules": [*others, rule()]},
        **extra)
