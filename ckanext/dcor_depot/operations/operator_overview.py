"""What the operator page shows: the last audit's report next to live
counts of the database.

The storage figures and findings are those of the last kept report
(``ckan dcor-depot-audit`` writes it); the resource counts and the
rolling audit's rotation are read now. Both are keyed by organization
name.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ckanext.dcor_depot import errors
from ckanext.dcor_depot.operations.audit import findings as audit
from ckanext.dcor_depot.operations.audit import rolling
from ckanext.dcor_depot.operations.audit.usage import OrgUsage
from ckanext.dcor_depot.records import resource_states
from ckanext.dcor_depot.records.resource_states import StateCounts

#: More findings than this are counted, not listed (the command's
#: output has them all).
MAX_FINDINGS_SHOWN = 500


@dataclass(frozen=True)
class OrganizationRow:
    name: str
    counts: StateCounts
    #: the last report's figures (None: the report has none)
    usage: OrgUsage | None
    #: ``stale-multipart-upload`` findings of the last report
    stale_uploads: int = 0


@dataclass(frozen=True)
class Overview:
    #: the last kept report (None: no audit has run)
    report: audit.Report | None
    organizations: list[OrganizationRow] = field(default_factory=list)
    #: the report's findings, worst first, at most MAX_FINDINGS_SHOWN
    findings: list[audit.Finding] = field(default_factory=list)
    #: findings not listed
    more_findings: int = 0


def usage_from_json(data: Any, name: str) -> OrgUsage | None:
    """The figures of one organization as the report keeps them (None if
    they are not a mapping; unknown or malformed entries are ignored)."""
    if not isinstance(data, dict):
        return None
    usage = OrgUsage(
        organization=name, block_bytes=_count(data, "block_bytes"),
        multipart_uploads=_count(data, "multipart_uploads"),
        multipart_bytes=_count(data, "multipart_bytes"),
        orphan_objects=_count(data, "orphan_objects"),
        orphan_bytes=_count(data, "orphan_bytes"))
    for kind in usage.objects:
        usage.objects[kind] = _count(data.get("objects"), kind)
        usage.object_bytes[kind] = _count(data.get("object_bytes"), kind)
    return usage


def _count(mapping: Any, key: str) -> int:
    value = mapping.get(key) if isinstance(mapping, dict) else None
    return value if isinstance(value, int) and value >= 0 else 0


def worst_first(found: list[audit.Finding]) -> list[audit.Finding]:
    return sorted(found, key=lambda item: (
        item.kind.rank, item.organization, item.dataset,
        item.resource, item.key))


def overview(report: audit.Report | None = None,
             counts: dict[str, StateCounts] | None = None) -> Overview:
    """The page's content (by default: the last report, counts now)."""
    if report is None:
        report = audit.last_report()
    if counts is None:
        counts = resource_states.state_counts()
    usage = report.usage if report is not None else {}
    stale: dict[str, int] = {}
    for finding in report.findings if report is not None else []:
        if finding.kind is audit.Kind.STALE_MULTIPART_UPLOAD:
            stale[finding.organization] = \
                stale.get(finding.organization, 0) + 1
    rows = [OrganizationRow(
        name=name, counts=counts.get(name) or StateCounts(name),
        usage=usage_from_json(usage.get(name), name),
        stale_uploads=stale.get(name, 0))
        for name in sorted(set(counts) | set(usage) | set(stale))]
    listed = worst_first(report.findings) if report is not None else []
    return Overview(report=report, organizations=rows,
                    findings=listed[:MAX_FINDINGS_SHOWN],
                    more_findings=max(0, len(listed) - MAX_FINDINGS_SHOWN))


@dataclass(frozen=True)
class ShareRow:
    """One share of the rolling audit's rotation."""
    share: int
    #: when a complete rolling run last checked it (None: never)
    checked: str | None
    #: the next rolling run checks it
    next: bool


def rotation_rows(rotation: rolling.Rotation | None) -> list[ShareRow]:
    """The rotation's shares, for the page ([] without a rotation)."""
    if rotation is None:
        return []
    return [ShareRow(share, rotation.checked.get(share),
                     share == rotation.next_share)
            for share in range(rotation.days)]


def kept_rotation() -> rolling.Rotation | None:
    """The rolling audit's rotation now (None: none, or unreadable)."""
    try:
        return rolling.load()
    except errors.DcorDepotError:
        return None
