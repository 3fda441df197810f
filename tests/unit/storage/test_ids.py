"""Upstream's reproducible ids (MD5 of the parts, as 8-4-4-4-12)."""
from __future__ import annotations

import hashlib

from ckanext.dcor_depot.storage.ids import reproducible_id


def md5_id(data: bytes) -> str:
    h = hashlib.md5(data).hexdigest()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def test_the_parts_are_concatenated_without_separator():
    assert reproducible_id("ab", "c") == reproducible_id("a", "bc") \
        == md5_id(b"abc")
    assert reproducible_id() == md5_id(b"")


def test_utf8_bytes_are_hashed():
    assert reproducible_id("ü", "日本.rtdc") == md5_id(
        "ü日本.rtdc".encode())


def test_a_known_value():
    # computed with upstream 0.14.1's make_id(["10.6084/...", "figshare-..."])
    assert reproducible_id("10.6084/m9.figshare.7771184.v2",
                           "figshare-7771184-v2") \
        == "89bf2177-ffeb-9893-83cc-b619fc2f6663"
