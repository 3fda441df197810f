"""``dcor-depot-audit`` and ``dcor-depot-usage``: is every resource's data
where the database says, intact and exactly as public as it should be;
what does each organization store."""
from __future__ import annotations

import json
from typing import Any

import click

from ckanext.dcor_depot import errors
from ckanext.dcor_depot.cli import common
from ckanext.dcor_depot.operations.audit import findings, repair, run
from ckanext.dcor_depot.operations.audit.usage import OBJECT_KINDS, human_bytes

AUDIT = "dcor-depot-audit"
USAGE = "dcor-depot-usage"

organization_option = click.option(
    "--organization", "organizations", multiple=True, metavar="NAME",
    help="Only this organization (repeatable). Without it the whole site, "
         "including buckets and depot files no organization owns.")
grace_option = click.option(
    "--grace-hours", type=click.FloatRange(min=0), default=24.0,
    show_default=True,
    help="Uploads, objects, files and dataset changes younger than this "
         "are in progress, not findings.")


@click.command(AUDIT, short_help="Compare the database with the object "
                                 "store and the depots.")
@click.option("--fix", is_flag=True,
              help="Repair what can be repaired without deleting data: "
                   "tags, missing sha256, missing objects with a local "
                   "copy, s3_url, the lifecycle rule.")
@click.option("--json", "as_json", is_flag=True,
              help="Print the report as JSON (see the README).")
@click.option("--deep", is_flag=True,
              help="Also read the stored objects and compare them with "
                   "their sha256.")
@click.option("--sample", type=click.FloatRange(min=0, min_open=True,
                                                max=100), metavar="P",
              help="With --deep: read a random P percent of the objects.")
@click.option("--rolling", type=click.IntRange(min=1, max=366),
              metavar="DAYS",
              help="List every bucket, but read the tags (and with --deep "
                   "the bytes) only of changed resources and of a 1/DAYS "
                   "share of the rest: DAYS daily runs check every object.")
@grace_option
@organization_option
@common.with_app_context
def audit(fix: bool, as_json: bool, deep: bool, sample: float | None,
          rolling: int | None, grace_hours: float,
          organizations: tuple[str, ...]) -> None:
    """Report, per organization and worst first: resources whose data
    exist nowhere, missing objects, orphan objects, objects whose public
    tag differs from their dataset's visibility, missing sha256, size
    mismatches, s3_url other than the derived URL, dangling upload
    symlinks, depot files no resource uses, stale multipart uploads and
    buckets without the lifecycle rule. The report is kept for the
    operator page.

    Exit status: 0 nothing found, 1 findings, 2 the audit is incomplete
    (the store or a disk could not be read; usage errors too).
    """
    if rolling is not None and sample is not None:
        common.fail(f"{AUDIT}: --sample and --rolling exclude each other",
                    code=2)
    if sample is not None and not deep:
        common.fail(f"{AUDIT}: --sample needs --deep", code=2)
    options = run.AuditOptions(fix=fix, deep=deep, sample=sample or 100.0,
                               grace_hours=grace_hours,
                               organizations=organizations, rolling=rolling)
    try:
        report = run.run_audit(options,
                               on_fix=None if as_json else _print_fix)
    except ValueError as exc:
        common.fail(f"{AUDIT}: {exc}", code=2)
    if as_json:
        click.echo(json.dumps(report.as_json(), indent=1))
    else:
        _print_report(report)
    raise click.exceptions.Exit(report.exit_code)


def _print_fix(finding: findings.Finding, status: repair.RepairStatus,
               why: str) -> None:
    if status is repair.RepairStatus.FAILED:
        common.report_error(f"{status.value} {finding.line()}: {why}")
    else:
        click.echo(f"{status.value} {finding.line()}"
                   + (f": {why}" if why else ""))


def _print_report(report: findings.Report) -> None:
    organization = None
    for finding in report.sorted_findings():
        if finding.organization != organization:
            organization = finding.organization
            click.echo(f"organization {organization or '(none)'}:")
        click.echo(f"  {finding.line()}")
    for error in report.errors:
        common.report_error(f"{AUDIT}: {error}")
    if report.rolling is not None:
        for line in rolling_lines(report.rolling):
            click.echo(line)
    counts = ", ".join(f"{n} {kind}" for kind, n in report.summary().items())
    fixed = sum(report.fixed.values())
    click.echo(f"{AUDIT}: {len(report.findings)} findings"
               + (f" ({counts})" if counts else "")
               + (f", {fixed} fixed" if report.options.get("fix") else "")
               + (f", {report.options.get('deep_checked', 0)} objects "
                  f"re-hashed" if report.options.get("deep") else "")
               + (f", rolling share {report.rolling['share']} of "
                  f"{report.rolling['days']}" if report.rolling else "")
               + (", complete" if report.complete else ", INCOMPLETE"))


def rolling_lines(entry: dict[str, Any]) -> list[str]:
    """What a rolling audit covered, for people."""
    lines = [f"rolling: share {entry['share']} of {entry['days']} "
             f"(0-{entry['days'] - 1}): tags of "
             f"{entry['objects_tag_checked']} objects of "
             f"{entry['resources_checked']} resources read "
             f"({entry['changed']} changed since "
             f"{entry['since'] or 'no previous rolling run'})"]
    if entry.get("restarted"):
        lines.append(f"rolling: {entry['restarted']}")
    lines.append("rolling: " + (
        f"next run checks share {entry['next_share']}"
        if entry.get("advanced") else
        f"incomplete: the next run checks share {entry['share']} again"))
    lines.append("rolling: shares last checked: " + ", ".join(
        f"{share} {when or 'never'}"
        for share, when in entry.get("shares", {}).items()))
    return lines


@click.command(USAGE, short_help="Storage used per organization.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@grace_option
@organization_option
@common.with_app_context
def usage(as_json: bool, grace_hours: float,
          organizations: tuple[str, ...]) -> None:
    """Objects and bytes in the store by artifact kind, bytes on block
    storage, open multipart uploads and orphan objects, per organization.
    """
    try:
        rows = run.measure_usage(organizations, grace_hours)
    except ValueError as exc:
        common.fail(f"{USAGE}: {exc}", code=2)
    except errors.StoreError as exc:
        common.fail(f"{USAGE}: {exc}")
    if as_json:
        click.echo(json.dumps({"organizations": rows}, indent=1))
        return
    _print_table(rows)


def _print_table(rows: list[dict[str, Any]]) -> None:
    head = ["organization", "objects", *OBJECT_KINDS, "block storage",
            "multipart", "orphans"]
    table = [head] + [[
        row["organization"], str(row["total_objects"]),
        *(human_bytes(row["object_bytes"][kind]) for kind in OBJECT_KINDS),
        human_bytes(row["block_bytes"]),
        f"{row['multipart_uploads']} / {human_bytes(row['multipart_bytes'])}",
        f"{row['orphan_objects']} / {human_bytes(row['orphan_bytes'])}"]
        for row in rows]
    widths = [max(len(line[n]) for line in table) for n in range(len(head))]
    for line in table:
        click.echo("  ".join(cell.ljust(width) if n == 0 else
                             cell.rjust(width)
                             for n, (cell, width) in enumerate(
                                 zip(line, widths, strict=True))).rstrip())
    click.echo(f"{USAGE}: {len(rows)} organizations")
