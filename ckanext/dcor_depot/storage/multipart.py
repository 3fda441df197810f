"""Part sizes of multipart transfers and the ETags S3 computes (pure).

S3 gives an object written by one PUT the MD5 of its bytes as ETag, and a
multipart object the MD5 of its parts' MD5s with the part count appended
(``<md5>-<count>``). Knowing the part layout, the ETag of a local file
can therefore be computed without downloading anything. This module only
does arithmetic: no store, no files, no CKAN config.
"""
from __future__ import annotations

import hashlib

MiB = 2**20

#: Part size of multipart uploads and range size of parallel downloads.
#: 16 MiB keeps the request overhead negligible (measured: 8-64 MiB parts
#: upload equally fast against Ceph RGW) while the parts in flight stay
#: far below the memory budget.
DEFAULT_PART_SIZE = 16 * MiB
#: Threads sending parts / fetching ranges. The work is network bound
#: (hashlib releases the GIL), so a few more threads than cores pay off.
DEFAULT_THREADS = 4
#: Parts of server-side copies (copies of larger objects are multipart).
COPY_PART_SIZE = 256 * MiB
#: Upper bound for the part/range buffers held at once by one transfer.
#: The window of parts in flight shrinks when parts grow (huge files).
MEMORY_BUDGET = 192 * MiB

#: S3 limits: parts other than the last are at least 5 MiB, at most 10000
#: parts per upload, at most 5 GiB per part or single PUT.
MIN_PART_SIZE = 5 * MiB
MAX_PART_SIZE = 5 * 1024 * MiB
MAX_PARTS = 10000


def part_count(size: int, part_size: int) -> int:
    """Parts of ``part_size`` bytes (the last one shorter) in ``size``."""
    return -(-size // part_size)


def part_size_for(size: int, part_size: int = DEFAULT_PART_SIZE) -> int:
    """The part size used for a file of ``size`` bytes.

    ``part_size`` grows (in whole MiB) for huge files so that an upload
    never needs more than MAX_PARTS parts.
    """
    needed = part_count(size, MAX_PARTS)
    if needed > part_size:
        part_size = part_count(needed, MiB) * MiB
    return part_size


def check_tuning(part_size: int, threads: int) -> None:
    """Refuse part sizes S3 does not accept and thread counts below one."""
    if not MIN_PART_SIZE <= part_size <= MAX_PART_SIZE:
        raise ValueError(f"part size must be between {MIN_PART_SIZE} and "
                         f"{MAX_PART_SIZE} bytes, not {part_size}")
    if threads < 1:
        raise ValueError(f"threads must be at least 1, not {threads}")


def window(part_size: int, threads: int) -> int:
    """Parts held in memory at once: one more than threads, within budget."""
    return max(1, min(threads + 1, MEMORY_BUDGET // part_size))


def multipart_etag(part_md5s: list[bytes]) -> str:
    """The ETag S3 gives a multipart object with these part MD5s."""
    joined = hashlib.md5(b"".join(part_md5s), usedforsecurity=False)
    return f"{joined.hexdigest()}-{len(part_md5s)}"


def clean_etag(etag: str) -> str:
    """The ETag without the quotes S3 puts around it."""
    return etag.strip('"')


def is_multipart_etag(etag: str) -> bool:
    """Whether the object was written by a multipart upload."""
    return "-" in etag


def etag_part_count(etag: str) -> int | None:
    """The part count of a multipart ETag (None if it has no count)."""
    try:
        return int(etag.rsplit("-", 1)[1])
    except (IndexError, ValueError):
        return None
