"""What the verified transfers share: their results, exact reads of
local files and how messages name objects."""
from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from ckanext.dcor_depot import errors

#: ``stored`` argument of ``transfer.upload_verified``: look the object up.
UNKNOWN: Any = object()


def mismatch(message: str) -> errors.StoreError:
    """The error of data in the store or on disk that are not what was
    sent or recorded (code ``Mismatch``)."""
    return errors.StoreError(message, code=errors.MISMATCH)


@dataclass(frozen=True)
class UploadResult:
    bucket: str
    key: str
    size: int
    #: SHA256 (hex) of the local file, computed while reading it
    sha256: str
    #: ETag the store reports for the object (without quotes)
    etag: str
    #: False when an identical object was already there
    uploaded: bool


@dataclass(frozen=True)
class DownloadResult:
    bucket: str
    key: str
    path: Path
    size: int
    sha256: str
    etag: str


def read_exact(fh: IO[bytes], length: int, name: Any) -> bytes:
    """``length`` bytes of ``fh``; a file that ends before is an error."""
    data = fh.read(length)
    while len(data) < length:
        more = fh.read(length - len(data))
        if not more:
            raise mismatch(
                f"local file {name} shrank while it was being read")
        data += more
    return data


def read_into(fh: io.BufferedIOBase, buffer: bytearray, length: int,
              name: Any) -> None:
    """Fill ``buffer[:length]`` from ``fh`` (no new objects)."""
    view = memoryview(buffer)[:length]
    filled = 0
    while filled < length:
        n = fh.readinto(view[filled:])
        if not n:
            raise mismatch(
                f"local file {name} shrank while it was being read")
        filled += n


def check_eof(fh: IO[bytes], name: Any) -> None:
    """A file that has more bytes than were read is an error."""
    if fh.read(1):
        raise mismatch(
            f"local file {name} grew while it was being read")


def where(bucket: str, key: str) -> str:
    """How messages name an object."""
    return f"s3://{bucket}/{key}"


def prefix(label: str) -> str:
    """The start of a message about the item ``label`` names."""
    return f"{label}: " if label else ""
