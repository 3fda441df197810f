"""One audit: scan, judge, confirm, optionally re-hash and repair, keep.

The report is kept as the last report (for the operator page) whatever
the options; ``--fix`` removes what it repaired from the report, so the
kept report lists what still needs a person.
"""
from __future__ import annotations

import datetime
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from ckanext.dcor_depot.operations import visibility
from ckanext.dcor_depot.operations.audit import analysis, deep, repair, scan
from ckanext.dcor_depot.operations.audit.findings import (
    Finding,
    Kind,
    Report,
    keep,
)
from ckanext.dcor_depot.records import ckan_data
from ckanext.dcor_depot.storage import layout, object_store, survey


@dataclass(frozen=True)
class AuditOptions:
    fix: bool = False
    deep: bool = False
    #: percent of the stored objects --deep reads
    sample: float = 100.0
    #: younger uploads, objects and datasets are not judged yet
    grace_hours: float = 24.0
    #: names of the organizations to audit (empty: the whole site)
    organizations: tuple[str, ...] = ()


def now_iso() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(
        timespec="seconds")


def run_audit(options: AuditOptions,
              on_fix: Callable[[Finding, str | None], None] | None = None,
              on_object: Callable[[int], None] | None = None) -> Report:
    """Audit the site; raises ValueError for an unknown organization."""
    report = Report(started=now_iso(), options=asdict(options))
    site = scan.scan_site(options.organizations)
    judged = analysis.judge(site, options.grace_hours * 3600)
    report.errors = list(site.errors)
    report.findings = confirm_tags(judged.findings)
    report.usage = {org: figures.as_json()
                    for org, figures in sorted(judged.usage.items())}
    if options.deep:
        chosen = deep.sample(deep.candidates(site), options.sample)
        checked = deep.check_objects(site, chosen, on_object)
        report.findings += checked.findings
        report.errors += checked.errors
        report.options["deep_checked"] = checked.checked
        report.options["deep_bytes"] = checked.bytes_read
    if options.fix:
        outcome = repair.repair(report.findings, on_fix)
        repaired = set(outcome.fixed)
        report.findings = [f for f in report.findings if f not in repaired]
        for finding in outcome.fixed:
            report.fixed[finding.kind.value] = \
                report.fixed.get(finding.kind.value, 0) + 1
    report.finished = now_iso()
    keep(report)
    return report


def confirm_tags(findings: list[Finding]) -> list[Finding]:
    """Drop tag findings that a commit or a job settled after the scan:
    the datasets' state and the objects' tags are read again."""
    tags = [f for f in findings
            if f.kind in (Kind.WRONGLY_PUBLIC, Kind.WRONGLY_PRIVATE)]
    if not tags:
        return findings
    states = ckan_data.dataset_states({f.dataset_id for f in tags
                                       if f.dataset_id})
    objects = [tuple(f.key.split(":", 1)) for f in tags]
    public = survey.public_flags([(b, k) for b, k in objects])
    settled = set()
    for finding, (bucket, key) in zip(tags, objects, strict=True):
        artifact, rid = layout.parse_object_key(key)
        ref = visibility.ObjectRef(
            object_store.bucket_organization(bucket) or "",
            finding.dataset_id, rid, artifact)
        now = public.get((bucket, key))
        if now is None or now == visibility.should_be_public(ref, states):
            settled.add(finding)
    return [f for f in findings if f not in settled]


def measure_usage(organizations: tuple[str, ...] = (),
                  grace_hours: float = 24.0) -> list[dict[str, Any]]:
    """Storage per organization now (no tags read): what
    ``dcor-depot-usage`` prints and the ``dcor_depot_usage`` action gives.
    Raises ValueError for an unknown organization."""
    site = scan.scan_site(organizations, tags=False)
    if site.errors:
        raise object_store.ObjectStoreError("; ".join(site.errors))
    judged = analysis.judge(site, grace_hours * 3600)
    return [figures.as_json()
            for _, figures in sorted(judged.usage.items())]
