"""``dcor-depot-audit --rolling``: shares, the rotation, the selection and
the options, without services (the stack tests are in
tests/integration/cli/test_audit_rolling.py)."""
from __future__ import annotations

import dataclasses
import datetime
import uuid
from typing import Any

import pytest
from click.testing import CliRunner

from ckanext.dcor_depot import config
from ckanext.dcor_depot.cli.audit import audit, rolling_lines
from ckanext.dcor_depot.operations.audit import rolling
from ckanext.dcor_depot.operations.audit.findings import Report
from ckanext.dcor_depot.operations.audit.scan import SiteScan
from ckanext.dcor_depot.records.inventory import AuditRecord
from ckanext.dcor_depot.storage import layout, object_store, survey
from tests.support.store import ENDPOINT

UTC = datetime.timezone.utc
NOW = datetime.datetime(2026, 12, 10, 3, 0, tzinfo=UTC)
IDS = [str(uuid.UUID(int=n * 7919 + 1)) for n in range(500)]


def test_a_share_is_a_hash_of_the_id_the_same_everywhere():
    # sha256("00000000-0000-0000-0000-000000000001") starts with 7ac1b8d7
    assert rolling.share_of("00000000-0000-0000-0000-000000000001", 7) == \
        int("7ac1b8d7", 16) % 7
    assert [rolling.share_of(rid, 7) for rid in IDS] == \
        [rolling.share_of(rid, 7) for rid in IDS]
    assert rolling.share_of(IDS[0], 1) == 0


@pytest.mark.parametrize("days", [1, 2, 3, 7, 30])
def test_every_id_lands_in_exactly_one_share(days):
    shares = [{rid for rid in IDS if rolling.share_of(rid, days) == k}
              for k in range(days)]
    assert sum(len(share) for share in shares) == len(IDS)
    assert set().union(*shares) == set(IDS)
    # roughly even: no share holds more than twice its part
    assert max(len(share) for share in shares) <= 2 * len(IDS) / days


@pytest.mark.parametrize("days", [1, 3, 7])
def test_days_complete_runs_cover_every_share(days):
    state, covered, started = None, set(), NOW
    for _ in range(days):
        plan = rolling.plan(state, days)
        covered.add(plan.share)
        state = rolling.advance(state, plan, started.isoformat())
        started += datetime.timedelta(days=1)
    assert covered == set(range(days))
    assert state is not None and state.next_share == 0
    assert sorted(state.checked) == list(range(days))


def test_the_first_run_checks_share_0_and_no_changes():
    plan = rolling.plan(None, 7)
    assert (plan.share, plan.since) == (0, None)
    assert "no rolling run recorded yet" in plan.restarted
    state = rolling.advance(None, plan, "2026-12-10T03:00:00+00:00")
    assert state == rolling.Rotation(7, 1, "2026-12-10T03:00:00+00:00",
                                     {0: "2026-12-10T03:00:00+00:00"})
    following = rolling.plan(state, 7)
    assert (following.share, following.since, following.restarted) == \
        (1, "2026-12-10T03:00:00+00:00", "")


def test_an_incomplete_run_leaves_the_rotation_so_the_share_comes_again():
    state = rolling.Rotation(3, 2, "2026-12-09T03:00:00+00:00",
                             {0: "2026-12-08T03:00:00+00:00",
                              1: "2026-12-09T03:00:00+00:00"})
    # the runner only calls advance() after a complete run; planning
    # again without it gives the same share and the same cut-off
    assert rolling.plan(state, 3) == rolling.plan(state, 3)
    assert rolling.plan(state, 3).share == 2
    after = rolling.advance(state, rolling.plan(state, 3),
                            "2026-12-10T03:00:00+00:00")
    assert after.next_share == 0
    assert after.checked[2] == "2026-12-10T03:00:00+00:00"


def test_another_days_restarts_the_rotation_but_keeps_the_changes():
    state = rolling.Rotation(7, 4, "2026-12-09T03:00:00+00:00",
                             {k: f"2026-12-0{k + 1}T03:00:00+00:00"
                              for k in range(4)})
    plan = rolling.plan(state, 3)
    assert plan.share == 0
    assert plan.since == "2026-12-09T03:00:00+00:00"
    assert "DAYS changed from 7 to 3" in plan.restarted
    after = rolling.advance(state, plan, "2026-12-10T03:00:00+00:00")
    assert after == rolling.Rotation(3, 1, "2026-12-10T03:00:00+00:00",
                                     {0: "2026-12-10T03:00:00+00:00"})


def test_a_later_run_recorded_meanwhile_keeps_its_place():
    """Two hosts started from the same rotation; the later one finished
    first: the earlier one only records its share's time."""
    later = rolling.Rotation(3, 2, "2026-12-10T04:00:00+00:00",
                             {1: "2026-12-10T04:00:00+00:00"})
    plan = rolling.Plan(3, 1, "2026-12-09T03:00:00+00:00")
    after = rolling.advance(later, plan, "2026-12-10T03:00:00+00:00")
    assert (after.next_share, after.last_started) == \
        (2, "2026-12-10T04:00:00+00:00")
    assert after.checked[1] == "2026-12-10T04:00:00+00:00"


@pytest.mark.parametrize("data", [
    None, [], "x", {}, {"days": 0, "next_share": 0},
    {"days": 3, "next_share": 3}, {"days": "3", "next_share": 0}])
def test_a_kept_rotation_that_is_no_rotation_is_none(data):
    assert rolling.Rotation.from_json(data) is None


def test_the_rotation_reads_back_what_it_wrote():
    state = rolling.Rotation(5, 3, "2026-12-10T03:00:00+00:00",
                             {0: "2026-12-06T03:00:00+00:00",
                              2: "2026-12-09T03:00:00+00:00"})
    assert rolling.Rotation.from_json(state.as_json()) == state
    odd = state.as_json() | {"checked": {"9": "2026-12-01T00:00:00",
                                         "x": "t", "1": "never"},
                             "last_started": 17}
    assert rolling.Rotation.from_json(odd) == rolling.Rotation(5, 3)


# -------------------------------------------------------- the selection
@pytest.fixture
def s3_settings(monkeypatch) -> config.S3Settings:
    settings = config.S3Settings(
        endpoint_url=ENDPOINT, access_key_id="key-id",
        secret_access_key="secret", ssl_verify=True,
        bucket_template="dcor-{organization_id}-objects")
    monkeypatch.setattr(config, "s3_settings", lambda: settings)
    return settings


def record(rid: str, modified: datetime.datetime, org: str = "org-a",
           resource_modified: datetime.datetime | None = None
           ) -> AuditRecord:
    naive = modified.astimezone(UTC).replace(tzinfo=None)
    return AuditRecord(
        id=rid, state="active", url_type="upload", size=1, created=naive,
        dataset_id="ds-" + rid[-4:], dataset_name="ds", dataset_state="active",
        private=False, dataset_modified=naive, owner_org=org, org_name=org,
        s3_available=True, s3_url=None, sha256=None, moved_from=None,
        verified_at=None, resource_modified=resource_modified and
        resource_modified.astimezone(UTC).replace(tzinfo=None))


def site(records: list[AuditRecord], extra: dict[str, list[str]]
         ) -> SiteScan:
    """Every record's object in its bucket, plus ``extra`` keys."""
    buckets: dict[str, survey.BucketSurvey] = {}
    for rec in records:
        bucket = object_store.bucket_name(rec.owner_org or "")
        found = buckets.setdefault(bucket, survey.BucketSurvey(bucket))
        key = layout.object_key(rec.id)
        found.objects[key] = survey.StoredObject(key, 1, "e", NOW)
    for bucket, keys in extra.items():
        found = buckets.setdefault(bucket, survey.BucketSurvey(bucket))
        for key in keys:
            found.objects[key] = survey.StoredObject(key, 1, "e", NOW)
    return SiteScan(now=NOW, records=records, org_names={}, store=True,
                    buckets=buckets)


def test_a_run_reads_its_share_changes_and_orphans_only(s3_settings):
    old = NOW - datetime.timedelta(days=30)
    previous_start = NOW - datetime.timedelta(days=1)
    records = [record(rid, old) for rid in IDS[:60]]
    outside = [r for r in records if rolling.share_of(r.id, 3) != 1]
    changed_ds = record(outside[0].id, previous_start
                        + datetime.timedelta(hours=2))
    changed_res = record(outside[1].id, old, resource_modified=previous_start
                         - datetime.timedelta(minutes=5))  # in the margin
    before_margin = record(outside[2].id, previous_start
                           - datetime.timedelta(hours=1))
    records = [r for r in records if r.id not in
               {outside[0].id, outside[1].id, outside[2].id}] + \
        [changed_ds, changed_res, before_margin]
    orphan = str(uuid.uuid4())
    strange = object_store.bucket_name("org-gone")
    scan = site(records, {
        object_store.bucket_name("org-a"): [layout.object_key(orphan),
                                            "notes/readme.txt"],
        # a resource's object in a bucket that is not its own: an orphan
        strange: [layout.object_key(IDS[0])]})
    chosen = rolling.select(scan, rolling.Plan(
        3, 1, previous_start.isoformat()))

    share = {r.id for r in records if rolling.share_of(r.id, 3) == 1}
    assert share and len(share) < len(records)
    assert chosen.ids == share | {changed_ds.id, changed_res.id}
    assert chosen.changed == 2
    # --deep reads the share and the changed resources not verified since
    assert chosen.rehash == share | {changed_ds.id, changed_res.id}
    verified = dataclasses.replace(changed_ds, verified_at=(
        previous_start + datetime.timedelta(hours=3)).isoformat())
    again = rolling.select(site([verified if r is changed_ds else r
                                 for r in records], {}),
                           rolling.Plan(3, 1, previous_start.isoformat()))
    assert again.ids == chosen.ids  # its tags are still read
    assert again.rehash == share | {changed_res.id}
    assert set(chosen.objects) == {
        (object_store.bucket_name("org-a"), layout.object_key(rid))
        for rid in chosen.ids} | {
        (object_store.bucket_name("org-a"), layout.object_key(orphan)),
        (strange, layout.object_key(IDS[0]))}


def test_without_a_previous_run_nothing_counts_as_changed(s3_settings):
    records = [record(rid, NOW) for rid in IDS[:30]]
    chosen = rolling.select(site(records, {}), rolling.plan(None, 3))
    assert chosen.ids == {r.id for r in records
                          if rolling.share_of(r.id, 3) == 0}
    assert chosen.changed == 0


# ------------------------------------------------- the report and the CLI
def test_the_report_names_the_share_and_when_each_share_was_checked():
    plan = rolling.Plan(3, 1, "2026-12-09T03:00:00+00:00")
    chosen = rolling.Selection(plan, frozenset({"a", "b"}), 1,
                               [("b", "k1"), ("b", "k2"), ("b", "k3")])
    after = rolling.Rotation(3, 2, "2026-12-10T03:00:00+00:00",
                             {0: "2026-12-09T03:00:00+00:00",
                              1: "2026-12-10T03:00:00+00:00"})
    entry = rolling.report_entry(chosen, after, advanced=True)
    assert entry == {
        "days": 3, "share": 1, "since": "2026-12-09T03:00:00+00:00",
        "restarted": "", "resources_checked": 2, "changed": 1,
        "objects_tag_checked": 3, "advanced": True, "next_share": 2,
        "shares": {"0": "2026-12-09T03:00:00+00:00",
                   "1": "2026-12-10T03:00:00+00:00", "2": None}}
    report = Report(started="s", rolling=entry)
    assert Report.from_json(report.as_json()).rolling == entry
    lines = rolling_lines(entry)
    assert lines[0].startswith("rolling: share 1 of 3 (0-2): tags of 3 "
                               "objects of 2 resources read (1 changed")
    assert lines[-1] == ("rolling: shares last checked: 0 2026-12-09T03:00:"
                         "00+00:00, 1 2026-12-10T03:00:00+00:00, 2 never")
    stuck = rolling.report_entry(chosen, after, advanced=False)
    assert stuck["next_share"] == 1
    assert "share 1 again" in rolling_lines(stuck)[1]


@pytest.mark.parametrize("args, message", [
    (["--rolling", "7", "--deep", "--sample", "10"],
     "--sample and --rolling exclude each other"),
    (["--rolling", "7", "--sample", "10"],
     "--sample and --rolling exclude each other"),
    (["--rolling", "7", "--organization", "lab-a"],
     "--rolling audits the whole site: it excludes --organization"),
    (["--rolling", "0"], "--rolling"),
    (["--rolling", "x"], "--rolling"),
])
def test_options_that_exclude_each_other_are_refused(args, message):
    result = _invoke(args)
    assert result.exit_code == 2, result.output
    assert message in result.stderr
    assert result.stdout == ""


def _invoke(args: list[str]) -> Any:
    try:
        runner = CliRunner(mix_stderr=False)  # type: ignore[call-arg]
    except TypeError:  # click 8.2 keeps them apart anyway
        runner = CliRunner()
    return runner.invoke(audit, args)


def test_the_operator_page_lists_every_share_and_the_next():
    from ckanext.dcor_depot.operations import operator_overview
    rotation = rolling.Rotation(3, 2, "2026-12-10T03:00:00+00:00",
                                {1: "2026-12-10T03:00:00+00:00"})
    rows = operator_overview.rotation_rows(rotation)
    assert [(row.share, row.checked, row.next) for row in rows] == [
        (0, None, False), (1, "2026-12-10T03:00:00+00:00", False),
        (2, None, True)]
    assert operator_overview.rotation_rows(None) == []
