"""The buckets' cross-origin (CORS) rules: the site's pages may send parts.

The resource form sends a chosen file's parts from the site's pages
straight to the store, which is another origin: browsers send a part only
after the store's answer to their preflight request allows the site's
origin. The plugin keeps one rule of its own (known by its ID) among the
rules an operator may have set; pure functions, the requests are made by
:func:`object_store.ensure_cors`.
"""
from __future__ import annotations

from typing import Any

RULE_ID = "dcor-depot-browser-uploads"

# Browsers may cache the answer to a preflight request this long.
_PREFLIGHT_CACHE_SECONDS = 3600

# What a rule allows, compared as sets (stores reorder the lists).
_COMPARED = ("AllowedOrigins", "AllowedMethods", "AllowedHeaders",
             "ExposeHeaders")


def site_rule(origin: str) -> dict[str, Any]:
    """Pages of ``origin`` may PUT parts (and read objects); the ETag of
    a part's answer is readable by them."""
    return {"ID": RULE_ID,
            "AllowedOrigins": [origin],
            "AllowedMethods": ["PUT", "GET", "HEAD"],
            "AllowedHeaders": ["*"],
            "ExposeHeaders": ["ETag"],
            "MaxAgeSeconds": _PREFLIGHT_CACHE_SECONDS}


def _same(rule: dict[str, Any], other: dict[str, Any]) -> bool:
    return (all(set(rule.get(k) or []) == set(other.get(k) or [])
                for k in _COMPARED)
            and rule.get("MaxAgeSeconds") == other.get("MaxAgeSeconds"))


def merged_rules(rules: list[dict[str, Any]], origin: str
                 ) -> list[dict[str, Any]] | None:
    """The bucket's rules with the site's rule for ``origin`` in place of
    any earlier one of the plugin; None when ``rules`` hold it already."""
    ours = [rule for rule in rules if rule.get("ID") == RULE_ID]
    wanted = site_rule(origin)
    if len(ours) == 1 and _same(ours[0], wanted):
        return None
    return [*(rule for rule in rules if rule.get("ID") != RULE_ID), wanted]
