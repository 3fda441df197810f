"""Downloads through CKAN's web site once the file lives in a depot."""
from __future__ import annotations

import os
import shutil

import pytest
import requests

from ckanext.dcor_depot.operations import symlink
from ckanext.dcor_depot.storage import layout
from tests.support.access import dataset, download_url, organization, upload


@pytest.fixture
def public_upload(site):
    org = organization()
    ds = dataset(site, org, private=False)
    res = upload(site, org.editor, ds["id"], b"cells in the depot",
                 name="cells.rtdc")
    return ds, res


def test_download_through_a_depot_symlink(site, public_upload):
    ds, res = public_upload
    assert symlink.symlink_user_dataset(res["id"]) is True
    path = layout.ckan_upload_path(res["id"])
    assert path.is_symlink()

    reply = requests.get(download_url(site, res), timeout=30)
    assert reply.status_code == 200
    assert reply.content == b"cells in the depot"


def test_symlink_outside_the_depots_is_not_served(site, public_upload,
                                                   tmp_path):
    ds, res = public_upload
    secret = tmp_path / "secret.txt"
    secret.write_bytes(b"not a depot file")
    path = layout.ckan_upload_path(res["id"])
    path.unlink()
    os.symlink(secret, path)

    reply = requests.get(download_url(site, res), timeout=30)
    assert reply.status_code != 200
    assert b"not a depot file" not in reply.content


def test_symlink_into_a_depot_lookalike_is_not_served(site, public_upload,
                                                      tmp_path):
    # A folder whose name starts like the depots folder is not inside it.
    ds, res = public_upload
    depots = layout.allowed_link_roots()[0]
    lookalike = f"{depots}-lookalike"
    os.makedirs(lookalike, exist_ok=True)
    try:
        fake = os.path.join(lookalike, f"{res['id']}.rtdc")
        with open(fake, "wb") as fh:
            fh.write(b"outside the depots")
        path = layout.ckan_upload_path(res["id"])
        path.unlink()
        os.symlink(fake, path)

        reply = requests.get(download_url(site, res), timeout=30)
        assert reply.status_code != 200
        assert b"outside the depots" not in reply.content
    finally:
        shutil.rmtree(lookalike, ignore_errors=True)
