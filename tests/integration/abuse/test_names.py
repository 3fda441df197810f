"""Hostile resource names, through the whole pipeline over real HTTP.

CKAN lets users name resources freely (dataset, organization and user
names are restricted by CKAN to ``[a-z0-9_-]``, 2 to 100 characters: a
dataset named ``../x`` is refused below). Whatever a resource is called,
its depot file stays inside the user depot, distinct from every other
resource's, the object and the download give its own bytes, and no name
reaches an HTTP header unescaped.

Already covered: hostile user, organization, dataset and resource names
in the layout (``storage/test_layout.test_hostile_resource_names_stay_
inside_depot``, with NUL, control characters, 1000 characters), a 1000
character name through the symlink job (``storage/test_depot.test_
hostile_resource_name_stays_inside_the_depot``), ``/`` and ``..`` in the
file name of a direct upload (``logic/test_downloads.test_file_names_are_
one_path_segment``), look-alike figshare names
(``operations/figshare/test_importer.test_look_alike_names_never_share_
a_depot_file``).
"""
from __future__ import annotations

import os
import unicodedata
import urllib.parse
from pathlib import Path

import pytest
import requests

from ckanext.dcor_depot import config
from ckanext.dcor_depot.storage import layout
from tests.support.access import (
    dataset,
    direct_upload,
    upload,
)
from tests.support.cli import resource_object
from tests.support.live_site import ApiError
from tests.support.stack import run_jobs

NFC = unicodedata.normalize("NFC", "Zellen é.rtdc")
NFD = unicodedata.normalize("NFD", "Zellen é.rtdc")
LOOK_ALIKES = [NFC, NFD, "cells.rtdc", "\u0441ells.rtdc",  # Cyrillic с
               "ｃｅｌｌｓ.rtdc"]  # fullwidth: NFKC makes it cells.rtdc
HOSTILE = ["../../../../etc/passwd", "..", "x" * 4096, "ü" * 2048,
           "a\r\nSet-Cookie: stolen=1.rtdc", "\u202eevil\u202c.rtdc"]


def depot_file(rid: str) -> Path:
    link = layout.ckan_upload_path(rid)
    assert link.is_symlink()
    target = Path(os.readlink(link))
    assert config.users_depot_path().resolve() in target.resolve().parents
    assert len(target.name.encode()) <= 255
    return target


def download(site, ds, res) -> requests.Response:
    url = f"{site.url}/dataset/{ds['id']}/resource/{res['id']}/download"
    return requests.get(url, timeout=60)


def upload_all(site, org, ds, names: list[str]) -> list[tuple[dict, bytes]]:
    made = []
    for number, name in enumerate(names):
        data = f"bytes of resource {number}: {name!r}".encode()
        made.append((upload(site, org.editor, ds["id"], data, name=name),
                     data))
    run_jobs()
    return made


def test_look_alikes_and_normalisation_forms_stay_distinct(site, org):
    ds = dataset(site, org, private=False)
    made = upload_all(site, org, ds, LOOK_ALIKES)

    targets = [depot_file(res["id"]) for res, _ in made]
    assert len(set(targets)) == len(made)
    for (res, data), target in zip(made, targets, strict=True):
        assert target.read_bytes() == data
        assert resource_object({"org": {"id": org.id}}, res["id"]) == data
        answer = download(site, ds, res)
        assert answer.status_code == 200 and answer.content == data


def test_hostile_names_stay_in_the_depot_and_out_of_headers(site, org):
    ds = dataset(site, org, private=False)
    made = upload_all(site, org, ds, HOSTILE)

    for res, data in made:
        target = depot_file(res["id"])
        assert res["id"] in target.name
        assert target.read_bytes() == data
        answer = download(site, ds, res)
        assert answer.status_code == 200 and answer.content == data
        assert "stolen" not in answer.headers.get("Set-Cookie", "")
    # nothing was written next to the depot or outside it
    assert not (config.depots_path().parent / "etc").exists()


@pytest.mark.parametrize("name", [
    "x" * 4096 + ".rtdc", "a\r\nSet-Cookie: stolen=1.rtdc",
    "\u202eevil\u202c.rtdc", NFD])
def test_direct_uploads_with_hostile_names_download(site, org, name):
    ds = dataset(site, org, private=True)
    data = b"direct " * 100
    res = direct_upload(site, org.editor, ds["id"], data, name=name)

    answer = requests.get(
        site.url + urllib.parse.urlsplit(res["url"]).path, timeout=60,
        headers={"Authorization": org.editor.token}, allow_redirects=False)
    assert answer.status_code == 302
    assert "stolen" not in answer.headers.get("Set-Cookie", "")
    target = requests.get(answer.headers["Location"], timeout=60)
    assert target.status_code == 200 and target.content == data
    disposition = target.headers["Content-Disposition"]
    assert "\r" not in disposition and "\n" not in disposition
    assert disposition.startswith("attachment; filename=")


@pytest.mark.parametrize("name", ["nul\x00.rtdc", "\x00"])
def test_nul_in_a_direct_upload_name_is_refused_cleanly(site, org, name):
    ds = dataset(site, org, private=True)
    with pytest.raises(ApiError) as refused:
        site.action("resource_upload_s3_urls", org.editor.token,
                    package_id=ds["id"], name=name, size=10)
    assert refused.value.status == 409, refused.value.body
    assert "NUL" in str(refused.value.error.get("name"))


@pytest.mark.parametrize("field", ["name", "description", "format"])
def test_nul_in_the_resource_create_after_a_direct_upload_is_refused(
        site, org, field):
    ds = dataset(site, org, private=True)
    data = b"direct nul " * 100
    issued = site.action("resource_upload_s3_urls", org.editor.token,
                         package_id=ds["id"], name="cells.rtdc",
                         size=len(data))
    for part in issued["parts"]:
        start = (part["part_number"] - 1) * issued["part_size"]
        requests.put(part["url"], data=data[start:start + part["size"]],
                     timeout=60).raise_for_status()
    fields = {"package_id": ds["id"], "id": issued["resource_id"],
              "url_type": "s3_upload", "name": "cells.rtdc"}
    with pytest.raises(ApiError) as refused:
        site.action("resource_create", org.editor.token,
                    **{**fields, field: "bad\x00value"})
    assert refused.value.status == 409, refused.value.body
    assert "NUL" in str(refused.value.error.get(field))

    # Nothing was lost: the same upload is still taken without the NUL.
    res = site.action("resource_create", org.editor.token, **fields)
    assert res["id"] == issued["resource_id"]
    assert resource_object({"org": {"id": org.id}}, res["id"]) == data


@pytest.mark.parametrize("action, fields", [
    ("resource_upload_s3_urls", {"name": "cells.rtdc", "size": 10}),
    ("resource_create", {"url_type": "s3_upload", "name": "cells.rtdc"}),
    ("resource_create", {"url": "https://example.org/x", "name": "x"})])
def test_nul_in_the_dataset_id_is_refused_cleanly(site, org, action, fields):
    ds = dataset(site, org, private=True)
    with pytest.raises(ApiError) as refused:
        site.action(action, org.editor.token,
                    package_id=ds["id"] + "\x00", **fields)
    assert refused.value.status == 409, refused.value.body
    assert "NUL" in str(refused.value.error.get("package_id"))
    assert site.action("package_show", org.editor.token,
                       id=ds["id"])["resources"] == []


@pytest.mark.parametrize("name", ["../etc", "x/y", "..", "a" * 101,
                                  "ｃｅｌｌｓ"])
def test_hostile_dataset_names_are_refused_by_ckan(site, org, name):
    with pytest.raises(ApiError) as refused:
        site.action("package_create", org.editor.token, name=name,
                    owner_org=org.id)
    assert refused.value.status == 409
