"""CKAN's download URL probed by anonymous visitors and by users of
other organizations, over real HTTP against the live site.

Nobody without read access gets bytes or a presigned ``Location``;
malformed ids and names give 404, never a server error.

Already covered in ``tests/integration/logic/test_downloads.py``: a
private store-only resource refused to anonymous users, an editor of
another organization and a user of none (``test_direct_upload_download_
redirects_to_the_store``); deleted resources (``test_deleted_resources_
are_not_found``); a resource asked for through another dataset of its
organization (``test_a_resource_is_only_downloaded_through_its_own_
dataset``); a private file on block storage refused to anonymous users
(``test_files_on_block_storage_are_served_by_ckan``).
"""
from __future__ import annotations

import urllib.parse

import pytest
import requests

from tests.support.access import (
    dataset,
    direct_upload,
    organization,
    stored_resource,
)

DATA = b"private measurement of organization A " * 40
STORE, BLOCK = "store", "block"


@pytest.fixture
def victim(site):
    return organization()


@pytest.fixture
def outsider(site):
    return organization()


def private_resource(site, org, where: str) -> tuple[dict, dict]:
    ds = dataset(site, org, private=True)
    if where == STORE:
        return ds, direct_upload(site, org.editor, ds["id"], DATA,
                                 name="cells.rtdc")
    return ds, stored_resource(site, org.editor, ds["id"], DATA)


def get(site, path: str, who=None) -> requests.Response:
    headers = {"Authorization": who.token} if who else {}
    return requests.get(site.url + path, headers=headers, timeout=30,
                        allow_redirects=False)


def assert_nothing_given(answer: requests.Response, *statuses: int) -> None:
    assert answer.status_code in statuses, answer.status_code
    assert "Location" not in answer.headers
    assert DATA[:20] not in answer.content
    assert b"X-Amz-Signature" not in answer.content


@pytest.mark.parametrize("where", [STORE, BLOCK])
def test_other_organizations_get_nothing_through_their_own_dataset(
        site, victim, outsider, where):
    _, res = private_resource(site, victim, where)
    own = dataset(site, outsider, private=False)
    path = f"/dataset/{own['id']}/resource/{res['id']}/download/cells.rtdc"
    for who in (None, outsider.editor, outsider.admin):
        assert_nothing_given(get(site, path, who), 404)


@pytest.mark.parametrize("where", [STORE, BLOCK])
def test_other_organizations_get_403_through_the_right_url(
        site, victim, outsider, where):
    ds, res = private_resource(site, victim, where)
    path = f"/dataset/{ds['name']}/resource/{res['id']}/download/cells.rtdc"
    for who in (None, outsider.admin, outsider.member):
        assert_nothing_given(get(site, path, who), 403)
    assert get(site, path, victim.member).status_code in (200, 302)


@pytest.mark.parametrize("rid", [
    "..%2F..%2F..%2Fetc%2Fpasswd", "%00", "x" * 4096,
    "%E2%80%AE" + "a" * 30,  # a right-to-left override
])
def test_malformed_resource_ids_are_not_found(site, victim, rid):
    ds, _ = private_resource(site, victim, STORE)
    for who in (None, victim.editor):
        assert_nothing_given(
            get(site, f"/dataset/{ds['id']}/resource/{rid}/download/x",
                who), 404)


@pytest.mark.parametrize("dataset_ref", [
    "..%2F..", "%00", "x" * 4096, "%EF%BC%8E%EF%BC%8E"])  # fullwidth ..
def test_malformed_dataset_refs_are_not_found(site, victim, dataset_ref):
    _, res = private_resource(site, victim, STORE)
    for who in (None, victim.editor):
        assert_nothing_given(
            get(site, f"/dataset/{dataset_ref}/resource/{res['id']}"
                      "/download/cells.rtdc", who), 404)


def test_a_look_alike_of_the_resource_id_is_not_found(site, victim):
    ds, res = private_resource(site, victim, STORE)
    # The fullwidth form of its first character: NFKC turns it back into
    # the id, the route must not.
    rid = res["id"]
    look_alike = chr(ord(rid[0]) + 0xFEE0) + rid[1:]
    path = (f"/dataset/{ds['id']}/resource/"
            f"{urllib.parse.quote(look_alike)}/download/cells.rtdc")
    assert_nothing_given(get(site, path, victim.editor), 404)


@pytest.mark.parametrize("where", [STORE, BLOCK])
def test_the_file_name_of_the_url_changes_nothing(site, victim, where):
    ds, res = private_resource(site, victim, where)
    base = f"/dataset/{ds['id']}/resource/{res['id']}/download/"
    # An encoded "/" is no file name: no route, for anybody.
    for who in (None, victim.editor):
        assert_nothing_given(get(site, base + "..%2F..%2Fetc%2Fpasswd",
                                 who), 404)
    for name in ("%2E%2E", "..%5C..%5Cetc%5Cpasswd", "passwd"):
        assert_nothing_given(get(site, base + name), 403)
        answer = get(site, base + name, victim.editor)
        if where == STORE:
            assert answer.status_code == 302
            answer = requests.get(answer.headers["Location"], timeout=30)
            assert "passwd" not in answer.headers["Content-Disposition"]
        assert answer.status_code == 200
        assert answer.content == DATA


def test_a_member_removed_from_the_organization_is_refused_at_once(
        site, victim):
    ds, res = private_resource(site, victim, STORE)
    path = f"/dataset/{ds['id']}/resource/{res['id']}/download/cells.rtdc"
    assert get(site, path, victim.member).status_code == 302
    site.action("organization_member_delete", victim.admin.token,
                id=victim.id, username=victim.member.name)
    assert_nothing_given(get(site, path, victim.member), 403)


@pytest.mark.parametrize("state", ["draft", "deleted"])
def test_drafts_and_deleted_datasets_give_anonymous_users_nothing(
        site, victim, state):
    ds = dataset(site, victim, private=False)
    res = direct_upload(site, victim.editor, ds["id"], DATA,
                        name="cells.rtdc")
    if state == "deleted":
        site.action("package_delete", victim.editor.token, id=ds["id"])
    else:
        site.action("package_patch", victim.editor.token, id=ds["id"],
                    state="draft")
    path = f"/dataset/{ds['id']}/resource/{res['id']}/download/cells.rtdc"
    assert_nothing_given(get(site, path), 403, 404)
    assert_nothing_given(get(site, path, organization().editor), 403, 404)
