"""One audit: scan, judge, confirm, optionally re-hash and repair, keep.

The report is kept as the last report (for the operator page) whatever
the options; ``--fix`` removes what it repaired from the report, so the
kept report lists what still needs a person. A rolling audit
(``rolling.py``) reads the tags of its selection only and advances the
rotation when it is complete.
"""
from __future__ import annotations

import datetime
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from ckanext.dcor_depot import config, errors
from ckanext.dcor_depot.operations import visibility
from ckanext.dcor_depot.operations.audit import (
    analysis,
    deep,
    repair,
    rolling,
    scan,
)
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
    #: DAYS of a rolling audit (None: check every object)
    rolling: int | None = None


def now_iso() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(
        timespec="seconds")


def run_audit(options: AuditOptions,
              on_fix: repair.OnResult | None = None,
              on_object: Callable[[int], None] | None = None) -> Report:
    """Audit the site; raises ValueError for an unknown organization or
    options that exclude each other."""
    if options.rolling is not None and options.organizations:
        raise ValueError("--rolling audits the whole site: it excludes "
                         "--organization")
    report = Report(started=now_iso(), options=asdict(options))
    chosen = None
    if options.rolling is None:
        site = scan.scan_site(options.organizations)
    else:
        site = scan.scan_site(tags=False)
        chosen = _select(site, options.rolling)
    judged = analysis.judge(site, options.grace_hours * 3600)
    report.errors = list(site.errors)
    report.usage = {org: figures.as_json()
                    for org, figures in sorted(judged.usage.items())}
    try:
        report.findings = confirm_missing(confirm_tags(judged.findings))
        if options.deep:
            _deep(site, options, report, on_object,
                  chosen.rehash if chosen else None)
        if options.fix:
            _fix(report, on_fix)
    except errors.DcorDepotError as exc:
        report.errors.append(str(exc))
    except BaseException as exc:
        # Interrupted (Ctrl-C) or failed otherwise: the report is kept
        # as incomplete, and a rolling run does not count as done.
        report.errors.append(f"interrupted: {exc!r}")
        raise
    finally:
        report.finished = now_iso()
        if chosen is not None:
            _record_rolling(report, chosen)
        if not options.organizations:  # the page shows the whole site
            keep(report)
    return report


def _select(site: scan.SiteScan, days: int) -> rolling.Selection:
    """The rolling run's selection; the tags of its objects are read."""
    chosen = rolling.select(site, rolling.plan(rolling.load(), days))
    if site.store:
        scan.scan_tags(site, chosen.objects)
    return chosen


def _record_rolling(report: Report, chosen: rolling.Selection) -> None:
    """Advance the rotation if the run is complete; the report says
    which share it covered and when each share was last checked."""
    rotation, advanced = None, False
    try:
        if report.complete:
            rotation, advanced = rolling.record(chosen.plan,
                                                report.started), True
        else:
            rotation = rolling.load()
    except errors.DcorDepotError as exc:
        report.errors.append(str(exc))
    report.rolling = rolling.report_entry(chosen, rotation, advanced)


def _deep(site: scan.SiteScan, options: AuditOptions, report: Report,
          on_object: Callable[[int], None] | None,
          only: frozenset[str] | None) -> None:
    found = deep.candidates(site)
    if only is not None:
        found = [record for record in found if record.id in only]
    chosen = deep.sample(found, options.sample)
    checked = deep.check_objects(site, chosen, on_object)
    report.findings += checked.findings
    report.errors += checked.errors
    report.options["deep_checked"] = checked.checked
    report.options["deep_bytes"] = checked.bytes_read


def _fix(report: Report, on_fix: repair.OnResult | None) -> None:
    outcome = repair.repair(report.findings, on_fix)
    repaired = set(outcome.fixed)
    report.findings = [f for f in report.findings if f not in repaired]
    for finding in outcome.fixed:
        report.fixed[finding.kind.value] = \
            report.fixed.get(finding.kind.value, 0) + 1
    report.options["fix_queued"] = len(outcome.queued)
    report.options["fix_failed"] = len(outcome.failed)


def confirm_tags(findings: list[Finding]) -> list[Finding]:
    """Drop tag findings that a commit or a job settled after the scan:
    the datasets' state and the objects' tags are read again."""
    tags = [f for f in findings
            if f.kind in (Kind.WRONGLY_PUBLIC, Kind.WRONGLY_PRIVATE)]
    if not tags:
        return findings
    states = ckan_data.dataset_states({f.dataset_id for f in tags
                                       if f.dataset_id})
    refs = [repair.object_ref(finding) for finding in tags]
    public = survey.public_flags([(ref.bucket, ref.key) for ref in refs])
    settled = {finding for finding, ref in zip(tags, refs, strict=True)
               if public.get((ref.bucket, ref.key)) in (
                   None, visibility.should_be_public(ref, states))}
    return [f for f in findings if f not in settled]


def measure_usage(organizations: tuple[str, ...] = (),
                  grace_hours: float = 24.0) -> list[dict[str, Any]]:
    """Storage per organization now (no tags read): what
    ``dcor-depot-usage`` prints and the ``dcor_depot_usage`` action gives.
    Raises ValueError for an unknown organization."""
    site = scan.scan_site(organizations, tags=False)
    if site.errors:
        raise errors.StoreError("; ".join(site.errors))
    judged = analysis.judge(site, grace_hours * 3600)
    return [figures.as_json()
            for _, figures in sorted(judged.usage.items())]


def confirm_missing(findings: list[Finding]) -> list[Finding]:
    """Drop ``data-lost`` and ``object-missing`` findings that a move, an
    upload or a job settled after the scan: the resource is read again,
    and its objects and files are looked at again."""
    return [f for f in findings
            if f.kind not in (Kind.DATA_LOST, Kind.OBJECT_MISSING)
            or _still_missing(f)]


def _still_missing(finding: Finding) -> bool:
    facts = ckan_data.resource_facts(finding.resource)
    if facts is None or facts.state != "active":
        return False
    urls = [facts.extras.get(name) for name in ("s3_url",
                                                 ckan_data.MOVED_FROM)]
    places = [object_store.parse_object_url(url) for url in urls
              if isinstance(url, str) and url]
    if facts.owner_org:
        places.append((object_store.bucket_name(facts.owner_org),
                       layout.object_key(facts.id)))
    if config.s3_available() and any(
            place and object_store.head_object(*place) for place in places):
        return False  # the object is there (now)
    if finding.kind is Kind.OBJECT_MISSING:
        return True
    backup = layout.backup_path(facts.id)
    return not (layout.owned_file(layout.ckan_upload_path(facts.id))
                or (backup is not None and backup.exists()))
