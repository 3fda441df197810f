"""What the audit reports: findings, the report, and the kept last report.

The JSON form of a report is an interface (documented in the README):
``{"version", "started", "finished", "complete", "errors", "options",
"summary", "organizations", "usage", "fixed", "rolling", "findings"}``
(``rolling`` is null but for ``--rolling``), one finding per entry
with ``kind``, ``organization``, ``dataset``, ``resource``, ``key`` and
``detail``.
"""
from __future__ import annotations

import enum
import json
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ckanext.dcor_depot import config
from ckanext.dcor_depot.storage import fsops

REPORT_VERSION = 1


class Kind(str, enum.Enum):
    """Kinds of findings, worst first; the value is the JSON name."""
    #: no local file, no backup and no object: the data are lost
    DATA_LOST = "data-lost"
    #: the stored bytes differ from ``sha256`` (deep audit)
    CHECKSUM_MISMATCH = "checksum-mismatch"
    #: an object readable by anyone although its dataset is not public
    WRONGLY_PUBLIC = "wrongly-public"
    #: an upload path leading to a file outside the plugin's places (a
    #: planted symlink): never read, uploaded or served
    FOREIGN_LINK = "foreign-link"
    #: the resource's object is missing (a local copy exists)
    OBJECT_MISSING = "object-missing"
    #: local file and object differ in size
    SIZE_MISMATCH = "size-mismatch"
    #: an upload symlink whose target is gone
    DANGLING_SYMLINK = "dangling-symlink"
    #: an object of a public dataset that is not public
    WRONGLY_PRIVATE = "wrongly-private"
    #: ``s3_url`` differs from the URL the layout derives
    S3_URL_MISMATCH = "s3-url-mismatch"
    SHA256_MISSING = "sha256-missing"
    #: an object no resource owns
    ORPHAN_OBJECT = "orphan-object"
    #: a file in a depot or the backup location no resource uses
    UNUSED_LOCAL_FILE = "unused-local-file"
    STALE_MULTIPART_UPLOAD = "stale-multipart-upload"
    LIFECYCLE_RULE_MISSING = "lifecycle-rule-missing"

    @property
    def rank(self) -> int:
        """0 for the worst kind (the order of the enum)."""
        return _RANK[self]

    @property
    def fixable(self) -> bool:
        """``--fix`` repairs it (without deleting anything)."""
        return self in FIXABLE


FIXABLE = frozenset({Kind.WRONGLY_PUBLIC, Kind.WRONGLY_PRIVATE,
                     Kind.OBJECT_MISSING, Kind.S3_URL_MISMATCH,
                     Kind.SHA256_MISSING, Kind.LIFECYCLE_RULE_MISSING})
_RANK = {kind: n for n, kind in enumerate(Kind)}


@dataclass(frozen=True)
class Finding:
    kind: Kind
    #: organization name (its id when the site does not know it)
    organization: str = ""
    #: dataset name
    dataset: str = ""
    #: resource id
    resource: str = ""
    #: ``bucket:key`` of an object, or a local path
    key: str = ""
    detail: str = ""
    #: dataset id (for links and repairs; in the JSON report too)
    dataset_id: str = field(default="", compare=False)

    def sort_key(self) -> tuple[Any, ...]:
        # Findings of no organization (depot files) after the others.
        return (not self.organization, self.organization,
                self.kind.rank, self.dataset, self.resource, self.key)

    def as_json(self) -> dict[str, str]:
        return {"kind": self.kind.value, "organization": self.organization,
                "dataset": self.dataset, "resource": self.resource,
                "key": self.key, "detail": self.detail}

    def line(self) -> str:
        where = " ".join(part for part in (
            self.organization and f"org={self.organization}",
            self.dataset and f"dataset={self.dataset}",
            self.resource and f"resource={self.resource}",
            self.key and f"key={self.key}") if part)
        return f"{self.kind.value}: {where}: {self.detail}"


@dataclass
class Report:
    started: str
    finished: str = ""
    findings: list[Finding] = field(default_factory=list)
    #: why the audit is incomplete (store or disk unreadable)
    errors: list[str] = field(default_factory=list)
    options: dict[str, Any] = field(default_factory=dict)
    #: per organization name: usage figures (see usage.OrgUsage)
    usage: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: what --fix repaired, per kind
    fixed: dict[str, int] = field(default_factory=dict)
    #: a rolling audit's share and rotation (see rolling.report_entry)
    rolling: dict[str, Any] | None = None

    @property
    def complete(self) -> bool:
        return not self.errors

    @property
    def exit_code(self) -> int:
        """0 clean, 1 findings, 2 audit incomplete."""
        if self.errors:
            return 2
        return 1 if self.findings else 0

    def sorted_findings(self) -> list[Finding]:
        return sorted(self.findings, key=Finding.sort_key)

    def summary(self) -> dict[str, int]:
        counts = Counter(finding.kind for finding in self.findings)
        return {kind.value: counts[kind] for kind in Kind if counts[kind]}

    def per_organization(self) -> dict[str, dict[str, int]]:
        found: dict[str, Counter[str]] = {}
        for finding in self.findings:
            found.setdefault(finding.organization, Counter())[
                finding.kind.value] += 1
        return {org: dict(counts) for org, counts in sorted(found.items())}

    def as_json(self) -> dict[str, Any]:
        return {
            "version": REPORT_VERSION, "started": self.started,
            "finished": self.finished, "complete": self.complete,
            "errors": self.errors, "options": self.options,
            "summary": self.summary(),
            "organizations": self.per_organization(),
            "usage": self.usage, "fixed": self.fixed,
            "rolling": self.rolling,
            "findings": [f.as_json() | {"dataset_id": f.dataset_id}
                         for f in self.sorted_findings()],
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Report:
        known = {kind.value: kind for kind in Kind}
        findings = [Finding(kind=known[item["kind"]], **{
            name: str(item.get(name, "")) for name in
            ("organization", "dataset", "resource", "key", "detail",
             "dataset_id")})
            for item in data.get("findings", []) if item.get("kind") in known]
        return cls(started=data.get("started", ""),
                   finished=data.get("finished", ""), findings=findings,
                   errors=list(data.get("errors", [])),
                   options=dict(data.get("options", {})),
                   usage=dict(data.get("usage", {})),
                   fixed=dict(data.get("fixed", {})),
                   rolling=data["rolling"] if isinstance(
                       data.get("rolling"), dict) else None)


def last_report_path() -> Path:
    """Where the last report is kept (for the operator page)."""
    return config.storage_path() / "dcor_depot" / "last-audit.json"


def keep(report: Report) -> Path:
    """Write ``report`` as the last report (atomically: the page never
    reads half a file). Readable by the site's user only: it names
    private datasets and paths."""
    path = last_report_path()
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    if path.parent.is_symlink():
        # storage_path is writable by the web server's user: never write
        # where a link planted there points.
        raise OSError(f"{path.parent} is a symlink; report not kept")
    tmp = fsops.create_temp(path.parent, path.name, "part")
    try:
        os.chmod(tmp, 0o600)
        with open(tmp, "w", encoding="utf-8") as out:
            json.dump(report.as_json(), out, indent=1)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def last_report() -> Report | None:
    """The last kept report, None if there is none (or it is unreadable)."""
    try:
        with open(last_report_path(), encoding="utf-8") as stream:
            return Report.from_json(json.load(stream))
    except (OSError, ValueError, TypeError, KeyError):
        return None
