"""``ckan run-jobs-dcor-depot [--modified-days N]``."""
from __future__ import annotations

import datetime
import os

import ckan.model as model
import ckan.plugins.toolkit as tk
import pytest
from ckan.tests import helpers

from ckanext.dcor_depot.records import inventory
from ckanext.dcor_depot.sample_data import make_rtdc_file
from ckanext.dcor_depot.storage import layout
from tests.support.access import fresh_resource
from tests.support.cli import bucket_of, invoke, resource_object, summary
from tests.support.stack import sysadmin_context
from tests.support.store import s3_requests

pytestmark = pytest.mark.usefixtures("with_extended_cli")

COMMAND = "run-jobs-dcor-depot"


def test_runs_the_jobs_for_every_resource(cli, owner, make_dataset, upload):
    """Uploads whose queued jobs never ran (e.g. the worker was down)."""
    public = make_dataset(private=False)
    draft = make_dataset(private=True)
    res_public = upload(public, os.urandom(2000), name="a.bin")
    res_draft = upload(draft, os.urandom(2100), name="b.bin")
    helpers.call_action("package_patch", id=draft["id"], state="draft")

    result = invoke(cli, COMMAND)

    assert result.exit_code == 0, result.output
    for res in (res_public, res_draft):
        assert (f"{res['id']}: moved to the user depot; uploaded to S3"
                in result.stdout)
        path = layout.ckan_upload_path(res["id"])
        assert path.is_symlink()
        shown = fresh_resource(res["id"])
        assert tk.asbool(shown["s3_available"])
        assert resource_object(owner, res["id"]) == path.read_bytes()
    assert summary(result) == f"{COMMAND}: 2 done, 0 skipped, 0 failed"

    again = invoke(cli, COMMAND)
    assert again.exit_code == 0, again.output
    assert again.stdout.count("nothing to do") == 2
    assert summary(again) == f"{COMMAND}: 0 done, 2 skipped, 0 failed"


def test_backs_up_s3_route_resources(cli, owner, make_dataset, tmp_path):
    dataset = make_dataset()
    path = make_rtdc_file(tmp_path / "m.rtdc", events=30)
    data = path.read_bytes()
    assert invoke(cli, "append-resource", path, dataset["id"]).exit_code == 0
    (res,) = helpers.call_action("package_show",
                                 id=dataset["id"])["resources"]
    backup = layout.backup_path(res["id"])
    assert not backup.exists()  # its queued backup job did not run

    result = invoke(cli, COMMAND)

    assert result.exit_code == 0, result.output
    assert f"{res['id']}: backed up to {backup}" in result.stdout
    assert backup.read_bytes() == data
    again = invoke(cli, COMMAND)
    assert summary(again) == f"{COMMAND}: 0 done, 1 skipped, 0 failed"


def test_a_failing_job_is_reported_and_the_rest_goes_on(
        cli, owner, make_dataset, upload):
    dataset = make_dataset()
    bad = upload(dataset, os.urandom(2000), name="bad.bin")
    good = upload(dataset, os.urandom(2000), name="good.bin")
    # A checksum on record that the file does not have: the upload job
    # must refuse it.
    helpers.call_action("resource_patch", context=sysadmin_context(),
                        id=bad["id"], sha256="0" * 64)

    result = invoke(cli, COMMAND)

    assert result.exit_code == 1
    assert bad["id"] in result.stderr
    assert "s3-upload failed" in result.stderr
    assert "does not match the recorded checksum" in result.stderr
    # its other jobs and the other resource were still handled
    assert layout.ckan_upload_path(bad["id"]).is_symlink()
    assert not fresh_resource(bad["id"]).get("s3_available")
    assert tk.asbool(fresh_resource(good["id"])["s3_available"])
    assert summary(result) == f"{COMMAND}: 1 done, 0 skipped, 1 failed"


def test_modified_days_limits_the_datasets(cli, owner, make_dataset, upload):
    old_dataset = make_dataset()
    old = upload(old_dataset, os.urandom(1000), name="old.bin")
    recent = upload(make_dataset(), os.urandom(1000), name="new.bin")
    pkg = model.Package.get(old_dataset["id"])
    pkg.metadata_modified = (datetime.datetime.utcnow()
                             - datetime.timedelta(days=30))
    model.Session.commit()

    result = invoke(cli, COMMAND, "--modified-days", 7)

    assert result.exit_code == 0, result.output
    assert summary(result) == f"{COMMAND}: 1 done, 0 skipped, 0 failed"
    assert layout.ckan_upload_path(recent["id"]).is_symlink()
    assert not layout.ckan_upload_path(old["id"]).is_symlink()


#: the clock of the boundary tests (a past date: the jobs set the real
#: time as metadata_modified, which stays after it)
NOW = datetime.datetime(2020, 6, 15, 9, 30, tzinfo=datetime.timezone.utc)


def modified_at(dataset: dict, when: datetime.datetime) -> None:
    model.Package.get(dataset["id"]).metadata_modified = when
    model.Session.commit()


def boundary_datasets(make_dataset, upload) -> dict[str, str]:
    """Resource ids by when their dataset was modified (naive UTC)."""
    times = {"23:59 yesterday": datetime.datetime(2020, 6, 14, 23, 59),
             "00:00 today": datetime.datetime(2020, 6, 15, 0, 0),
             "two days ago": datetime.datetime(2020, 6, 13, 12, 0)}
    rids = {}
    for label, when in times.items():
        dataset = make_dataset()
        rids[label] = upload(dataset, os.urandom(500), name="x.bin")["id"]
        modified_at(dataset, when)
    return rids


def test_modified_days_boundary_in_the_inventory(make_dataset, upload):
    rids = boundary_datasets(make_dataset, upload)

    def selected(days: int) -> set[str]:
        return {r.id for r in inventory.resource_records(days, now=NOW)}

    assert selected(0) == {rids["00:00 today"]}
    assert selected(1) == {rids["00:00 today"], rids["23:59 yesterday"]}
    assert selected(2) == set(rids.values()) == selected(-1)


def test_modified_days_counts_whole_utc_dates(cli, owner, make_dataset,
                                              upload, monkeypatch):
    rids = boundary_datasets(make_dataset, upload)
    monkeypatch.setattr(inventory, "utc_now", lambda: NOW)

    today = invoke(cli, COMMAND, "--modified-days", 0)

    assert today.exit_code == 0, today.output
    assert summary(today) == f"{COMMAND}: 1 done, 0 skipped, 0 failed"
    assert rids["00:00 today"] in today.stdout
    assert rids["23:59 yesterday"] not in today.stdout
    since_yesterday = invoke(cli, COMMAND, "--modified-days", 1)
    assert since_yesterday.exit_code == 0, since_yesterday.output
    assert f"{rids['23:59 yesterday']}: moved to the user depot" \
        in since_yesterday.stdout
    assert rids["two days ago"] not in since_yesterday.stdout
    assert not layout.ckan_upload_path(rids["two days ago"]).is_symlink()


@pytest.mark.ckan_config("dcor_object_store.access_key_id", "")
@pytest.mark.ckan_config("dcor_object_store.secret_access_key", "")
def test_without_s3_only_the_symlink_job_runs(cli, owner, make_dataset,
                                              upload):
    res = upload(make_dataset(), os.urandom(1000), name="x.bin")
    result = invoke(cli, COMMAND)
    assert result.exit_code == 0, result.output
    assert f"{res['id']}: moved to the user depot" in result.stdout
    assert "S3" not in result.stdout.split("\n")[0]
    assert not fresh_resource(res["id"]).get("s3_available")


def test_negative_modified_days_are_refused(cli, owner, make_dataset,
                                            upload):
    res = upload(make_dataset(), os.urandom(1000), name="x.bin")
    result = invoke(cli, COMMAND, "--modified-days", -3)
    assert result.exit_code == 2
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith(f"{COMMAND}: --modified-days must be -1")
    assert not layout.ckan_upload_path(res["id"]).is_symlink()


def rq_job_keys() -> set[bytes]:
    """Every job RQ holds (queued, running, finished or failed)."""
    from ckan.lib import jobs as ckan_jobs
    return set(ckan_jobs.connect_to_redis().scan_iter(match="rq:job:*"))


def test_a_run_with_nothing_to_do_reads_listings_and_queues_nothing(
        cli, owner, make_dataset, upload):
    """The second run: one listing, no request per object, no job
    queued, no resource or dataset touched."""
    from ckanext.dcor_depot.operations.migrate import plan
    dataset = make_dataset()
    made = [upload(dataset, os.urandom(1000 + index), name=f"f{index}.bin")
            for index in range(plan.LISTING_MIN_RESOURCES + 1)]
    first = invoke(cli, COMMAND)
    assert first.exit_code == 0, first.output
    assert summary(first) == f"{COMMAND}: {len(made)} done, 0 skipped, " \
                             "0 failed"
    modified = {res["id"]: model.Resource.get(res["id"]).metadata_modified
                for res in made}
    dataset_modified = model.Package.get(dataset["id"]).metadata_modified
    jobs_before = rq_job_keys()

    with s3_requests() as sent:
        again = invoke(cli, COMMAND)

    assert again.exit_code == 0, again.output
    assert summary(again) == f"{COMMAND}: 0 done, {len(made)} skipped, " \
                             "0 failed"
    assert sent == ["ListObjectsV2"]
    assert rq_job_keys() - jobs_before == set()
    model.Session.expire_all()
    assert {rid: model.Resource.get(rid).metadata_modified
            for rid in modified} == modified
    assert model.Package.get(dataset["id"]).metadata_modified \
        == dataset_modified


def test_a_listed_object_of_another_size_is_uploaded_again(
        cli, owner, make_dataset, upload):
    """The listing is trusted only for objects that look like the file."""
    from ckanext.dcor_depot.operations.migrate import plan
    from ckanext.dcor_depot.storage import object_store
    dataset = make_dataset()
    made = [upload(dataset, os.urandom(1000 + index), name=f"f{index}.bin")
            for index in range(plan.LISTING_MIN_RESOURCES)]
    assert invoke(cli, COMMAND).exit_code == 0
    damaged = made[0]["id"]
    object_store.get_client().put_object(
        Bucket=bucket_of(owner), Key=layout.object_key(damaged),
        Body=b"short")

    result = invoke(cli, COMMAND)

    assert result.exit_code == 0, result.output
    assert f"{damaged}: uploaded to S3" in result.stdout
    assert resource_object(owner, damaged) \
        == layout.ckan_upload_path(damaged).read_bytes()
    assert summary(result) == f"{COMMAND}: 1 done, {len(made) - 1} " \
                              "skipped, 0 failed"
