"""Presigned download URLs issued before a dataset went private.

A presigned URL carries its own credentials: the store cannot revoke it,
so it works until it expires, ``dcor_object_store.download_url_lifetime``
seconds after it was made (the README says so). Making the dataset
private closes the object's anonymous URL at once and stops new
redirects at once; a URL issued before stops within the lifetime.

A second live site, started with a lifetime of a few seconds, gives the
redirects; everything is real HTTP with real users' tokens.
"""
from __future__ import annotations

import time
import urllib.parse
from pathlib import Path

import pytest
import requests

from ckanext.dcor_depot import config
from tests.support import live_site as live
from tests.support.access import (
    anon_status,
    dataset,
    direct_upload,
    object_url,
    person,
)
from tests.support.stack import ckan_command

LIFETIME = 4
#: Seconds the store may take beyond the expiry (clock granularity).
MARGIN = 2
DATA = b"measurement of a dataset about to go private " * 20


@pytest.fixture(scope="module")
def short_lived(request, tmp_path_factory):
    """The live site once more, issuing download URLs of LIFETIME s."""
    base = Path(request.config.getoption("--ckan-ini")).resolve()
    work = tmp_path_factory.mktemp("short-lived-site")
    ini = work / "short-lived.ini"
    ini.write_text(base.read_text().replace(
        "[app:main]\n", "[app:main]\ndcor_object_store."
        f"download_url_lifetime = {LIFETIME}\n", 1))
    yield from live.serve(ckan_command(), ini, work)


def route(ds, res) -> str:
    return f"/dataset/{ds['id']}/resource/{res['id']}/download/cells.rtdc"


def redirect_of(site, path: str, who) -> str:
    answer = requests.get(site.url + path, timeout=30,
                          headers={"Authorization": who.token},
                          allow_redirects=False)
    assert answer.status_code == 302, answer.text[:300]
    return answer.headers["Location"]


def status_of(url: str) -> int:
    return requests.get(url, timeout=30).status_code


def test_a_url_issued_before_private_stops_within_its_lifetime(
        short_lived, site, org):
    ds = dataset(site, org, private=False)
    res = direct_upload(site, org.editor, ds["id"], DATA)
    issued_at = time.monotonic()
    presigned = redirect_of(short_lived, route(ds, res), org.member)
    query = urllib.parse.parse_qs(urllib.parse.urlsplit(presigned).query)
    assert query["X-Amz-Expires"] == [str(LIFETIME)]
    assert anon_status(object_url(org.id, res["id"])) == 200

    site.action("package_patch", org.editor.token, id=ds["id"],
                private=True)

    # at once: the anonymous object URL and new redirects are refused
    assert anon_status(object_url(org.id, res["id"])) == 403
    anonymous = requests.get(short_lived.url + route(ds, res), timeout=30,
                             allow_redirects=False)
    assert anonymous.status_code == 403 and "Location" not in \
        anonymous.headers
    outsider = person()
    assert requests.get(short_lived.url + route(ds, res), timeout=30,
                        headers={"Authorization": outsider.token},
                        allow_redirects=False).status_code == 403
    # the URL issued before still works (documented), but not for long
    if time.monotonic() - issued_at < LIFETIME - 1:
        assert status_of(presigned) == 200
    time.sleep(max(0.0, issued_at + LIFETIME + MARGIN - time.monotonic()))
    assert status_of(presigned) == 403


def test_the_lifetime_cannot_be_extended_by_editing_the_url(
        short_lived, site, org):
    ds = dataset(site, org, private=True)
    res = direct_upload(site, org.editor, ds["id"], DATA)
    presigned = redirect_of(short_lived, route(ds, res), org.member)
    assert status_of(presigned) == 200
    longer = presigned.replace(f"X-Amz-Expires={LIFETIME}",
                               "X-Amz-Expires=604800")
    assert longer != presigned
    assert status_of(longer) == 403
    # nor by asking for another object with the same signature
    other = presigned.replace(res["id"][6:], "0" * len(res["id"][6:]))
    assert status_of(other) == 403


def test_the_live_site_issues_urls_of_the_documented_default(site, org):
    assert config.direct_upload_settings().download_url_lifetime == 3600
    ds = dataset(site, org, private=True)
    res = direct_upload(site, org.editor, ds["id"], DATA)
    query = urllib.parse.parse_qs(urllib.parse.urlsplit(
        redirect_of(site, route(ds, res), org.editor)).query)
    assert query["X-Amz-Expires"] == ["3600"]
