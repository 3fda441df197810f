"""Reproducible ids of imported and appended resources (no CKAN needed).

The formula is upstream ckanext-dcor_depot's (0.14), so that a site
whose datasets and resources were made by upstream gets the same ids
from ``import-figshare`` and ``append-resource`` again.
"""
from __future__ import annotations

import hashlib


def reproducible_id(*parts: str) -> str:
    """MD5 hex digest of the parts' UTF-8 bytes, concatenated with no
    separator, written as a UUID (8-4-4-4-12).

    The digest names data, it protects nothing (hence not "for security",
    which also keeps it working where FIPS forbids MD5).
    """
    digest = hashlib.md5("".join(parts).encode("utf-8"),
                         usedforsecurity=False).hexdigest()
    return (f"{digest[:8]}-{digest[8:12]}-{digest[12:16]}-"
            f"{digest[16:20]}-{digest[20:]}")
