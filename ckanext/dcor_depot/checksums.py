"""Checksums of local files."""
from __future__ import annotations

import hashlib
import os

_CHUNK = 8 * 1024 * 1024


def file_sha256(path: str | os.PathLike[str]) -> str:
    """SHA256 (hex) of a file, read in large chunks."""
    hasher = hashlib.sha256()
    with open(path, "rb") as fd:
        while chunk := fd.read(_CHUNK):
            hasher.update(chunk)
    return hasher.hexdigest()
