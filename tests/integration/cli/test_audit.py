"""``ckan dcor-depot-audit``: planted problems of every kind are found,
``--fix`` repairs what it may without deleting data, and a second audit
finds nothing ``--fix`` can repair; ``--deep`` finds silent corruption."""
from __future__ import annotations

import hashlib
import json
import os
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from ckanext.dcor_depot.operations.audit import findings
from ckanext.dcor_depot.records import ckan_data
from ckanext.dcor_depot.storage import layout, lifecycle, object_store
from tests.support.access import fresh_resource
from tests.support.cli import invoke, summary
from tests.support.stack import (
    anonymous_get,
    remove_template_buckets,
    run_jobs,
)

COMMAND = "dcor-depot-audit"
# A bucket template of its own: a whole-site audit looks at every bucket
# of the template, and other tests leave buckets of theirs behind.
TEMPLATE = "test-h14audit-{organization_id}"

pytestmark = [
    pytest.mark.usefixtures("with_extended_cli"),
    pytest.mark.ckan_config("dcor_object_store.bucket_name", TEMPLATE),
]


@pytest.fixture
def audit_site(pipeline, ckan_config, monkeypatch, tmp_path):
    """Depots, backups and temporary files of this test only (the audit
    walks them all), and the template's buckets removed afterwards."""
    for option, folder in (("ckanext.dcor_depot.depots_path", "depots"),
                           ("dcor_object_store.local_backup_location",
                            "backup"),
                           ("ckanext.dcor_depot.tmp_dir", "tmp")):
        (tmp_path / folder).mkdir()
        monkeypatch.setitem(ckan_config, option, str(tmp_path / folder))
    yield tmp_path
    remove_template_buckets()


def audit(cli, *args: str) -> tuple[Any, dict[str, Any]]:
    """Run the audit with --json (grace 0: everything is judged now)."""
    result = invoke(cli, COMMAND, "--json", "--grace-hours", "0", *args)
    assert result.exit_code in (0, 1, 2), result.output
    return result, json.loads(result.stdout)


def kinds(report: dict[str, Any]) -> Counter[str]:
    return Counter(item["kind"] for item in report["findings"])


def found(report: dict[str, Any]) -> set[tuple[str, str]]:
    """``{(kind, resource or key)}`` of a report."""
    return {(item["kind"], item["resource"] or item["key"])
            for item in report["findings"]}


def stored(make_dataset, upload, private: bool, data: bytes
           ) -> tuple[dict[str, Any], dict[str, Any]]:
    dataset = make_dataset(private=private)
    res = upload(dataset, data)
    run_jobs()
    return dataset, fresh_resource(res["id"])


def add_resource(upload, dataset: dict[str, Any], data: bytes
                 ) -> dict[str, Any]:
    res = upload(dataset, data)
    run_jobs()
    return fresh_resource(res["id"])


def where(res: dict[str, Any]) -> tuple[str, str]:
    found_at = object_store.parse_object_url(res["s3_url"])
    assert found_at is not None
    return found_at


def object_status(res: dict[str, Any]) -> int:
    return anonymous_get(res["s3_url"]).status_code


def test_a_healthy_organization_has_no_findings(cli, audit_site, owner,
                                                make_dataset, upload):
    _, public = stored(make_dataset, upload, False, b"public data")
    _, private = stored(make_dataset, upload, True, b"private data")
    assert public["s3_verified_at"] and private["s3_verified_at"]

    result, report = audit(cli)
    assert result.exit_code == 0
    assert report["findings"] == [] and report["complete"] is True
    org = owner["org"]["name"]
    figures = report["usage"][org]
    assert figures["objects"]["resource"] == 2
    assert figures["object_bytes"]["resource"] == len(b"public data") + \
        len(b"private data")
    # the depot files are on block storage too
    assert figures["block_bytes"] == figures["object_bytes"]["resource"]
    # the report is kept for the operator page
    kept = findings.last_report()
    assert kept is not None and kept.started == report["started"]

    text = invoke(cli, COMMAND, "--grace-hours", "0")
    assert text.exit_code == 0, text.output
    assert summary(text) == f"{COMMAND}: 0 findings, complete"


def plant_problems(site_dir: Path, owner, make_dataset, upload
                   ) -> dict[str, Any]:
    """One problem of every kind in the organization; returns what the
    test needs to look at afterwards."""
    s3 = object_store.get_client()
    bucket = object_store.bucket_name(owner["org"]["id"])
    private_ds, lost = stored(make_dataset, upload, True, b"lost data")
    public_ds, missing = stored(make_dataset, upload, False, b"no object")
    exposed = add_resource(upload, private_ds, b"exposed")
    closed = add_resource(upload, public_ds, b"closed")
    no_sha = add_resource(upload, public_ds, b"no checksum")
    resized = add_resource(upload, private_ds, b"resized")
    wrong_url = add_resource(upload, public_ds, b"wrong url")

    depot_file = os.path.realpath(layout.ckan_upload_path(lost["id"]))
    os.unlink(depot_file)
    s3.delete_object(Bucket=bucket, Key=where(lost)[1])
    s3.delete_object(Bucket=bucket, Key=where(missing)[1])
    s3.put_object_tagging(Bucket=bucket, Key=where(exposed)[1], Tagging={
        "TagSet": [{"Key": "public", "Value": "true"}]})
    s3.delete_object_tagging(Bucket=bucket, Key=where(closed)[1])
    ckan_data.remove_resource_field(public_ds["id"], [no_sha["id"]],
                                    "sha256")
    s3.put_object(Bucket=bucket, Key=where(resized)[1], Body=b"resized!!")
    ckan_data.merge_resource_fields({public_ds["id"]: {wrong_url["id"]: {
        "s3_url": object_store.object_url(
            bucket, layout.object_key(str(uuid.uuid4())))}}})
    orphan_rid = str(uuid.uuid4())
    orphan_key = layout.object_key(orphan_rid)
    s3.put_object(Bucket=bucket, Key=orphan_key, Body=b"orphan",
                  Tagging="public=true")
    stale_key = layout.object_key(str(uuid.uuid4()))
    upload_id = s3.create_multipart_upload(Bucket=bucket,
                                           Key=stale_key)["UploadId"]
    s3.delete_bucket_lifecycle(Bucket=bucket)
    unused = site_dir / "depots" / "users-x" / "forgotten.rtdc"
    unused.parent.mkdir(parents=True)
    unused.write_bytes(b"nobody links here")
    return {"bucket": bucket, "lost": lost, "missing": missing,
            "exposed": exposed, "closed": closed, "no_sha": no_sha,
            "resized": resized, "wrong_url": wrong_url,
            "orphan": f"{bucket}:{orphan_key}", "orphan_rid": orphan_rid,
            "stale": f"{bucket}:{stale_key}", "upload_id": upload_id,
            "unused": str(unused), "depot_file": depot_file}


def test_planted_problems_are_found_and_fixed_without_loss(
        cli, audit_site, owner, make_dataset, upload):
    p = plant_problems(audit_site, owner, make_dataset, upload)
    bucket = p["bucket"]
    assert object_status(p["exposed"]) == 200  # a leak, before the fix
    assert object_status(p["closed"]) == 403

    result, report = audit(cli)
    assert result.exit_code == 1
    assert found(report) == {
        ("data-lost", p["lost"]["id"]),
        ("dangling-symlink", p["lost"]["id"]),
        ("object-missing", p["missing"]["id"]),
        ("wrongly-public", p["exposed"]["id"]),
        ("wrongly-private", p["closed"]["id"]),
        ("sha256-missing", p["no_sha"]["id"]),
        ("size-mismatch", p["resized"]["id"]),
        ("s3-url-mismatch", p["wrong_url"]["id"]),
        ("orphan-object", p["orphan_rid"]),
        ("wrongly-public", p["orphan_rid"]),
        ("stale-multipart-upload", p["stale"]),
        ("lifecycle-rule-missing", bucket),
        ("unused-local-file", p["unused"]),
    }
    assert report["findings"][0]["kind"] == "data-lost"  # worst first
    assert {item["organization"] for item in report["findings"]
            if item["kind"] != "unused-local-file"} == {owner["org"]["name"]}

    fixing = invoke(cli, COMMAND, "--fix", "--grace-hours", "0")
    assert fixing.exit_code == 1, fixing.output
    fixed_lines = [line for line in fixing.stdout.splitlines()
                   if line.startswith("fixed ")]
    assert len(fixed_lines) == 7  # tags (3), sha256, object, url, rule

    _, after = audit(cli)
    assert not any(findings.Kind(kind).fixable for kind in kinds(after))
    assert set(kinds(after)) == {
        "data-lost", "dangling-symlink", "size-mismatch", "orphan-object",
        "stale-multipart-upload", "unused-local-file"}
    check_repairs(p)


def check_repairs(p: dict[str, Any]) -> None:
    """What the fix changed, seen as users and operators see it."""
    s3 = object_store.get_client()
    bucket = p["bucket"]
    assert object_status(p["exposed"]) == 403
    assert object_status(p["closed"]) == 200
    assert object_status(p["missing"]) == 200  # uploaded again, public
    assert anonymous_get(object_store.object_url(
        *p["orphan"].split(":", 1))).status_code == 403  # closed, kept
    assert fresh_resource(p["no_sha"]["id"])["sha256"] == \
        hashlib.sha256(b"no checksum").hexdigest()
    assert fresh_resource(p["wrong_url"]["id"])["s3_url"] == \
        p["wrong_url"]["s3_url"]
    rules = s3.get_bucket_lifecycle_configuration(Bucket=bucket)["Rules"]
    assert [rule["ID"] for rule in rules] == [lifecycle.RULE_ID]
    # nothing was deleted: not the odd object, the orphan, the upload,
    # the unused file
    assert s3.get_object(Bucket=bucket, Key=where(p["resized"])[1])[
        "Body"].read() == b"resized!!"
    assert s3.head_object(Bucket=bucket, Key=p["orphan"].split(":", 1)[1])
    assert Path(p["unused"]).read_bytes() == b"nobody links here"
    uploads = s3.list_multipart_uploads(Bucket=bucket).get("Uploads", [])
    assert [u["UploadId"] for u in uploads] == [p["upload_id"]]


def test_deep_finds_silent_corruption_and_records_verification(
        cli, audit_site, owner, make_dataset, upload):
    dataset, intact = stored(make_dataset, upload, True, b"intact bytes")
    rotten = add_resource(upload, dataset, b"rotten bytes")
    bucket, key = where(rotten)
    # Same size, other bytes: no listing can see it.
    object_store.get_client().put_object(Bucket=bucket, Key=key,
                                         Body=b"rotten bytez")
    shallow, report = audit(cli)
    assert shallow.exit_code == 0, report["findings"]

    ckan_data.remove_resource_field(dataset["id"], [intact["id"],
                                                    rotten["id"]],
                                    "s3_verified_at")
    result, report = audit(cli, "--deep")
    assert result.exit_code == 1
    assert found(report) == {("checksum-mismatch", rotten["id"])}
    (finding,) = report["findings"]
    assert finding["key"] == f"{bucket}:{key}"
    assert rotten["sha256"] in finding["detail"]
    assert hashlib.sha256(b"rotten bytez").hexdigest() in finding["detail"]
    assert report["options"]["deep_checked"] == 2
    # the intact object's verification is recorded, the rotten one's not
    assert fresh_resource(intact["id"])["s3_verified_at"] >= \
        intact["s3_verified_at"]
    assert "s3_verified_at" not in fresh_resource(rotten["id"])
    # nothing was changed in the store
    assert object_store.get_client().get_object(
        Bucket=bucket, Key=key)["Body"].read() == b"rotten bytez"


def test_deep_sample_reads_a_share_of_the_objects(cli, audit_site,
                                                  make_dataset, upload):
    dataset, _ = stored(make_dataset, upload, False, b"one")
    for data in (b"two", b"three", b"four"):
        add_resource(upload, dataset, data)
    result, report = audit(cli, "--deep", "--sample", "50")
    assert result.exit_code == 0, report["findings"]
    assert report["options"]["deep_checked"] == 2
    assert report["options"]["deep_bytes"] > 0


def test_young_objects_and_uploads_are_not_findings(cli, audit_site, owner):
    s3 = object_store.get_client()
    bucket = object_store.bucket_name(owner["org"]["id"])
    object_store.ensure_bucket(bucket)
    s3.put_object(Bucket=bucket, Key=layout.object_key(str(uuid.uuid4())),
                  Body=b"just uploaded")
    s3.create_multipart_upload(Bucket=bucket,
                               Key=layout.object_key(str(uuid.uuid4())))
    calm = invoke(cli, COMMAND, "--json")  # the default grace: 24 hours
    assert calm.exit_code == 0, calm.output
    assert json.loads(calm.stdout)["findings"] == []
    _, report = audit(cli)
    assert set(kinds(report)) == {"orphan-object", "stale-multipart-upload"}


def test_one_organization_at_a_time(cli, audit_site, owner, make_dataset,
                                    upload):
    from ckan.tests import factories
    other = factories.Organization()
    s3 = object_store.get_client()
    other_bucket = object_store.bucket_name(other["id"])
    object_store.ensure_bucket(other_bucket)
    s3.put_object(Bucket=other_bucket,
                  Key=layout.object_key(str(uuid.uuid4())), Body=b"x")
    stored(make_dataset, upload, True, b"fine")
    result, report = audit(cli, "--organization", owner["org"]["name"])
    assert result.exit_code == 0, report["findings"]
    assert list(report["usage"]) == [owner["org"]["name"]]
    result, report = audit(cli, "--organization", other["name"])
    assert result.exit_code == 1
    assert set(kinds(report)) == {"orphan-object"}


@pytest.mark.parametrize("args, message", [
    (("--sample", "10"), "--sample needs --deep"),
    (("--organization", "no-such-org"), "no organization no-such-org"),
])
def test_bad_options_are_refused(cli, audit_site, args, message):
    result = invoke(cli, COMMAND, *args)
    assert result.exit_code == 2
    assert message in result.stderr
    assert result.stdout == ""


@pytest.mark.parametrize("sample", ["0", "101", "x"])
def test_sample_out_of_range_is_refused(cli, audit_site, sample):
    result = invoke(cli, COMMAND, "--deep", "--sample", sample)
    assert result.exit_code == 2
    assert "--sample" in result.stderr


def test_unreachable_store_makes_the_audit_incomplete(
        cli, audit_site, ckan_config, monkeypatch, make_dataset, upload):
    stored(make_dataset, upload, True, b"kept")
    with monkeypatch.context() as patch:
        patch.setitem(ckan_config, "dcor_object_store.endpoint_url",
                      "http://127.0.0.1:9")
        result = invoke(cli, COMMAND, "--fix", "--grace-hours", "0")
    assert result.exit_code == 2, result.output
    assert "http://127.0.0.1:9 is unreachable" in result.stderr
    assert summary(result).endswith(", INCOMPLETE")
    # no finding is made up from what could not be read
    assert "data-lost" not in result.stdout
    report = findings.last_report()
    assert report is not None and not report.complete


def test_usage_per_organization(cli, audit_site, owner, make_dataset,
                                upload):
    dataset, res = stored(make_dataset, upload, False, b"x" * 1000)
    add_resource(upload, dataset, b"y" * 500)
    s3 = object_store.get_client()
    bucket = object_store.bucket_name(owner["org"]["id"])
    s3.put_object(Bucket=bucket, Key=layout.object_key(res["id"],
                                                       "preview"),
                  Body=b"p" * 10)
    s3.put_object(Bucket=bucket, Key="notes/readme.txt", Body=b"n" * 7)
    s3.put_object(Bucket=bucket, Key=layout.object_key(str(uuid.uuid4())),
                  Body=b"o" * 30)
    pending = layout.object_key(str(uuid.uuid4()))
    upload_id = s3.create_multipart_upload(Bucket=bucket,
                                           Key=pending)["UploadId"]
    s3.upload_part(Bucket=bucket, Key=pending, UploadId=upload_id,
                   PartNumber=1, Body=b"m" * 100)
    result = invoke(cli, "dcor-depot-usage", "--json", "--grace-hours", "0")
    assert result.exit_code == 0, result.output
    (row,) = json.loads(result.stdout)["organizations"]
    assert row["organization"] == owner["org"]["name"]
    assert row["objects"] == {"resource": 3, "condensed": 0, "preview": 1,
                              "other": 1}
    assert row["object_bytes"] == {"resource": 1530, "condensed": 0,
                                   "preview": 10, "other": 7}
    assert row["total_object_bytes"] == 1547
    assert row["block_bytes"] == 1500
    assert (row["orphan_objects"], row["orphan_bytes"]) == (1, 30)
    assert (row["multipart_uploads"], row["multipart_bytes"]) == (1, 100)

    table = invoke(cli, "dcor-depot-usage", "--grace-hours", "0")
    assert table.exit_code == 0, table.output
    head, line = table.stdout.splitlines()[:2]
    assert head.split()[:2] == ["organization", "objects"]
    assert line.split()[:3] == [owner["org"]["name"], "5", "1.5"]
    assert summary(table) == "dcor-depot-usage: 1 organizations"


def test_an_unmounted_depot_makes_the_audit_incomplete(
        cli, audit_site, ckan_config, monkeypatch, make_dataset, upload):
    stored(make_dataset, upload, True, b"on a disk that went away")
    monkeypatch.setitem(ckan_config, "ckanext.dcor_depot.depots_path",
                        str(audit_site / "not-mounted"))
    result, report = audit(cli)
    assert result.exit_code == 2
    assert report["complete"] is False
    assert any("is missing (not mounted?)" in error
               for error in report["errors"])
    assert "data-lost" not in kinds(report)


def test_an_s3_url_outside_the_site_is_reported_and_fixed(
        cli, audit_site, make_dataset, upload):
    dataset, res = stored(make_dataset, upload, True, b"elsewhere?")
    ckan_data.merge_resource_fields({dataset["id"]: {res["id"]: {
        "s3_url": "https://elsewhere.example.org/bucket/resource/x"}}})
    _, report = audit(cli)
    assert found(report) == {("s3-url-mismatch", res["id"])}
    fixing = invoke(cli, COMMAND, "--fix", "--grace-hours", "0")
    assert fixing.exit_code == 0, fixing.output
    assert fresh_resource(res["id"])["s3_url"] == res["s3_url"]
