"""Tags follow the database at every commit, and every tagger re-checks.

In-process tests of what no HTTP client can arrange: failures later in
the same request, state changing while a job or command tags, and the
repair command.
"""
from __future__ import annotations

import threading
import uuid

import pytest
import sqlalchemy as sa
from ckan import model
from ckan.lib import search
from ckan.tests import helpers

from ckanext.dcor_depot import errors
from ckanext.dcor_depot.operations import migrate, symlink, visibility
from ckanext.dcor_depot.records import ckan_data, inventory
from ckanext.dcor_depot.storage import layout, object_store
from tests.support.access import fresh_resource
from tests.support.cli import invoke, summary
from tests.support.stack import (
    anonymous_get,
    run_jobs,
    stored_in_s3,
    wait_for,
)

COMMAND = "dcor-depot-sync-visibility"
#: Buckets of their own (new names each run): the whole-site sync looks at
#: every bucket of the site, and other tests leave objects behind.
SYNC_TEMPLATE = f"test-s{uuid.uuid4().hex[:8]}-{{organization_id}}"


def commit_behind_ckans_back(dataset_id: str, **values) -> None:
    """Change a dataset in its own transaction, as another process would
    (no hooks of this process run)."""
    with model.meta.engine.begin() as conn:
        conn.execute(sa.update(model.package_table)
                     .where(model.package_table.c.id == dataset_id)
                     .values(**values))


def test_failure_later_in_the_request_leaves_objects_closed(
        owner, make_dataset, upload, monkeypatch):
    dataset, res = stored_in_s3(make_dataset, upload, private=True)
    url = res["s3_url"]

    def broken_index(*args, **kwargs):
        raise search.SearchIndexError("search server down")

    with monkeypatch.context() as patch:
        patch.setattr(search.PackageSearchIndex, "index_package",
                      broken_index)
        with pytest.raises(search.SearchIndexError):
            helpers.call_action("package_patch", id=dataset["id"],
                                private=False)
        model.Session.remove()  # the request ends, rolled back
    assert helpers.call_action("package_show",
                               id=dataset["id"])["private"] is True
    assert anonymous_get(url).status_code == 403
    # No "visibility unchanged" shortcut keeps the next edit from working.
    helpers.call_action("package_patch", id=dataset["id"], private=False)
    assert anonymous_get(url).status_code == 200


def test_failed_commit_after_closing_reopens_public_data(
        owner, make_dataset, upload, monkeypatch):
    dataset, res = stored_in_s3(make_dataset, upload, private=False)
    url = res["s3_url"]
    original_commit = sa.orm.SessionTransaction.commit
    calls = []

    def commit_then_fail(self, *args, **kwargs):
        # The objects are closed (before_commit ran), then the database
        # refuses the commit.
        if self.parent is None and not calls:
            calls.append(1)
            self._prepare_impl()
            raise sa.exc.OperationalError("COMMIT", {}, Exception("db gone"))
        return original_commit(self, *args, **kwargs)

    with monkeypatch.context() as patch:
        patch.setattr(sa.orm.SessionTransaction, "commit", commit_then_fail)
        with pytest.raises(sa.exc.OperationalError):
            helpers.call_action("package_patch", id=dataset["id"],
                                private=True)
        model.Session.remove()
    assert calls
    assert helpers.call_action("package_show",
                               id=dataset["id"])["private"] is False
    assert anonymous_get(url).status_code == 200


def test_migration_never_opens_from_a_stale_snapshot(
        cli, owner, make_dataset, upload, monkeypatch):
    dataset = make_dataset(private=False)
    rid = upload(dataset, b"migrated while hidden")["id"]
    run_jobs_without_upload(rid)
    records = inventory.resource_records()  # listed while public
    commit_behind_ckans_back(dataset["id"], private=True)
    opened = []
    real_set_public = object_store.set_public

    def watch(bucket, key, public, **kwargs):
        if public:
            opened.append(key)
        return real_set_public(bucket, key, public, **kwargs)

    monkeypatch.setattr(object_store, "set_public", watch)
    migrate.migrate_resources(records, migrate.MigrationOptions(),
                                on_result=lambda outcome: None)
    assert opened == []
    url = fresh_resource(rid)["s3_url"]
    assert anonymous_get(url).status_code == 403


def run_jobs_without_upload(rid: str) -> None:
    """Only the symlink job: the file waits on block storage."""
    assert symlink.symlink_user_dataset(rid)


def test_upload_job_closes_objects_of_a_resource_deleted_meanwhile(
        owner, make_dataset, upload):
    dataset = make_dataset(private=False)
    rid = upload(dataset, b"deleted while queued")["id"]
    run_jobs_without_upload(rid)
    helpers.call_action("resource_delete", id=rid)
    try:
        migrate.migrate_resource_to_s3(rid)
    except Exception:  # recording on a deleted resource may fail: fine
        pass
    bucket = object_store.bucket_name(dataset["owner_org"])
    url = object_store.object_url(bucket, layout.object_key(rid))
    assert anonymous_get(url).status_code == 403


def test_a_tagger_undoes_its_tag_when_the_state_changed_meanwhile(
        owner, make_dataset, upload, monkeypatch):
    dataset = make_dataset(private=False)
    rid = upload(dataset, b"race")["id"]
    run_jobs_without_upload(rid)
    real_states = ckan_data.dataset_states
    reads = []

    def read_then_hide(ids, connection=None, **kwargs):
        states = real_states(ids, connection, **kwargs)
        if connection is None and not reads:
            reads.append(1)
            # Made private right after the job read "public".
            commit_behind_ckans_back(dataset["id"], private=True)
        return states

    monkeypatch.setattr(ckan_data, "dataset_states", read_then_hide)
    migrate.migrate_resource_to_s3(rid)
    assert reads
    model.Session.remove()
    assert helpers.call_action("package_show",
                               id=dataset["id"])["private"] is True
    assert anonymous_get(fresh_resource(rid)["s3_url"]).status_code == 403


def lock_waiters() -> int:
    """Backends of the test database waiting for a row lock."""
    with model.meta.engine.connect() as conn:
        return conn.execute(sa.text(
            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type "
            "= 'Lock' AND datname = current_database()")).scalar_one()


def test_a_tagger_waits_for_a_closing_commit_and_never_opens(
        owner, make_dataset, upload, monkeypatch, run_concurrently):
    """A commit closes its objects before it commits, holding its
    dataset's row. A tagger starting meanwhile (the sync job that commit
    queued, a migration) waits for the commit before it reads: it never
    opens the object, not even until its re-read (which left private
    data readable for seconds)."""
    dataset, res = stored_in_s3(make_dataset, upload, private=False)
    ref = visibility.ObjectRef(dataset["owner_org"], dataset["id"],
                               res["id"])
    closed = threading.Event()
    opened: list[str] = []
    seen_while_pending: list[int] = []
    real_close, real_set_public = visibility.close, object_store.set_public

    def close_and_hold_the_commit(refs):
        changed = real_close(refs)
        closed.set()
        wait_for(lock_waiters, timeout=30,
                 what="the tagger to wait for this commit")
        seen_while_pending.append(anonymous_get(res["s3_url"]).status_code)
        return changed

    def set_public(bucket, key, public):
        if public:
            opened.append(key)
        return real_set_public(bucket, key, public)

    monkeypatch.setattr(visibility, "close", close_and_hold_the_commit)
    monkeypatch.setattr(object_store, "set_public", set_public)

    def make_private():
        helpers.call_action("package_patch", id=dataset["id"], private=True)

    def tagger():
        closed.wait(30)
        visibility.reconcile([ref])

    _, errors = run_concurrently(make_private, tagger)
    assert errors == []
    assert seen_while_pending == [403]
    assert opened == []
    assert anonymous_get(res["s3_url"]).status_code == 403


def test_store_failure_after_commit_is_repaired_by_the_sync_job(
        owner, make_dataset, upload, monkeypatch):
    dataset, res = stored_in_s3(make_dataset, upload, private=True)
    real_set_public = object_store.set_public

    def down(*args, **kwargs):
        raise errors.StoreError("object store is unreachable")

    monkeypatch.setattr(object_store, "set_public", down)
    helpers.call_action("package_patch", id=dataset["id"], private=False)
    assert anonymous_get(res["s3_url"]).status_code == 403
    monkeypatch.setattr(object_store, "set_public", real_set_public)
    run_jobs()
    assert anonymous_get(res["s3_url"]).status_code == 200


# ------------------------------------------------ dcor-depot-sync-visibility
@pytest.mark.usefixtures("with_extended_cli")
@pytest.mark.ckan_config("dcor_object_store.bucket_name", SYNC_TEMPLATE)
def test_sync_visibility_repairs_tags_and_dry_run_changes_nothing(
        cli, owner, make_dataset, upload):
    public, res_public = stored_in_s3(make_dataset, upload, private=False)
    private, res_private = stored_in_s3(make_dataset, upload, private=True)
    bucket = object_store.bucket_name(owner["org"]["id"])
    # Tags out of step, as a restored bucket or an outage leaves them.
    object_store.set_public(bucket, layout.object_key(res_public["id"]),
                            False)
    object_store.set_public(bucket, layout.object_key(res_private["id"]),
                            True)

    result = invoke(cli, COMMAND, "--dry-run")
    assert result.exit_code == 0, result.output
    assert f"{layout.object_key(res_public['id'])}: would change private " \
        "-> public" in result.stdout
    assert f"{layout.object_key(res_private['id'])}: would change public " \
        "-> private" in result.stdout
    assert "2 objects to change" in summary(result)
    assert anonymous_get(res_public["s3_url"]).status_code == 403
    assert anonymous_get(res_private["s3_url"]).status_code == 200

    result = invoke(cli, COMMAND, "--dataset", private["name"])
    assert result.exit_code == 0, result.output
    assert "1 datasets, 1 objects changed, 0 failed" in summary(result)
    assert anonymous_get(res_private["s3_url"]).status_code == 403
    assert anonymous_get(res_public["s3_url"]).status_code == 403

    result = invoke(cli, COMMAND)
    assert result.exit_code == 0, result.output
    assert anonymous_get(res_public["s3_url"]).status_code == 200
    assert "1 objects changed, 0 failed" in summary(result)

    # An object no dataset accounts for (e.g. of a purged dataset) that
    # is public is closed by the whole-site run.
    orphan = object_store.object_url(bucket, layout.object_key(
        "00000000-1111-2222-3333-444444444444"))
    object_store.get_client().put_object(
        Bucket=bucket, Key=layout.object_key(
            "00000000-1111-2222-3333-444444444444"), Body=b"orphan")
    object_store.set_public(bucket, layout.object_key(
        "00000000-1111-2222-3333-444444444444"), True)
    assert anonymous_get(orphan).status_code == 200
    result = invoke(cli, COMMAND)
    assert result.exit_code == 0, result.output
    assert "public -> private" in result.stdout
    assert anonymous_get(orphan).status_code == 403

    result = invoke(cli, COMMAND, "--dataset", "no-such-dataset")
    assert result.exit_code == 2
    assert "no dataset 'no-such-dataset'" in result.stderr


@pytest.mark.ckan_config("dcor_object_store.access_key_id", "")
@pytest.mark.ckan_config("dcor_object_store.secret_access_key", "")
def test_without_s3_resources_added_by_package_revise_get_their_job(
        owner, make_dataset):
    import io

    from werkzeug.datastructures import FileStorage
    dataset = make_dataset()
    helpers.call_action(
        "package_revise", context={"user": owner["user"]["name"]},
        match={"id": dataset["id"]},
        update__resources__extend=[{"name": "revised.rtdc"}],
        **{"update__resources__-1__upload": FileStorage(
            io.BytesIO(b"revised"), filename="revised.rtdc")})
    model.Session.remove()
    rid = helpers.call_action("package_show",
                              id=dataset["id"])["resources"][0]["id"]
    run_jobs()
    path = layout.ckan_upload_path(rid)
    assert path.is_symlink()
    assert path.read_bytes() == b"revised"


@pytest.mark.usefixtures("with_extended_cli")
@pytest.mark.ckan_config("dcor_object_store.bucket_name", SYNC_TEMPLATE)
def test_sync_visibility_leaves_buckets_of_unknown_organizations_alone(
        cli, pipeline):
    # A bucket matching the template whose organization this site does
    # not have: another site's, sharing the store.
    bucket = object_store.bucket_name(str(uuid.uuid4()))
    object_store.ensure_bucket(bucket)
    key = layout.object_key(str(uuid.uuid4()))
    object_store.get_client().put_object(Bucket=bucket, Key=key, Body=b"x")
    object_store.set_public(bucket, key, True)
    result = invoke(cli, COMMAND)
    assert result.exit_code == 0, result.output
    assert f"bucket {bucket}: skipped" in result.stdout
    assert anonymous_get(object_store.object_url(bucket, key)
                         ).status_code == 200
