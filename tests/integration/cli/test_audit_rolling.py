"""``ckan dcor-depot-audit --rolling DAYS`` against the real stack: DAYS
consecutive runs read the tags of every resource, each run only those of
its share (and of changes); a problem planted in a changed resource
outside the run's share is found and ``--fix`` repairs it; an incomplete
run does not advance the rotation; ``--rolling`` and ``--sample``
exclude each other."""
from __future__ import annotations

import json
from typing import Any

import ckan.model as model
import pytest
import sqlalchemy as sa
from ckan.tests import helpers

from ckanext.dcor_depot.operations.audit import rolling
from ckanext.dcor_depot.storage import object_store
from tests.support.access import fresh_resource
from tests.support.cli import invoke, summary
from tests.support.stack import (
    anonymous_get,
    remove_template_buckets,
    run_jobs,
)
from tests.support.store import s3_requests

COMMAND = "dcor-depot-audit"
# A bucket template of its own: a whole-site audit looks at every bucket
# of the template, and other tests leave buckets of theirs behind.
TEMPLATE = "test-h25rolling-{organization_id}"
DAYS = 3

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


def flagged(report: dict[str, Any], kind: str) -> set[str]:
    return {item["resource"] for item in report["findings"]
            if item["kind"] == kind}


def backdate() -> None:
    """Every dataset and resource changed two days ago: the changes the
    tests make afterwards are the only recent ones (the rolling audit
    counts changes since the previous run's start less a margin)."""
    with model.meta.engine.begin() as connection:
        for table in ("package", "resource"):
            connection.execute(sa.text(
                f"UPDATE {table} SET metadata_modified = "
                "timezone('utc', now()) - interval '2 days'"))
    model.Session.remove()


def resources_until(upload, dataset: dict[str, Any], enough) -> list[str]:
    """Upload small resources to ``dataset`` until ``enough(ids)``."""
    ids: list[str] = []
    while not enough(ids):
        assert len(ids) < 40, "the shares of random ids are that uneven?"
        ids.append(upload(dataset, f"data {len(ids)}".encode())["id"])
    run_jobs()
    return ids


def untag(res: dict[str, Any]) -> None:
    """Drop an object's public tag behind the plugin's back."""
    bucket, key = object_store.parse_object_url(res["s3_url"]) or ("", "")
    object_store.get_client().delete_object_tagging(Bucket=bucket, Key=key)
    assert anonymous_get(res["s3_url"]).status_code == 403


def test_days_runs_read_the_tags_of_every_resource_each_once(
        cli, audit_site, owner, make_dataset, upload):
    dataset = make_dataset(private=False)
    ids = resources_until(upload, dataset, lambda found: len(found) >= 6
                          and {rolling.share_of(rid, DAYS)
                               for rid in found} == set(range(DAYS)))
    for rid in ids:  # every object wrongly private: each check shows
        untag(fresh_resource(rid))
    backdate()

    seen: list[set[str]] = []
    for share in range(DAYS):
        with s3_requests() as sent:
            result, report = audit(cli, "--rolling", str(DAYS))
        assert result.exit_code == 1, result.output
        entry = report["rolling"]
        assert (entry["days"], entry["share"], entry["changed"],
                entry["advanced"]) == (DAYS, share, 0, True)
        mine = {rid for rid in ids if rolling.share_of(rid, DAYS) == share}
        # the tags of this share were read, those of the others not
        assert flagged(report, "wrongly-private") == mine
        assert {item["kind"] for item in report["findings"]} == \
            {"wrongly-private"}
        assert 0 < entry["objects_tag_checked"] < \
            report["usage"][owner["org"]["name"]]["total_objects"]
        assert entry["resources_checked"] == len(mine)
        # one tagging request per object of the selection, and one more
        # per tag finding (read again before it is reported): none for
        # the objects of the other shares
        assert sent.count("GetObjectTagging") == \
            entry["objects_tag_checked"] + len(mine)
        assert entry["shares"][str(share)] == report["started"]
        seen.append(mine)
    assert set().union(*seen) == set(ids)

    kept = rolling.load()
    assert kept is not None
    assert (kept.days, kept.next_share) == (DAYS, 0)
    assert sorted(kept.checked) == list(range(DAYS))

    # The rotation starts again; the text report names the share.
    text = invoke(cli, COMMAND, "--rolling", str(DAYS), "--grace-hours", "0")
    assert text.exit_code == 1, text.output
    assert summary(text).endswith(f", rolling share 0 of {DAYS}, complete")
    assert f"rolling: share 0 of {DAYS} (0-{DAYS - 1}): tags of " \
        in text.stdout
    assert "rolling: next run checks share 1" in text.stdout
    assert "rolling: shares last checked: 0 " in text.stdout


def test_a_problem_in_a_changed_resource_is_found_outside_its_share(
        cli, audit_site, owner, make_dataset, upload):
    """The next run checks share 1; both resources are of other shares.
    Only the one whose dataset changed is checked, found and fixed."""
    def outside(found: list[str]) -> bool:
        return bool(found) and rolling.share_of(found[-1], DAYS) != 1

    changed_ds = make_dataset(private=False)
    (target,) = resources_until(upload, changed_ds, outside)[-1:]
    quiet_ds = make_dataset(private=False)
    (control,) = resources_until(upload, quiet_ds, outside)[-1:]
    backdate()
    first, report = audit(cli, "--rolling", str(DAYS))
    assert first.exit_code == 0, report["findings"]
    assert report["rolling"]["share"] == 0

    helpers.call_action("package_patch", id=changed_ds["id"],
                        notes="changed after the rolling run")
    run_jobs()
    untag(fresh_resource(target))
    untag(fresh_resource(control))

    fixing = invoke(cli, COMMAND, "--rolling", str(DAYS), "--fix",
                    "--grace-hours", "0")
    assert fixing.exit_code == 0, fixing.output
    assert [line for line in fixing.stdout.splitlines()
            if line.startswith("fixed ")] == [
        line for line in fixing.stdout.splitlines()
        if line.startswith("fixed wrongly-private: ")
        and f"resource={target}" in line]
    assert control not in fixing.output
    assert f"share 1 of {DAYS} " in fixing.stdout
    assert summary(fixing).endswith(
        f"1 fixed, rolling share 1 of {DAYS}, complete")
    assert anonymous_get(fresh_resource(target)["s3_url"]).status_code \
        == 200
    # The control's problem is real, only outside this run: a full audit
    # finds it.
    assert anonymous_get(fresh_resource(control)["s3_url"]).status_code \
        == 403
    _, full = audit(cli)
    assert {(item["kind"], item["resource"]) for item in full["findings"]} \
        == {("wrongly-private", control)}
    assert full["rolling"] is None


def test_an_incomplete_run_does_not_advance_the_rotation(
        cli, audit_site, ckan_config, monkeypatch, make_dataset, upload):
    resources_until(upload, make_dataset(private=True), bool)
    first, report = audit(cli, "--rolling", "2")
    assert first.exit_code == 0, report
    assert report["rolling"]["next_share"] == 1
    with monkeypatch.context() as patch:
        patch.setitem(ckan_config, "dcor_object_store.endpoint_url",
                      "http://127.0.0.1:9")
        broken = invoke(cli, COMMAND, "--rolling", "2", "--grace-hours", "0")
    assert broken.exit_code == 2, broken.output
    assert summary(broken).endswith(", rolling share 1 of 2, INCOMPLETE")
    assert "incomplete: the next run checks share 1 again" in broken.stdout
    kept = rolling.load()
    assert kept is not None and kept.next_share == 1
    assert 1 not in kept.checked

    again, report = audit(cli, "--rolling", "2")
    assert again.exit_code == 0, report
    assert (report["rolling"]["share"], report["rolling"]["next_share"]) \
        == (1, 0)


def test_an_interrupted_run_does_not_advance_the_rotation(
        cli, audit_site, monkeypatch, make_dataset, upload):
    """Ctrl-C (or any error the audit does not expect) in the middle of a
    run: the kept report says incomplete, the share is not done."""
    from ckanext.dcor_depot.operations.audit import findings, run
    resources_until(upload, make_dataset(private=True), bool)
    first, report = audit(cli, "--rolling", "2")
    assert first.exit_code == 0, report

    def interrupted(found):
        raise KeyboardInterrupt

    monkeypatch.setattr(run, "confirm_tags", interrupted)
    with pytest.raises(KeyboardInterrupt):
        run.run_audit(run.AuditOptions(rolling=2, grace_hours=0))

    kept = rolling.load()
    assert kept is not None and kept.next_share == 1
    assert 1 not in kept.checked
    last = findings.last_report()
    assert last is not None and not last.complete


def test_another_days_restarts_the_rotation(cli, audit_site, make_dataset,
                                            upload):
    resources_until(upload, make_dataset(private=True), bool)
    audit(cli, "--rolling", "7")
    audit(cli, "--rolling", "7")
    _, report = audit(cli, "--rolling", "3")
    entry = report["rolling"]
    assert entry["share"] == 0
    assert "DAYS changed from 7 to 3" in entry["restarted"]
    assert list(entry["shares"]) == ["0", "1", "2"]
    assert entry["shares"]["1"] is None


@pytest.mark.parametrize("args, message", [
    (("--rolling", "3", "--deep", "--sample", "10"),
     "--sample and --rolling exclude each other"),
    (("--rolling", "3", "--organization", "any"),
     "--rolling audits the whole site: it excludes --organization"),
    (("--rolling", "0"), "--rolling"),
])
def test_options_that_exclude_each_other_are_refused(cli, audit_site, args,
                                                     message):
    result = invoke(cli, COMMAND, *args)
    assert result.exit_code == 2
    assert message in result.stderr
    assert result.stdout == ""
    assert rolling.load() is None  # nothing ran
