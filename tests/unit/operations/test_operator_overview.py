"""The operator page's content from a report and counts (pure)."""
from __future__ import annotations

from ckanext.dcor_depot.operations import operator_overview as overview
from ckanext.dcor_depot.operations.audit.findings import Finding, Kind, Report
from ckanext.dcor_depot.operations.audit.usage import OrgUsage
from ckanext.dcor_depot.operations.storage_status import display_time
from ckanext.dcor_depot.records.resource_states import StateCounts


def test_times_are_shown_in_utc():
    assert display_time("2025-03-01T12:30:59+02:00") == "2025-03-01 10:30 UTC"
    assert display_time("2025-03-01T12:30:00Z") == "2025-03-01 12:30 UTC"
    assert display_time("2025-03-01T12:30:00") == "2025-03-01 12:30 UTC"
    assert display_time("yesterday") == "yesterday"
    assert display_time("") is None
    assert display_time(None) is None
    assert display_time(17) is None


def test_usage_is_read_back_and_bad_figures_count_nothing():
    usage = OrgUsage("a", block_bytes=10, multipart_uploads=1,
                     multipart_bytes=5, orphan_objects=2, orphan_bytes=7)
    usage.add_object("preview", 3)
    assert overview.usage_from_json(usage.as_json(), "a") == usage
    bad = overview.usage_from_json(
        {"block_bytes": "many", "orphan_bytes": -1, "objects": [1],
         "object_bytes": {"resource": 4.5, "condensed": 8}}, "b")
    assert bad is not None
    assert (bad.block_bytes, bad.orphan_bytes, bad.total_objects) == (0, 0, 0)
    assert bad.object_bytes["condensed"] == 8
    assert overview.usage_from_json("nonsense", "c") is None


def test_organizations_from_counts_and_report_and_findings_worst_first():
    report = Report(started="s", usage={"b": OrgUsage("b").as_json()},
                    findings=[
        Finding(Kind.STALE_MULTIPART_UPLOAD, "c", key="k1"),
        Finding(Kind.STALE_MULTIPART_UPLOAD, "c", key="k2"),
        Finding(Kind.ORPHAN_OBJECT, "a", key="k3"),
        Finding(Kind.DATA_LOST, "z", "ds", "rid")])
    shown = overview.overview(report, {"a": StateCounts("a", files=3)})
    assert [row.name for row in shown.organizations] == ["a", "b", "c"]
    a, b, c = shown.organizations
    assert a.counts.files == 3 and a.usage is None
    assert b.counts == StateCounts("b") and b.usage == OrgUsage("b")
    assert c.stale_uploads == 2
    assert [f.kind for f in shown.findings] == [
        Kind.DATA_LOST, Kind.ORPHAN_OBJECT, Kind.STALE_MULTIPART_UPLOAD,
        Kind.STALE_MULTIPART_UPLOAD]
    assert shown.more_findings == 0


def test_many_findings_are_counted_not_listed():
    many = overview.MAX_FINDINGS_SHOWN + 7
    report = Report(started="s", findings=[
        Finding(Kind.ORPHAN_OBJECT, "a", key=f"k{n}") for n in range(many)])
    shown = overview.overview(report, {})
    assert len(shown.findings) == overview.MAX_FINDINGS_SHOWN
    assert shown.more_findings == 7
