"""Without the object store, the resource form is CKAN's own: the direct
upload module is only on the form of a new resource when the store is
configured, the option ckanext.dcor_depot.browser_direct_upload is on and
ckan.site_url names an origin (rendered in-process, where options can be
set per test; no browser needed)."""
from __future__ import annotations

import io

import pytest
from ckan.tests import factories

from ckanext.dcor_depot import helpers
from tests.support.access import fresh_dataset, person

MODULE = 'data-module="dcor-direct-upload"'


@pytest.fixture
def editor_and_dataset(clean_db, clean_queues, with_plugins):
    # (Not the pipeline fixture: its request context would be reused by
    # the test app's requests, whose user would then be anonymous.)
    editor = person()
    org = factories.Organization(users=[{"name": editor.name,
                                         "capacity": "editor"}])
    ds = factories.Dataset(owner_org=org["id"], private=True,
                           user={"name": editor.name})
    return editor, ds


def page(app, editor, url: str) -> str:
    reply = app.get(url, headers={"Authorization": editor.token})
    assert reply.status_code == 200
    return reply.get_data(as_text=True)


def test_the_new_resource_form_has_the_module(app, editor_and_dataset):
    editor, ds = editor_and_dataset
    html = page(app, editor, f"/dataset/{ds['name']}/resource/new")
    assert MODULE in html
    assert 'id="field-resource-upload"' in html  # CKAN's field stays


def test_editing_a_resource_uses_ckans_upload(app, editor_and_dataset):
    editor, ds = editor_and_dataset
    res = factories.Resource(package_id=ds["id"], url="http://x.org/a")
    html = page(app, editor,
                f"/dataset/{ds['name']}/resource/{res['id']}/edit")
    assert 'id="field-resource-upload"' in html
    assert MODULE not in html


@pytest.mark.ckan_config("dcor_object_store.access_key_id", "")
@pytest.mark.ckan_config("dcor_object_store.secret_access_key", "")
def test_without_the_store_the_form_uploads_as_before(
        app, editor_and_dataset):
    editor, ds = editor_and_dataset
    url = f"/dataset/{ds['name']}/resource/new"
    html = page(app, editor, url)
    assert 'id="field-resource-upload"' in html
    assert MODULE not in html
    assert helpers.direct_upload_enabled(ds["id"]) is False

    reply = app.post(url, headers={"Authorization": editor.token}, data={
        "id": "", "name": "cells.rtdc", "url": "", "url_type": "upload",
        "save": "go-dataset-complete",
        "upload": (io.BytesIO(b"form upload bytes"), "cells.rtdc")},
        follow_redirects=False)
    assert reply.status_code == 302
    res, = fresh_dataset(ds["id"])["resources"]
    assert res["url_type"] == "upload"
    assert int(res["size"]) == len(b"form upload bytes")


@pytest.mark.ckan_config("ckan.auth.create_unowned_dataset", "true")
def test_datasets_without_an_organization_use_ckans_upload(pipeline):
    ds = factories.Dataset(owner_org=None)
    assert helpers.direct_upload_enabled(ds["id"]) is False
    assert helpers.direct_upload_enabled(None) is False


@pytest.mark.ckan_config("ckanext.dcor_depot.browser_direct_upload", False)
def test_the_option_off_gives_ckans_upload(app, editor_and_dataset):
    editor, ds = editor_and_dataset
    html = page(app, editor, f"/dataset/{ds['name']}/resource/new")
    assert 'id="field-resource-upload"' in html
    assert MODULE not in html
    assert "direct-upload" not in html  # nor its script
    assert helpers.direct_upload_enabled(ds["id"]) is False
    # The API's direct uploads are not affected.
    reply = app.post("/api/3/action/resource_upload_s3_urls",
                     headers={"Authorization": editor.token},
                     json={"package_id": ds["id"], "name": "a.rtdc",
                           "size": 10})
    assert reply.status_code == 200
    rid = reply.json["result"]["resource_id"]
    reply = app.post("/api/3/action/resource_upload_s3_abort",
                     headers={"Authorization": editor.token},
                     json={"resource_id": rid})
    assert reply.status_code == 200


@pytest.mark.ckan_config("ckanext.dcor_depot.browser_direct_upload", "true")
def test_the_option_on_gives_the_module_with_the_dataset_id(
        app, editor_and_dataset):
    editor, ds = editor_and_dataset
    html = page(app, editor, f"/dataset/{ds['name']}/resource/new")
    assert MODULE in html
    # The dataset's id: the form compares it with the package_id of a
    # resource an earlier submission may have created.
    assert f'data-module-package="{ds["id"]}"' in html


@pytest.mark.parametrize("site_url", ["http://", "https://dcor.example:port"])
def test_a_site_url_without_an_origin_gives_ckans_upload(
        editor_and_dataset, ckan_config, monkeypatch, site_url):
    """No origin for the buckets' CORS rule (CKAN itself only checks that
    ckan.site_url starts with http): browsers could not send parts, so
    the form does not try."""
    _, ds = editor_and_dataset
    assert helpers.direct_upload_enabled(ds["id"]) is True
    with monkeypatch.context() as patch:  # undone before CKAN's teardown
        patch.setitem(ckan_config, "ckan.site_url", site_url)
        assert helpers.direct_upload_enabled(ds["id"]) is False
