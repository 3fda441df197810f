"""Storage used per organization: objects by artifact kind, block storage,
open multipart uploads and orphans.

The figures come from the survey the audit makes (one listing per bucket,
a stat per local file), so ``dcor-depot-usage`` and the audit agree.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from ckanext.dcor_depot.storage import layout

#: Artifact kinds of objects; "other" are keys outside the plugin's layout.
OBJECT_KINDS = (*layout.ARTIFACTS, "other")


def _per_kind() -> dict[str, int]:
    return dict.fromkeys(OBJECT_KINDS, 0)


@dataclass
class OrgUsage:
    """What one organization stores (name: its CKAN name, or the bucket's
    organization id when the site does not know it)."""
    organization: str
    objects: dict[str, int] = field(default_factory=_per_kind)
    object_bytes: dict[str, int] = field(default_factory=_per_kind)
    #: bytes of the organization's files on block storage (upload files,
    #: depot files they link to, backups)
    block_bytes: int = 0
    multipart_uploads: int = 0
    multipart_bytes: int = 0
    orphan_objects: int = 0
    orphan_bytes: int = 0

    @property
    def total_objects(self) -> int:
        return sum(self.objects.values())

    @property
    def total_object_bytes(self) -> int:
        return sum(self.object_bytes.values())

    def add_object(self, kind: str, size: int) -> None:
        self.objects[kind] += 1
        self.object_bytes[kind] += size

    def as_json(self) -> dict[str, Any]:
        return asdict(self) | {"total_objects": self.total_objects,
                               "total_object_bytes": self.total_object_bytes}


def human_bytes(size: float) -> str:
    """``1.5 GiB``: sizes for people (tables, the operator page)."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(size) < 1024 or unit == "TiB":
            return f"{size:.0f} {unit}" if unit == "B" else \
                f"{size:.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")
