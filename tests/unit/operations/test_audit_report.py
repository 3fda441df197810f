"""The audit report: order, exit status, JSON round trip (no services)."""
from __future__ import annotations

from ckanext.dcor_depot.operations.audit.findings import Finding, Kind, Report
from ckanext.dcor_depot.operations.audit.usage import OrgUsage, human_bytes


def test_exit_status_says_clean_findings_or_incomplete():
    assert Report(started="t").exit_code == 0
    assert Report(started="t",
                  findings=[Finding(Kind.SHA256_MISSING)]).exit_code == 1
    assert Report(started="t", findings=[Finding(Kind.DATA_LOST)],
                  errors=["bucket b unreadable"]).exit_code == 2


def test_findings_are_sorted_per_organization_worst_first():
    report = Report(started="t", findings=[
        Finding(Kind.ORPHAN_OBJECT, "lab-b", key="b:1"),
        Finding(Kind.LIFECYCLE_RULE_MISSING, "lab-a", key="a"),
        Finding(Kind.DATA_LOST, "lab-a", "ds", "r1"),
        Finding(Kind.WRONGLY_PUBLIC, "lab-a", "ds", "r2")])
    assert [(f.organization, f.kind) for f in report.sorted_findings()] == [
        ("lab-a", Kind.DATA_LOST), ("lab-a", Kind.WRONGLY_PUBLIC),
        ("lab-a", Kind.LIFECYCLE_RULE_MISSING),
        ("lab-b", Kind.ORPHAN_OBJECT)]
    assert report.summary() == {"data-lost": 1, "wrongly-public": 1,
                                "orphan-object": 1,
                                "lifecycle-rule-missing": 1}
    assert report.per_organization()["lab-a"]["data-lost"] == 1


def test_json_round_trip_keeps_every_field():
    usage = OrgUsage("lab-a")
    usage.add_object("resource", 10)
    report = Report(started="s", finished="f", errors=["e"],
                    options={"deep": True}, usage={"lab-a": usage.as_json()},
                    fixed={"sha256-missing": 2}, findings=[
                        Finding(Kind.S3_URL_MISMATCH, "lab-a", "ds", "r",
                                "b:k", "detail", dataset_id="d1")])
    data = report.as_json()
    assert data["complete"] is False and data["version"] == 1
    assert data["findings"][0] == {
        "kind": "s3-url-mismatch", "organization": "lab-a", "dataset": "ds",
        "resource": "r", "key": "b:k", "detail": "detail",
        "dataset_id": "d1"}
    again = Report.from_json(data)
    assert again.findings == report.findings
    assert again.findings[0].dataset_id == "d1"
    assert (again.usage, again.fixed, again.errors) == (
        report.usage, report.fixed, report.errors)


def test_unknown_kinds_of_a_newer_report_are_skipped():
    data = Report(started="s").as_json()
    data["findings"] = [{"kind": "from-the-future"},
                        {"kind": "data-lost", "resource": "r"}]
    assert [f.kind for f in Report.from_json(data).findings] == [
        Kind.DATA_LOST]


def test_only_repairs_without_deletion_are_fixable():
    assert {kind.value for kind in Kind if kind.fixable} == {
        "wrongly-public", "wrongly-private", "object-missing",
        "s3-url-mismatch", "sha256-missing", "lifecycle-rule-missing"}


def test_human_bytes():
    assert human_bytes(0) == "0 B"
    assert human_bytes(1023) == "1023 B"
    assert human_bytes(1536) == "1.5 KiB"
    assert human_bytes(3 * 1024**4) == "3.0 TiB"
