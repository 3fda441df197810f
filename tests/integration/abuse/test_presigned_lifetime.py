"""Presigned download URLs issued before a dataset went private.

A presigned URL carries its own credentials: the store cannot revoke it,
so it works until it expires, ``dcor_object_store.download_url_lifetime``
seconds after it was made (the README says so). Making the dataset
private closes the object's anonymous URL at once and stops new
redirects at once; a URL issued before stops within the lifetime.

The redirect comes from CKAN's test client in this process, where the
short lifetime of the test is set (the live site keeps the default);
everything else is real HTTP against the live site and the store.
"""
from __future__ import annotations

import time
import urllib.parse

import pytest
import requests

from ckanext.dcor_depot import config
from tests.support.access import (
    anon_status,
    dataset,
    direct_upload,
    object_url,
    organization,
    person,
)

LIFETIME = 4
#: Seconds the store may take beyond the expiry (clock granularity).
MARGIN = 2
DATA = b"measurement of a dataset about to go private " * 20


@pytest.fixture
def org(site):
    return organization()


def route(ds, res) -> str:
    return f"/dataset/{ds['id']}/resource/{res['id']}/download/cells.rtdc"


def redirect_of(app, path: str, who) -> str:
    answer = app.get(path, headers={"Authorization": who.token},
                     follow_redirects=False)
    assert answer.status_code == 302, answer.body[:300]
    return answer.headers["Location"]


def status_of(url: str) -> int:
    return requests.get(url, timeout=30).status_code


@pytest.mark.ckan_config("dcor_object_store.download_url_lifetime",
                         LIFETIME)
def test_a_url_issued_before_private_stops_within_its_lifetime(
        app, site, org):
    ds = dataset(site, org, private=False)
    res = direct_upload(site, org.editor, ds["id"], DATA)
    issued_at = time.monotonic()
    presigned = redirect_of(app, route(ds, res), org.editor)
    query = urllib.parse.parse_qs(urllib.parse.urlsplit(presigned).query)
    assert query["X-Amz-Expires"] == [str(LIFETIME)]
    assert anon_status(object_url(org.id, res["id"])) == 200

    site.action("package_patch", org.editor.token, id=ds["id"],
                private=True)

    # at once: the anonymous object URL and new redirects are refused
    assert anon_status(object_url(org.id, res["id"])) == 403
    anonymous = requests.get(site.url + route(ds, res), timeout=30,
                             allow_redirects=False)
    assert anonymous.status_code == 403 and "Location" not in \
        anonymous.headers
    outsider = person()
    assert requests.get(site.url + route(ds, res), timeout=30,
                        headers={"Authorization": outsider.token},
                        allow_redirects=False).status_code == 403
    # the URL issued before still works (documented), but not for long
    if time.monotonic() - issued_at < LIFETIME - 1:
        assert status_of(presigned) == 200
    time.sleep(max(0.0, issued_at + LIFETIME + MARGIN - time.monotonic()))
    assert status_of(presigned) == 403


@pytest.mark.ckan_config("dcor_object_store.download_url_lifetime",
                         LIFETIME)
def test_the_lifetime_cannot_be_extended_by_editing_the_url(app, site, org):
    ds = dataset(site, org, private=True)
    res = direct_upload(site, org.editor, ds["id"], DATA)
    presigned = redirect_of(app, route(ds, res), org.member)
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
    answer = requests.get(site.url + route(ds, res), timeout=30,
                          headers={"Authorization": org.editor.token},
                          allow_redirects=False)
    query = urllib.parse.parse_qs(urllib.parse.urlsplit(
        answer.headers["Location"]).query)
    assert query["X-Amz-Expires"] == ["3600"]
