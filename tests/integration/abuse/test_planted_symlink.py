"""A symlink planted at an upload path, leading outside the storage.

``shadow`` stands for a file such as /etc/shadow that the CKAN user can
read. Whatever runs afterwards (the jobs in the queue, the commands, the
audit and its repairs, the download URL) must never copy, upload, move,
hash into metadata or serve it, and the resource must end in a clear
state: the link left alone, no object, the failure named.

Already covered: the symlink job leaves a symlinked upload path alone
(``storage/test_depot.test_symlinked_upload_path_is_left_alone``), and
CKAN's view serves no symlink outside the depots
(``logic/test_uploader.test_symlink_outside_the_depots_is_not_served``,
which now also gets a clean 404 here).
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import ckan.plugins.toolkit as tk
import pytest
import requests
from rq.job import Job

from ckanext.dcor_depot import config
from ckanext.dcor_depot.operations import append
from ckanext.dcor_depot.storage import layout
from tests.support.access import (
    anon_status,
    dataset,
    download_url,
    fresh_resource,
    object_url,
    upload,
)
from tests.support.cli import invoke, resource_object
from tests.support.stack import run_jobs

pytestmark = pytest.mark.usefixtures("with_extended_cli")

SECRET = b"root:$6$saltsalt$hash-of-the-root-password:19000:0:99999:7:::\n"
DATA = b"the measurement the user uploaded " * 50


@pytest.fixture
def shadow(tmp_path) -> Path:
    path = tmp_path / "etc" / "shadow"
    path.parent.mkdir()
    path.write_bytes(SECRET)
    return path


@pytest.fixture
def planted(site, org, shadow):
    """A public dataset whose new upload was replaced by a link to
    ``shadow`` before its queued jobs ran."""
    ds = dataset(site, org, private=False)
    res = upload(site, org.editor, ds["id"], DATA, name="cells.rtdc")
    path = layout.ckan_upload_path(res["id"])
    path.unlink()
    os.symlink(shadow, path)
    return ds, res


def owner_of(org) -> dict:
    return {"org": {"id": org.id}}


def assert_untouched(res: dict, shadow: Path, org) -> None:
    """The outside file stayed where it was, unread by anybody."""
    path = layout.ckan_upload_path(res["id"])
    assert os.readlink(path) == str(shadow)
    assert shadow.read_bytes() == SECRET
    assert resource_object(owner_of(org), res["id"]) is None
    assert anon_status(object_url(org.id, res["id"])) in (403, 404)
    shown = fresh_resource(res["id"])
    assert not tk.asbool(shown.get("s3_available"))
    assert not shown.get("s3_url")
    assert shown.get("sha256") != hashlib.sha256(SECRET).hexdigest()
    assert not any(p.is_file() and p.read_bytes() == SECRET
                   for p in config.depots_path().rglob("*")
                   if not p.is_symlink())


def failed_jobs() -> dict[str, str]:
    from ckan.lib import jobs
    found = {}
    for name in ("dcor-short", "dcor-normal", "default"):
        queue = jobs.get_queue(name)
        ids = queue.failed_job_registry.get_job_ids()
        # An earlier test's entry may outlive its job hash (RQ 1.x keeps
        # registry entries after the job expired): skip those.
        fetched = Job.fetch_many(ids, connection=queue.connection)
        for jid, job in zip(ids, fetched, strict=True):
            if job is not None:
                found[jid] = job.exc_info or ""
    return found


def test_the_queued_jobs_fail_clearly_and_leave_it_alone(site, org,
                                                         planted, shadow):
    ds, res = planted
    run_jobs()

    assert_untouched(res, shadow, org)
    failures = failed_jobs()
    upload_failure = failures[f"{res['id']}-s3-upload"]
    assert "outside the depots" in upload_failure
    assert str(shadow) in upload_failure
    # the download URL of the public dataset: a clean 404, no bytes
    for who in (None, org.editor):
        headers = {"Authorization": who.token} if who else {}
        answer = requests.get(download_url(site, res), headers=headers,
                              timeout=30, allow_redirects=False)
        assert answer.status_code == 404
        assert SECRET not in answer.content


def test_run_jobs_and_the_migration_report_it(cli, site, org, planted,
                                              shadow):
    _, res = planted
    jobs = invoke(cli, "run-jobs-dcor-depot")
    assert jobs.exit_code == 1
    assert f"{res['id']}: s3-upload failed" in jobs.stderr
    assert "outside the depots" in jobs.stderr

    for flags in ([], ["--verify-checksum", "--delete-after-migration"]):
        migrate = invoke(cli, "dcor-migrate-resources-to-object-store",
                         *flags)
        assert migrate.exit_code == 1, migrate.output
        assert res["id"] in migrate.output
        assert "outside the depots" in migrate.output
        assert "Traceback" not in migrate.output
    assert_untouched(res, shadow, org)


def test_the_audit_reports_it_and_its_repair_reads_nothing(cli, site, org,
                                                           planted, shadow):
    _, res = planted
    scope = ("--grace-hours", "0", "--organization", org.name)
    result = invoke(cli, "dcor-depot-audit", "--json", *scope)
    assert result.exit_code == 1, result.output
    report = json.loads(result.stdout)
    kinds = {(f["kind"], f["resource"]) for f in report["findings"]}
    assert ("foreign-link", res["id"]) in kinds
    assert ("sha256-missing", res["id"]) not in kinds  # sha256 is known
    [finding] = [f for f in report["findings"] if f["kind"] == "foreign-link"]
    assert str(shadow) in finding["detail"]
    # its bytes are nowhere else: the data are lost, as far as we can tell
    assert ("data-lost", res["id"]) in kinds

    fixing = invoke(cli, "dcor-depot-audit", "--fix", *scope)
    assert fixing.exit_code == 1
    assert "Traceback" not in fixing.output
    assert_untouched(res, shadow, org)


def test_a_stored_resource_is_served_from_the_store_not_the_link(
        cli, site, org, shadow):
    ds = dataset(site, org, private=False)
    res = upload(site, org.editor, ds["id"], DATA, name="cells.rtdc")
    run_jobs()
    path = layout.ckan_upload_path(res["id"])
    depot_file = Path(os.readlink(path))
    os.unlink(path)
    os.symlink(shadow, path)

    answer = requests.get(download_url(site, res), timeout=30)
    assert answer.status_code == 200
    assert answer.content == DATA  # from the verified object
    assert SECRET not in answer.content
    # nothing deleted, nothing uploaded over the object
    result = invoke(cli, "dcor-migrate-resources-to-object-store",
                    "--verify-checksum", "--delete-after-migration")
    assert result.exit_code == 1
    assert shadow.read_bytes() == SECRET
    assert depot_file.read_bytes() == DATA
    assert resource_object(owner_of(org), res["id"]) == DATA


def test_a_linked_folder_on_the_way_is_not_followed(site, org, tmp_path):
    ds = dataset(site, org, private=False)
    res = upload(site, org.editor, ds["id"], DATA, name="cells.rtdc")
    path = layout.ckan_upload_path(res["id"])
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / path.name).write_bytes(SECRET)
    shutil.rmtree(path.parent)
    os.symlink(outside, path.parent)

    run_jobs()

    # not moved into a depot (which would replace it by a link), not
    # uploaded
    assert (outside / path.name).read_bytes() == SECRET
    assert not (outside / path.name).is_symlink()
    assert resource_object(owner_of(org), res["id"]) is None
    assert "outside the depots" in failed_jobs()[f"{res['id']}-symlink"]


@pytest.mark.ckan_config("dcor_object_store.access_key_id", "")
@pytest.mark.ckan_config("dcor_object_store.secret_access_key", "")
def test_append_never_takes_a_planted_link_for_its_copy(
        cli, owner, make_dataset, tmp_path):
    """Without S3 the file goes to the upload path. A link planted there
    to a file with the same bytes is no verified copy: the source is
    deleted only after a real copy was made."""
    ds = make_dataset()
    source = tmp_path / "cells.txt"
    source.write_bytes(DATA)
    lookalike = tmp_path / "elsewhere.txt"
    lookalike.write_bytes(DATA)
    rid = append.resource_id_for(ds["id"], source.name,
                                 hashlib.sha256(DATA).hexdigest())
    path = layout.ckan_upload_path(rid)
    path.parent.mkdir(parents=True, exist_ok=True)
    os.symlink(lookalike, path)

    result = invoke(cli, "append-resource", source, ds["id"],
                    "--delete-source")

    assert result.exit_code == 0, result.output
    assert not path.is_symlink() and path.read_bytes() == DATA
    assert not source.exists()
    assert lookalike.read_bytes() == DATA


@pytest.mark.parametrize("special", ["/dev/zero", "fifo"])
def test_a_link_to_a_special_file_is_foreign(site, org, tmp_path, special):
    """Regression (review of issue 15): a link to a device or a FIFO
    counted as a file of ours; the upload job would have stored the
    device's bytes (or hung on the FIFO)."""
    ds = dataset(site, org, private=False)
    res = upload(site, org.editor, ds["id"], DATA, name="cells.rtdc")
    path = layout.ckan_upload_path(res["id"])
    path.unlink()
    target = special
    if special == "fifo":
        target = str(tmp_path / "fifo")
        os.mkfifo(target)
    os.symlink(target, path)
    assert layout.foreign_file(path) == os.path.realpath(target)
    assert not layout.owned_file(path)
    run_jobs()
    failures = failed_jobs()
    assert "outside the depots" in failures[f"{res['id']}-s3-upload"]
    assert resource_object(owner_of(org), res["id"]) is None
    assert not tk.asbool(fresh_resource(res["id"]).get("s3_available"))
