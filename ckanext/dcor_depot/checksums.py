"""Checksums of local files, and copies verified by them."""
from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from typing import Any

_CHUNK = 8 * 1024 * 1024


def file_sha256(path: str | os.PathLike[str],
                progress: Callable[[int], Any] | None = None) -> str:
    """SHA256 (hex) of a file, read in large chunks."""
    hasher = hashlib.sha256()
    with open(path, "rb") as fd:
        while chunk := fd.read(_CHUNK):
            hasher.update(chunk)
            if progress:
                progress(len(chunk))
    return hasher.hexdigest()


def copy_verified(source: str | os.PathLike[str],
                  dest: str | os.PathLike[str],
                  progress: Callable[[int], Any] | None = None
                  ) -> tuple[str, str]:
    """Copy ``source`` to ``dest`` and flush it to disk.

    Returns the SHA256 of what was read and of what a second read of
    ``dest`` finds; the caller decides what a difference means.
    """
    hasher = hashlib.sha256()
    with open(source, "rb") as src, open(dest, "wb") as dst:
        while chunk := src.read(_CHUNK):
            hasher.update(chunk)
            dst.write(chunk)
            if progress:
                progress(len(chunk))
        dst.flush()
        os.fsync(dst.fileno())
    return hasher.hexdigest(), file_sha256(dest)
