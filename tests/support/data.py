"""Bytes the tests make and the digests they expect, written out here
(not taken from the plugin) so that the tests check the plugin's own.

Nothing here needs CKAN: both tiers use it.
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def file_sha256(path: Path) -> str:
    """SHA256 of a file's bytes, read in pieces."""
    digest = hashlib.sha256()
    with path.open("rb") as fd:
        while chunk := fd.read(2**20):
            digest.update(chunk)
    return digest.hexdigest()


def upstream_id(*parts: str) -> str:
    """Upstream's make_id, written out independently: MD5 of the UTF-8
    bytes of the parts with no separator, as 8-4-4-4-12."""
    h = hashlib.md5(b"".join(p.encode("utf-8") for p in parts)).hexdigest()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def flip_first_byte(data: bytes) -> bytes:
    """``data`` with its first byte inverted: same size, other bytes."""
    changed = bytearray(data)
    changed[0] ^= 0xFF
    return bytes(changed)


def data_file(folder: Path, size: int, name: str = "cells.rtdc"
              ) -> tuple[Path, bytes]:
    """A file of ``size`` random bytes in ``folder``; its path and bytes."""
    data = os.urandom(size)
    path = folder / name
    path.write_bytes(data)
    return path, data
