"""End to end: an upload through CKAN's API, handled by a real worker.

The worker is a `ckan jobs worker` process started with the same CKAN ini
as the tests (taken from --ckan-ini), so it sees the jobs this process
queues and the database rows it commits, as on a production site.
"""
from __future__ import annotations

import hashlib
import io
import os
from pathlib import Path

import ckan.plugins.toolkit as tk
import flask
from ckan.tests import helpers

from ckanext.dcor_depot import config
from ckanext.dcor_depot.storage import layout, object_store
from tests.support.access import fresh_resource
from tests.support.stack import anonymous_get, wait_for, worker_log

TIMEOUT = 120  # seconds; the worker imports CKAN and forks a horse per job


def test_upload_is_handled_by_a_real_worker(owner, make_dataset, app,
                                            start_worker, rtdc_bytes,
                                            tmp_path):
    data = rtdc_bytes + os.urandom(100_000)  # unlike any other upload
    dataset = make_dataset(private=True)
    token = helpers.call_action(
        "api_token_create", context={"user": owner["user"]["name"]},
        user=owner["user"]["name"], name="e2e")["token"]
    worker = start_worker("default", "dcor-short", "dcor-normal")

    # The test request context shares its `g` with the client's request:
    # drop the anonymous user Flask-Login cached there, so that the token
    # is looked at.
    flask.g.pop("_login_user", None)
    resp = app.post(
        "/api/3/action/resource_create",
        headers={"Authorization": token},
        data={"package_id": dataset["id"], "name": "e2e.rtdc",
              "upload": (io.BytesIO(data), "e2e.rtdc")})
    assert resp.status_code == 200, resp.body
    rid = resp.json["result"]["id"]
    path = layout.ckan_upload_path(rid)
    bucket = object_store.bucket_name(owner["org"]["id"])
    key = layout.object_key(rid)

    def done() -> dict | None:
        assert worker.poll() is None, "the worker died"
        res = fresh_resource(rid)
        if tk.asbool(res.get("s3_available", False)) and path.is_symlink():
            return res
        return None

    try:
        res = wait_for(done, timeout=TIMEOUT, interval=0.5,
                       what="the worker to finish the resource's jobs")
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n--- worker log:\n"
                             f"{worker_log(tmp_path)}") from None

    # On disk: the upload path links into the user's depot.
    target = Path(os.readlink(path))
    assert config.users_depot_path() in target.parents
    assert owner["user"]["name"] in str(target)
    assert target.read_bytes() == data
    # In the store: the same bytes, and CKAN knows where.
    body = object_store.get_client().get_object(
        Bucket=bucket, Key=key)["Body"].read()
    assert body == data
    assert res["sha256"] == hashlib.sha256(data).hexdigest()
    assert res["s3_url"] == object_store.object_url(bucket, key)

    # Private dataset: the world cannot read the object.
    assert anonymous_get(res["s3_url"]).status_code == 403
    helpers.call_action("package_patch", id=dataset["id"], private=False)
    resp = anonymous_get(res["s3_url"])
    assert (resp.status_code, resp.content) == (200, data)
    helpers.call_action("package_patch", id=dataset["id"], private=True)
    assert anonymous_get(res["s3_url"]).status_code == 403
