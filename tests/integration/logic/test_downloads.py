"""CKAN's download URL of files that live only in the store: 302 to a
presigned URL for whoever may read the dataset, over real HTTP."""
from __future__ import annotations

import os
import urllib.parse

import pytest
import requests

from ckanext.dcor_depot.storage import layout
from tests.support.access import (
    dataset,
    direct_upload,
    download_url,
    fresh_resource,
    organization,
    person,
    stored_resource,
)
from tests.support.cli import invoke

DATA = b"HDF5 bytes of a measurement " * 100


def get(url, who=None, follow=False) -> requests.Response:
    headers = {"Authorization": who.token} if who else {}
    return requests.get(url, headers=headers, allow_redirects=follow,
                        timeout=60)


def redirected_bytes(url, who=None) -> tuple[requests.Response, bytes]:
    """The redirect answer and the bytes behind its Location, fetched
    without any credentials (a presigned URL carries its own)."""
    answer = get(url, who)
    assert answer.status_code == 302, answer.text[:300]
    target = requests.get(answer.headers["Location"], timeout=60)
    assert target.status_code == 200
    return target, target.content


@pytest.mark.parametrize("private", [False, True])
def test_direct_upload_download_redirects_to_the_store(site, org, private):
    ds = dataset(site, org, private=private)
    res = direct_upload(site, org.editor, ds["id"], DATA)

    shown = site.action("resource_show", org.editor.token, id=res["id"])
    # CKAN's download URL, qualified with ckan.site_url as for uploads.
    assert urllib.parse.urlsplit(shown["url"]).path == \
        urllib.parse.urlsplit(download_url(site, res)).path
    # saved back unchanged by an edit of the dataset
    site.action("package_patch", org.editor.token, id=ds["id"],
                notes="edited")
    assert fresh_resource(res["id"])["url"] == shown["url"]
    for reader in (org.editor, org.member) + ((None,) if not private
                                                else ()):
        target, body = redirected_bytes(download_url(site, res), reader)
        assert body == DATA
        assert target.headers["Content-Disposition"] == \
            'attachment; filename="cells.rtdc"'
    answer = get(download_url(site, res), org.editor)
    # the Location carries credentials: no shared cache, no referrer
    assert "no-store" in answer.headers["Cache-Control"]
    assert "public" not in answer.headers["Cache-Control"]
    assert answer.headers["Referrer-Policy"] == "no-referrer"
    if private:
        assert get(download_url(site, res)).status_code == 403
        outsider = organization().editor
        assert get(download_url(site, res), outsider).status_code == 403
        assert get(download_url(site, res), person()).status_code == 403


def test_the_url_without_file_name_redirects_too(site, org):
    ds = dataset(site, org, private=False)
    res = direct_upload(site, org.editor, ds["id"], DATA)
    url = f"{site.url}/dataset/{ds['name']}/resource/{res['id']}/download"
    assert redirected_bytes(url)[1] == DATA


def test_a_file_name_that_is_not_ascii_is_kept(site, org):
    ds = dataset(site, org, private=True)
    name = "Zellen µ-Kanal 2026.rtdc"
    # the file name is the one declared for the upload, whatever the
    # resource is called
    res = direct_upload(site, org.editor, ds["id"], DATA, name=name,
                        resource_name="Measurement 1")
    assert urllib.parse.unquote(res["url"]).endswith("/download/" + name)
    target, body = redirected_bytes(download_url(site, res, name),
                                    org.editor)
    assert body == DATA
    disposition = target.headers["Content-Disposition"]
    assert "filename*=UTF-8''" + urllib.parse.quote(name, safe="") \
        in disposition


@pytest.mark.parametrize("declared, saved", [("run 1/2.rtdc", "run 1_2.rtdc"),
                                             ("..", "data")])
def test_file_names_are_one_path_segment(site, org, declared, saved):
    ds = dataset(site, org, private=False)
    res = direct_upload(site, org.editor, ds["id"], DATA, name=declared)
    assert res["url"].endswith("/download/" + urllib.parse.quote(saved))
    target, body = redirected_bytes(res["url"].replace(
        urllib.parse.urlsplit(res["url"]).netloc,
        urllib.parse.urlsplit(site.url).netloc).replace("https:", "http:"))
    assert body == DATA
    assert f'filename="{saved}"' in target.headers["Content-Disposition"]


def test_an_empty_file_is_uploaded_and_downloaded(site, org):
    ds = dataset(site, org, private=True)
    res = direct_upload(site, org.editor, ds["id"], b"", name="empty.rtdc")
    assert res["size"] == 0
    assert redirected_bytes(download_url(site, res, "empty.rtdc"),
                            org.editor)[1] == b""


def test_deleted_resources_are_not_found(site, org):
    ds = dataset(site, org, private=False)
    res = direct_upload(site, org.editor, ds["id"], DATA)
    site.action("resource_delete", org.editor.token, id=res["id"])
    assert get(download_url(site, res), org.editor).status_code == 404
    assert get(download_url(site, res)).status_code == 404


def test_a_resource_is_only_downloaded_through_its_own_dataset(site, org):
    public = dataset(site, org, private=False)
    private = dataset(site, org, private=True)
    res = direct_upload(site, org.editor, private["id"], DATA)
    disguised = download_url(site, {**res, "package_id": public["id"]})
    # the same answer for everybody: nothing about the resource is told
    assert get(disguised).status_code == 404
    assert get(disguised, org.editor).status_code == 404


def test_files_on_block_storage_are_served_by_ckan(site, org):
    ds = dataset(site, org, private=True)
    res = stored_resource(site, org.editor, ds["id"], DATA)
    assert layout.ckan_upload_path(res["id"]).exists()
    answer = get(download_url(site, res, "data.rtdc"), org.editor)
    assert answer.status_code == 200
    assert answer.content == DATA
    assert get(download_url(site, res, "data.rtdc")).status_code == 403


@pytest.mark.usefixtures("with_extended_cli")
def test_after_delete_after_migration_the_store_serves(site, org, cli):
    ds = dataset(site, org, private=True)
    res = stored_resource(site, org.editor, ds["id"], DATA)
    result = invoke(cli, "dcor-migrate-resources-to-object-store",
                    "--delete-after-migration")
    assert result.exit_code == 0, result.output
    assert not os.path.lexists(layout.ckan_upload_path(res["id"]))
    assert fresh_resource(res["id"])["url_type"] == "upload"

    target, body = redirected_bytes(download_url(site, res, "data.rtdc"),
                                    org.editor)
    assert body == DATA
    assert 'filename="data.rtdc"' in target.headers["Content-Disposition"]
    assert get(download_url(site, res, "data.rtdc")).status_code == 403


def test_the_download_signal_fires(app, site, org):
    from ckan.lib import signals
    ds = dataset(site, org, private=False)
    res = direct_upload(site, org.editor, ds["id"], DATA)
    heard = []

    def listen(sender, **kwargs):
        heard.append(sender)
    signals.resource_download.connect(listen)
    try:
        # CKAN's test client runs the view in this process, where the
        # signal can be heard.
        answer = app.get(download_url(site, res).removeprefix(site.url),
                         follow_redirects=False)
    finally:
        signals.resource_download.disconnect(listen)
    assert answer.status_code == 302
    assert heard == [res["id"]]
