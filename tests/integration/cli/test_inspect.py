"""``list-all-resources`` and ``dcor-list-s3-objects-for-dataset``."""
from __future__ import annotations

import os

import pytest
from ckan.tests import helpers

from ckanext.dcor_depot.storage import layout
from tests.support.cli import bucket_of, invoke, summary
from tests.support.stack import run_jobs

pytestmark = pytest.mark.usefixtures("with_extended_cli")

LIST_S3 = "dcor-list-s3-objects-for-dataset"
GREEN, BLUE, RED = "\x1b[32m", "\x1b[34m", "\x1b[31m"


def test_list_all_resources_public_private_and_drafts(
        cli, owner, make_dataset, upload):
    public = upload(make_dataset(private=False), b"1" * 100, name="a.bin")
    private = upload(make_dataset(private=True), b"2" * 100, name="b.bin")
    draft_dataset = make_dataset(private=True)
    draft = upload(draft_dataset, b"3" * 100, name="c.bin")
    helpers.call_action("package_patch", id=draft_dataset["id"],
                        state="draft")
    gone = upload(make_dataset(private=False), b"4" * 100, name="d.bin")
    helpers.call_action("resource_delete", id=gone["id"])

    result = invoke(cli, "list-all-resources")

    assert result.exit_code == 0, result.output
    assert sorted(result.stdout.split()) == sorted(
        [public["id"], private["id"], draft["id"]])
    assert result.stderr.strip() == "list-all-resources: 3 resources"


def test_list_s3_objects_colours_public_private_missing(
        cli, owner, make_dataset, upload):
    dataset = make_dataset(private=False)
    res = upload(dataset, os.urandom(1000), name="a.bin")
    run_jobs()
    bucket = bucket_of(owner)

    result = invoke(cli, LIST_S3, dataset["name"], color=True)

    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    key = layout.object_key(res["id"])
    assert f"{GREEN}{bucket}:{key} (public=true)" in lines[0]
    for line, artifact in zip(lines[1:3], ("condensed", "preview"),
                              strict=True):
        key = layout.object_key(res["id"], artifact)
        assert f"{RED}{bucket}:{key} (not found)" in line
    assert summary(result) == \
        f"{LIST_S3}: 1 public, 0 private, 2 not found, 0 failed"

    helpers.call_action("package_patch", id=dataset["id"], private=True)
    private = invoke(cli, LIST_S3, dataset["id"], color=True)
    assert f"{BLUE}{bucket}:{layout.object_key(res['id'])} (no tags)" \
        in private.stdout


def test_list_s3_objects_of_unknown_dataset(cli, owner):
    result = invoke(cli, LIST_S3, "no-such-dataset")
    assert result.exit_code == 1
    assert result.stderr.strip() == \
        f"{LIST_S3}: there is no dataset 'no-such-dataset'"


@pytest.mark.parametrize("command", [
    [LIST_S3, "some-dataset"],
    ["dcor-migrate-resources-to-object-store"],
    ["dcor-prune-stale-multipart-uploads"],
])
class TestS3Commands:
    @pytest.mark.ckan_config("dcor_object_store.access_key_id", "")
    @pytest.mark.ckan_config("dcor_object_store.secret_access_key", "")
    def test_refused_without_s3(self, cli, owner, command):
        result = invoke(cli, *command)
        assert result.exit_code == 1
        (line,) = result.stderr.strip().splitlines()
        assert line.startswith(f"{command[0]}: S3 is not configured")

    @pytest.mark.ckan_config("dcor_object_store.endpoint_url",
                             "http://127.0.0.1:9")
    def test_refused_when_store_unreachable(self, cli, owner, command):
        result = invoke(cli, *command)
        assert result.exit_code == 1
        (line,) = result.stderr.strip().splitlines()
        assert line == (f"{command[0]}: object store at "
                        "http://127.0.0.1:9 is unreachable")
