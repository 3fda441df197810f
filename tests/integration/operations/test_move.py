"""Data follow their dataset to its new organization's bucket.

Owner changes go over HTTP with the token of an editor of both
organizations; after every step the test asks what an anonymous visitor
of each bucket gets, and at the end the bytes in the new bucket are
checked against the recorded ``sha256``.
"""
from __future__ import annotations

import hashlib
import os
import subprocess
import uuid

import pytest
from ckan.tests import helpers
from click.testing import CliRunner

from ckanext.dcor_depot import errors
from ckanext.dcor_depot.cli import move as move_cli
from ckanext.dcor_depot.operations import move
from ckanext.dcor_depot.storage import layout, object_store, transfer
from tests.support.access import (
    Org,
    anon_status,
    dataset,
    fresh_dataset,
    fresh_resource,
    object_url,
    organization,
    person,
    put_artifact,
    stored_resource,
)
from tests.support.stack import (
    ckan_command,
    kill_tree,
    run_jobs,
    sysadmin_context,
    wait_for,
    worker_log,
)


@pytest.fixture
def orgs(site):
    """Organizations A and B; A's editor also edits in B."""
    org_a, org_b = organization(), organization()
    helpers.call_action("organization_member_create", id=org_b.id,
                        username=org_a.editor.name, role="editor")
    return org_a, org_b


def stored_bytes(org_id: str, rid: str, artifact: str = "resource") -> bytes:
    return object_store.get_client().get_object(
        Bucket=object_store.bucket_name(org_id),
        Key=layout.object_key(rid, artifact))["Body"].read()


def assert_moved(res: dict, org_from: Org, org_to: Org, data: bytes) -> None:
    """s3_url names the new bucket, whose object holds the recorded bytes;
    the old object is gone."""
    after = fresh_resource(res["id"])
    assert after["s3_url"] == object_url(org_to.id, res["id"])
    assert hashlib.sha256(data).hexdigest() == after["sha256"]
    assert hashlib.sha256(stored_bytes(org_to.id, res["id"])).hexdigest() \
        == after["sha256"]
    assert gone(org_from.id, res["id"])
    assert anon_status(object_url(org_from.id, res["id"])) == 403


def gone(org_id: str, rid: str, artifact: str = "resource") -> bool:
    return not object_store.object_exists(object_store.bucket_name(org_id),
                                          layout.object_key(rid, artifact))


def change_owner(site, who, ds, org, how: str = "package_patch") -> None:
    if how == "package_patch":
        site.action("package_patch", who.token, id=ds["id"],
                    owner_org=org.id)
    else:  # a sysadmin's action: the editor is refused, nothing changes
        assert site.status("package_owner_org_update", who.token,
                           id=ds["id"], organization_id=org.id) == 403
        assert move.pending_moves(ds["id"]) == {}
        site.action("package_owner_org_update", person(sysadmin=True).token,
                    id=ds["id"], organization_id=org.id)


@pytest.mark.parametrize("how", ["package_patch", "package_owner_org_update"])
def test_a_public_dataset_moves_with_its_data(site, orgs, how):
    org_a, org_b = orgs
    ds = dataset(site, org_a, private=False)
    data = b"public measurement"
    res = stored_resource(site, org_a.editor, ds["id"], data)
    condensed = put_artifact(org_a.id, res["id"], "condensed", b"condensed")
    run_jobs()
    old_url = res["s3_url"]
    assert anon_status(old_url) == 200

    change_owner(site, org_a.editor, ds, org_b, how)
    # Until the data have moved they stay reachable where s3_url says.
    assert fresh_resource(res["id"])["s3_url"] == old_url
    assert anon_status(old_url) == 200
    assert anon_status(object_url(org_b.id, res["id"])) == 403

    run_jobs()
    assert_moved(res, org_a, org_b, data)
    assert anon_status(object_url(org_b.id, res["id"])) == 200
    assert anon_status(object_url(org_b.id, res["id"], "condensed")) == 200
    assert stored_bytes(org_b.id, res["id"], "condensed") == b"condensed"
    assert gone(org_a.id, res["id"], "condensed")
    assert anon_status(condensed) == 403
    assert move.pending_moves(ds["id"]) == {}


def test_a_moved_dataset_made_private_closes_both_buckets(site, orgs):
    """The reported leak: moved, then made private, the old objects stayed
    public."""
    org_a, org_b = orgs
    ds = dataset(site, org_a, private=False)
    data = b"soon private"
    res = stored_resource(site, org_a.editor, ds["id"], data)
    change_owner(site, org_a.editor, ds, org_b)
    assert anon_status(res["s3_url"]) == 200
    site.action("package_patch", org_a.editor.token, id=ds["id"],
                private=True)
    assert anon_status(res["s3_url"]) == 403

    run_jobs()
    assert_moved(res, org_a, org_b, data)
    assert anon_status(object_url(org_b.id, res["id"])) == 403
    # Public again: open in the new bucket.
    site.action("package_patch", org_a.editor.token, id=ds["id"],
                private=False)
    assert anon_status(object_url(org_b.id, res["id"])) == 200


def test_a_private_dataset_moves_and_stays_closed(site, orgs):
    org_a, org_b = orgs
    ds = dataset(site, org_a, private=True)
    data = b"private measurement"
    res = stored_resource(site, org_a.editor, ds["id"], data)
    assert anon_status(res["s3_url"]) == 403
    change_owner(site, org_a.editor, ds, org_b)
    assert anon_status(res["s3_url"]) == 403
    run_jobs()
    assert_moved(res, org_a, org_b, data)
    assert anon_status(object_url(org_b.id, res["id"])) == 403


def test_a_dataset_made_private_during_its_move(site, orgs, monkeypatch):
    org_a, org_b = orgs
    ds = dataset(site, org_a, private=False)
    data = b"closed mid-move"
    res = stored_resource(site, org_a.editor, ds["id"], data)
    change_owner(site, org_a.editor, ds, org_b)
    copy = transfer.copy_verified
    seen = {}

    def copy_then_close(*args, **kwargs):
        sha = copy(*args, **kwargs)
        if not seen:  # the first copy is made: the editor closes it all
            site.action("package_patch", org_a.editor.token, id=ds["id"],
                        private=True)
            seen["old"] = anon_status(res["s3_url"])
        return sha

    monkeypatch.setattr(transfer, "copy_verified", copy_then_close)
    run_jobs()
    assert seen == {"old": 403}
    assert_moved(res, org_a, org_b, data)
    assert anon_status(object_url(org_b.id, res["id"])) == 403
    assert fresh_dataset(ds["id"])["private"] is True


def direct_resources(org: Org, dataset_id: str, count: int, size: int
                     ) -> dict[str, bytes]:
    """Resources whose data a sysadmin placed in the store directly (no
    local files): ``{resource id: bytes}``."""
    made = {}
    bucket = object_store.bucket_name(org.id)
    object_store.ensure_bucket(bucket)
    s3 = object_store.get_client()
    for i in range(count):
        rid, data = str(uuid.uuid4()), os.urandom(size)
        s3.put_object(Bucket=bucket, Key=layout.object_key(rid), Body=data)
        helpers.call_action(
            "resource_create", context=sysadmin_context(), id=rid,
            package_id=dataset_id, name=f"part{i}.rtdc",
            url=f"https://example.org/part{i}.rtdc", s3_available=True,
            s3_url=object_store.object_url(bucket, layout.object_key(rid)),
            sha256=hashlib.sha256(data).hexdigest())
        made[rid] = data
    return made


def test_a_move_killed_in_the_worker_is_finished_by_the_command(
        site, orgs, start_worker, tmp_path, request):
    org_a, org_b = orgs
    ds = dataset(site, org_a, private=False)
    made = direct_resources(org_a, ds["id"], count=24, size=4 * 2**20)
    bucket_b = object_store.bucket_name(org_b.id)
    worker = start_worker("dcor-normal")
    change_owner(site, org_a.editor, ds, org_b)
    # Killed as soon as the first copy is in the new bucket.
    wait_for(lambda: object_store.list_keys(bucket_b), timeout=120,
             interval=0.02, what="the first copy")
    kill_tree(worker.pid)
    worker.wait(30)
    pending = move.pending_moves(ds["id"])
    assert pending, worker_log(tmp_path)
    # Nothing is lost or opened wrongly: every resource is readable where
    # its s3_url says, with its own bytes.
    for rid, data in made.items():
        url = fresh_resource(rid)["s3_url"]
        resp = object_store.get_client().get_object(
            **dict(zip(("Bucket", "Key"),
                       object_store.parse_object_url(url), strict=True)))
        assert resp["Body"].read() == data
        assert anon_status(url) == 200

    ini = request.config.getoption("--ckan-ini")
    listed = subprocess.run(
        [ckan_command(), "-c", ini, "dcor-depot-move-dataset", "--pending"],
        capture_output=True, text=True, timeout=120)
    assert listed.returncode == 0, listed.stderr
    assert f"({ds['id']}): {len(pending[ds['id']])} resources to move" \
        in listed.stdout
    done = subprocess.run(
        [ckan_command(), "-c", ini, "dcor-depot-move-dataset", ds["id"]],
        capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert f"{len(pending[ds['id']])} resources moved, 0 failed" \
        in done.stdout
    for rid, data in made.items():
        assert_moved({"id": rid}, org_a, org_b, data)
        assert anon_status(object_url(org_b.id, rid)) == 200
    assert object_store.list_keys(object_store.bucket_name(org_a.id)) == []


def test_the_command_reports_and_refuses_clearly(site, orgs):
    org_a, _ = orgs
    ds = dataset(site, org_a, private=True)
    runner = CliRunner()
    result = runner.invoke(move_cli.move_dataset, [])
    assert result.exit_code == 2
    assert "give a dataset ID" in result.output
    result = runner.invoke(move_cli.move_dataset, ["no-such-dataset"])
    assert result.exit_code == 2
    result = runner.invoke(move_cli.move_dataset, [ds["id"]])
    assert result.exit_code == 0, result.output
    assert "0 resources moved, 0 failed" in result.output
    result = runner.invoke(move_cli.move_dataset, ["--pending"])
    assert result.exit_code == 0
    assert "0 datasets, 0 resources to move" in result.output


def test_a_corrupt_copy_is_never_switched_to(site, orgs, monkeypatch):
    """The copy is verified by SHA256 against the record: a mismatch keeps
    the data where they are and reports the resource."""
    org_a, org_b = orgs
    ds = dataset(site, org_a, private=False)
    made = direct_resources(org_a, ds["id"], count=1, size=1024)
    (rid, data), = made.items()
    helpers.call_action("resource_patch", context=sysadmin_context(),
                        id=rid, sha256="0" * 64)  # a record the bytes fail
    change_owner(site, org_a.editor, ds, org_b)
    with pytest.raises(errors.StoreError, match="SHA256"):
        move.move_dataset_job(ds["id"])
    after = fresh_resource(rid)
    assert after["s3_url"] == object_url(org_a.id, rid)
    assert stored_bytes(org_a.id, rid) == data
    assert anon_status(after["s3_url"]) == 200
    assert gone(org_b.id, rid)


def test_a_dataset_moved_back_during_its_move_keeps_its_data(
        site, orgs, monkeypatch):
    """A -> B, and back to A while the job copies into B: nothing in A (the
    owner's bucket again) is deleted, and the data end in A."""
    org_a, org_b = orgs
    ds = dataset(site, org_a, private=False)
    data = b"there and back"
    res = stored_resource(site, org_a.editor, ds["id"], data)
    change_owner(site, org_a.editor, ds, org_b)
    copy = transfer.copy_verified

    def copy_then_move_back(*args, **kwargs):
        sha = copy(*args, **kwargs)
        if fresh_dataset(ds["id"])["owner_org"] == org_b.id:
            change_owner(site, org_a.editor, ds, org_a)
        return sha

    monkeypatch.setattr(transfer, "copy_verified", copy_then_move_back)
    run_jobs()
    move.move_dataset(ds["id"])  # the job queued by the move back
    after = fresh_resource(res["id"])
    assert after["s3_url"] == object_url(org_a.id, res["id"])
    assert stored_bytes(org_a.id, res["id"]) == data
    assert anon_status(after["s3_url"]) == 200
    assert gone(org_b.id, res["id"])
    assert move.pending_moves(ds["id"]) == {}


def test_a_crash_after_the_switch_leaves_nothing_open_or_lost(
        site, orgs, monkeypatch):
    org_a, org_b = orgs
    ds = dataset(site, org_a, private=False)
    data = b"switched, then killed"
    res = stored_resource(site, org_a.editor, ds["id"], data)
    change_owner(site, org_a.editor, ds, org_b)

    finish, calls = move._finish, []

    def killed(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:  # the worker dies right after the switch
            raise KeyboardInterrupt
        return finish(*args, **kwargs)

    with monkeypatch.context() as patch:
        patch.setattr(move, "_finish", killed)
        with pytest.raises(KeyboardInterrupt):
            move.move_dataset(ds["id"])
    after = fresh_resource(res["id"])
    assert after["s3_url"] == object_url(org_b.id, res["id"])
    assert after["s3_moved_from"] == res["s3_url"]
    assert move.pending_moves(ds["id"])  # reported by --pending
    # Made private now: the old objects close too.
    site.action("package_patch", org_a.editor.token, id=ds["id"],
                private=True)
    assert anon_status(res["s3_url"]) == 403
    assert anon_status(after["s3_url"]) == 403
    # The command finishes the move.
    result = CliRunner().invoke(move_cli.move_dataset, [ds["id"]])
    assert result.exit_code == 0, result.output
    assert "1 resources moved, 0 failed" in result.output
    assert_moved(res, org_a, org_b, data)
    assert "s3_moved_from" not in fresh_resource(res["id"])
    assert move.pending_moves(ds["id"]) == {}


def test_purging_a_dataset_whose_move_is_pending_closes_its_objects(
        site, orgs):
    org_a, org_b = orgs
    ds = dataset(site, org_a, private=False)
    res = stored_resource(site, org_a.editor, ds["id"], b"purged")
    change_owner(site, org_a.editor, ds, org_b)
    assert anon_status(res["s3_url"]) == 200
    site.action("dataset_purge", person(sysadmin=True).token, id=ds["id"])
    assert anon_status(res["s3_url"]) == 403
    assert stored_bytes(org_a.id, res["id"]) == b"purged"  # kept


def test_data_at_an_unexpected_key_are_never_moved_or_deleted(site, orgs):
    """s3_url naming the organization's bucket under another key (set by
    a sysadmin): source and target would be the same bucket."""
    org_a, _ = orgs
    ds = dataset(site, org_a, private=False)
    made = direct_resources(org_a, ds["id"], count=1, size=512)
    (rid, data), = made.items()
    bucket = object_store.bucket_name(org_a.id)
    odd = object_store.object_url(bucket, "legacy/" + rid)
    object_store.get_client().put_object(Bucket=bucket, Key="legacy/" + rid,
                                         Body=data)
    helpers.call_action("resource_patch", context=sysadmin_context(),
                        id=rid, s3_url=odd)
    outcome = move.move_dataset(ds["id"])
    assert outcome.moved == []
    assert "not where this plugin stores" in outcome.failed[rid]
    assert stored_bytes(org_a.id, rid) == data
    assert fresh_resource(rid)["s3_url"] == odd


def test_the_upload_job_leaves_moving_data_to_the_move(site, orgs):
    """A resource still on block storage whose data are in the old bucket:
    the S3 upload job does not write a second copy under the new owner."""
    org_a, org_b = orgs
    ds = dataset(site, org_a, private=True)
    res = stored_resource(site, org_a.editor, ds["id"], b"uploaded once")
    change_owner(site, org_a.editor, ds, org_b)
    from ckanext.dcor_depot.operations import migrate
    assert migrate.migrate_resource_to_s3(res["id"]) is False
    assert gone(org_b.id, res["id"])
    run_jobs()  # the move job
    assert_moved(res, org_a, org_b, b"uploaded once")
