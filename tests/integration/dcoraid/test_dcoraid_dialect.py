"""DCOR-Aid's dialect of ``resource_upload_s3_urls`` and its registration
by ``package_revise``, over HTTP with real users: who gets URLs, what the
answer looks like, and that no URL handed out writes a registered object
or reads anything."""
from __future__ import annotations

import hashlib
import os
import re
import uuid

import pytest
import requests

from ckanext.dcor_depot.operations import dcoraid_upload
from ckanext.dcor_depot.records import upload_grants
from ckanext.dcor_depot.storage import layout, object_store
from tests.support.access import (
    Person,
    dataset,
    fresh_dataset,
    organization,
    person,
    stored_resource,
)
from tests.support.browser import set_password
from tests.support.live_site import error_status
from tests.support.store import open_uploads

s3_api = pytest.importorskip("dcoraid.api.s3_api")

MiB = 2**20
GiB = 2**30


def ask(site, who: Person | None, org_id: str, size: int,
        method: str = "GET") -> requests.Response:
    """DCOR-Aid's request: GET with query parameters and its token."""
    headers = {"Authorization": who.token} if who else {}
    return requests.request(
        method, f"{site.url}/api/3/action/resource_upload_s3_urls",
        params={"organization_id": org_id, "file_size": str(size)},
        headers=headers, timeout=60)


def issued(site, who, org_id: str, size: int) -> dict:
    resp = ask(site, who, org_id, size)
    assert resp.status_code == 200, resp.text
    return resp.json()["result"]


def register(site, who, dataset_id: str, rid: str, name="cells.rtdc"):
    """DCOR-Aid's registration of an uploaded file."""
    return site.action("package_revise", who.token, match={"id": dataset_id},
                       update__resources__extend=[
                           {"id": rid, "name": name, "s3_available": True}])


def send(answer: dict, data: bytes) -> requests.Response:
    (url,) = answer["upload_urls"]
    return requests.put(url, data=data, timeout=60)


@pytest.mark.parametrize("size", [0, 1000, GiB, GiB + 1, 3 * GiB - 7])
def test_the_answer_has_dcoraids_layout(site, org, size):
    answer = issued(site, org.editor, org.id, size)
    assert set(answer) == {"upload_urls", "complete_url", "resource_id"}
    count = max(1, -(-size // GiB))
    if size:  # DCOR-Aid's own arithmetic (it divides by zero for 0 bytes)
        assert count == s3_api.compute_upload_part_parameters(size)[
            "num_parts"]
    assert len(answer["upload_urls"]) == count
    assert (answer["complete_url"] is None) == (count == 1)
    # an upload of the resource's own key waits in the organization's bucket
    assert open_uploads(org.bucket) == [
        layout.object_key(answer["resource_id"])]


def test_a_part_url_takes_exactly_the_declared_size(site, org):
    answer = issued(site, org.editor, org.id, 1000)
    assert send(answer, os.urandom(999)).status_code == 403
    assert send(answer, os.urandom(1001)).status_code == 403
    resp = send(answer, data := os.urandom(1000))
    assert resp.status_code == 200
    assert resp.headers["ETag"].strip('"') == hashlib.md5(data).hexdigest()


def test_post_is_answered_too(site, org):
    resp = ask(site, org.editor, org.id, 10, method="POST")
    assert resp.status_code == 200
    assert len(resp.json()["result"]["upload_urls"]) == 1


@pytest.mark.parametrize("who", ["anonymous", "member", "outsider",
                                 "other_editor"])
def test_only_those_who_may_create_datasets_get_urls(site, org, who):
    other = organization()
    person_of = {"anonymous": None, "member": org.member,
                 "outsider": person(), "other_editor": other.editor}
    assert ask(site, person_of[who], org.id, 1000).status_code == 403
    assert open_uploads(org.bucket) == []


def test_unknown_organizations_and_bad_sizes_are_refused(site, org):
    assert ask(site, org.editor, str(uuid.uuid4()), 10).status_code == 403
    for size in ("-1", "ten", str(2**50)):
        assert ask(site, org.editor, org.id, size).status_code == 409
    assert open_uploads(org.bucket) == []


def cookie_session(site, who: Person) -> requests.Session:
    """A browser-like session logged in through CKAN's login form."""
    set_password(who.name, "a-Long-password-1")
    session = requests.Session()
    form = session.get(f"{site.url}/user/login", timeout=60).text
    token = re.search(r'name="_csrf_token"[^>]*value="([^"]+)"', form)
    session.post(f"{site.url}/user/login", timeout=60, data={
        "login": who.name, "password": "a-Long-password-1",
        "_csrf_token": token.group(1) if token else ""})
    me = session.get(f"{site.url}/api/3/action/user_show",
                     params={"id": who.name}, timeout=60)
    assert me.json()["result"].get("email"), "the login did not work"
    return session


def test_a_cookie_never_gets_urls(site, org):
    session = cookie_session(site, org.editor)
    resp = session.get(f"{site.url}/api/3/action/resource_upload_s3_urls",
                       params={"organization_id": org.id,
                               "file_size": "1000"}, timeout=60)
    assert resp.status_code == 403
    assert open_uploads(org.bucket) == []


# ------------------------------------------------------------ registration
def test_registration_records_what_was_verified(site, org, ds):
    answer = issued(site, org.editor, org.id, 1000)
    data = os.urandom(1000)
    etag = send(answer, data).headers["ETag"].strip('"')
    revised = register(site, org.editor, ds["id"], answer["resource_id"])
    (res,) = revised["package"]["resources"]
    assert res["id"] == answer["resource_id"]
    assert res["url_type"] == "s3_upload" and res["size"] == 1000
    assert res["etag"] == etag
    assert res["s3_url"] == object_store.object_url(
        org.bucket, layout.object_key(res["id"]))
    assert res["url"].endswith(f"/resource/{res['id']}/download/cells.rtdc")
    stored = object_store.get_client().get_object(
        Bucket=org.bucket, Key=layout.object_key(res["id"]))["Body"].read()
    assert stored == data
    # the grant is used up: a second registration of the id is refused
    assert upload_grants.load(res["id"]) is None
    # DCOR-Aid's supplements go to the existing resource as usual
    site.action("package_revise", org.editor.token, match__id=ds["id"],
                **{f"update__resources__{res['id']}": {"sp:chip:name": "x"}})
    (again,) = fresh_dataset(ds["id"])["resources"]
    assert again["sp:chip:name"] == "x" and again["etag"] == etag


def test_a_sysadmins_ghost_registration_is_refused(site, org, ds):
    admin = person(sysadmin=True)
    ghost = str(uuid.uuid4())
    status, error = error_status(
        lambda: register(site, admin, ds["id"], ghost))
    assert status == 409 and "issued" in str(error)
    status, _ = error_status(lambda: site.action(
        "package_revise", admin.token, match={"id": ds["id"]},
        update__resources__extend=[{"name": "x", "s3_available": True}]))
    assert status == 409
    status, _ = error_status(lambda: site.action(
        "resource_create", admin.token, package_id=ds["id"], id=ghost,
        name="x", url="http://example.org/x"))
    assert status == 409
    assert fresh_dataset(ds["id"])["resources"] == []


def test_only_the_uploader_registers_in_its_organization(site, org, ds):
    answer = issued(site, org.editor, org.id, 1000)
    assert send(answer, os.urandom(1000)).status_code == 200
    rid = answer["resource_id"]
    # the organization's admin did not get this id
    status, _ = error_status(lambda: register(site, org.admin, ds["id"], rid))
    assert status == 409
    # nor does the id work in another organization's dataset
    other = organization()
    elsewhere = dataset(site, other, private=True)
    site.action("member_create", other.admin.token, id=other.id,
                object=org.editor.name, object_type="user",
                capacity="editor")
    status, _ = error_status(
        lambda: register(site, org.editor, elsewhere["id"], rid))
    assert status == 409
    assert fresh_dataset(elsewhere["id"])["resources"] == []
    assert fresh_dataset(ds["id"])["resources"] == []
    # the uploader still can
    register(site, org.editor, ds["id"], rid)
    assert [r["id"] for r in fresh_dataset(ds["id"])["resources"]] == [rid]


def test_an_incomplete_upload_is_not_registered(site, org, ds):
    answer = issued(site, org.editor, org.id, 1000)
    status, error = error_status(
        lambda: register(site, org.editor, ds["id"], answer["resource_id"]))
    assert status == 409 and "1000 bytes" in str(error)
    assert fresh_dataset(ds["id"])["resources"] == []
    # the upload goes on and then registers
    assert send(answer, os.urandom(1000)).status_code == 200
    register(site, org.editor, ds["id"], answer["resource_id"])


# ------------------------------------------- what the URLs cannot do
def test_no_url_writes_a_registered_object(site, org, ds):
    answer = issued(site, org.editor, org.id, 1000)
    data = os.urandom(1000)
    send(answer, data)
    register(site, org.editor, ds["id"], answer["resource_id"])
    resp = send(answer, os.urandom(1000))
    assert resp.status_code == 404 and "NoSuchUpload" in resp.text
    stored = object_store.get_client().get_object(
        Bucket=org.bucket, Key=layout.object_key(answer["resource_id"]))
    assert stored["Body"].read() == data


def test_no_url_reads_anything(site, org, ds):
    """The part URLs cannot be turned into reads: not by GET, and not by
    a copy of another organization's private object (which the gateway
    would do on a presigned PutObject URL: the plugin issues none)."""
    other = organization()
    secret_ds = dataset(site, other, private=True)
    secret = stored_resource(site, other.editor, secret_ds["id"],
                             b"private bytes of another circle" * 30)
    source = f"/{other.bucket}/{layout.object_key(secret['id'])}"
    answer = issued(site, org.editor, org.id, secret["size"])
    (url,) = answer["upload_urls"]
    assert requests.get(url, timeout=60).status_code == 403
    for body in (b"", os.urandom(secret["size"])):
        resp = requests.put(url, data=body, timeout=60,
                            headers={"x-amz-copy-source": source})
        assert resp.status_code >= 400
    status, _ = error_status(
        lambda: register(site, org.editor, ds["id"], answer["resource_id"]))
    assert status == 409  # no part was stored
    # what the plugin avoids: a PutObject URL signed by its credential
    staging = object_store.get_client().generate_presigned_url(
        "put_object", ExpiresIn=60,
        Params={"Bucket": org.bucket, "Key": "probe/copy"})
    copied = requests.put(staging, timeout=60,
                          headers={"x-amz-copy-source": source})
    assert copied.status_code == 200, "the gateway now refuses it: good"
    object_store.delete_objects(org.bucket, ["probe/copy"])


# --------------------------------------------- the completion URL
def small_multipart(site, org, monkeypatch, size: int) -> dict:
    """An upload in DCOR-Aid's dialect with parts of at most 10 MiB
    instead of 1 GiB (issued in-process: the live site answers its
    completion URL)."""
    monkeypatch.setattr(dcoraid_upload, "PART_LIMIT", 10 * MiB)
    return dcoraid_upload.issue(
        dcoraid_upload.DcoraidRequest(org.id, org.editor.id, size),
        lambda rid, secret:
        f"{site.url}/dcor-depot/uploads/{rid}/complete/{secret}")


def test_dcoraid_completes_several_parts_through_the_site(
        site, org, ds, monkeypatch, tmp_path):
    data = os.urandom(25 * MiB + 1)
    path = tmp_path / "cells.bin"
    path.write_bytes(data)
    answer = small_multipart(site, org, monkeypatch, len(data))
    assert len(answer["upload_urls"]) == 3
    parms = {"part_size": -(-len(data) // 3)}  # DCOR-Aid's arithmetic
    etag = s3_api.upload_s3_presigned_multipart(
        path=path, part_size=parms["part_size"], file_size=len(data),
        presigned_urls=answer["upload_urls"],
        complete_multipart_url=answer["complete_url"])
    assert etag.endswith("-3")
    # DCOR-Aid retries: the same answer again, the same object
    again = requests.post(answer["complete_url"], timeout=60,
                          data=s3_api.assemble_complete_multipart_xml(
                              parts_etags(path, parms["part_size"])))
    assert again.status_code == 200
    assert again.headers["ETag"].strip('"') == etag
    revised = register(site, org.editor, ds["id"], answer["resource_id"])
    (res,) = revised["package"]["resources"]
    assert res["etag"] == etag and res["size"] == len(data)
    # after registration: still the same answer, no URL writes
    assert requests.post(answer["complete_url"], timeout=60,
                         data=s3_api.assemble_complete_multipart_xml(
                             parts_etags(path, parms["part_size"]))
                         ).status_code == 404
    for url in answer["upload_urls"]:
        assert requests.put(url, data=b"x" * parms["part_size"],
                            timeout=60).status_code in (403, 404)


def parts_etags(path, part_size: int) -> list[str]:
    data = path.read_bytes()
    return [hashlib.md5(data[i:i + part_size]).hexdigest()
            for i in range(0, len(data), part_size)]


def test_the_completion_url_refuses_what_it_must(site, org, monkeypatch):
    answer = small_multipart(site, org, monkeypatch, 25 * MiB)
    url = answer["complete_url"]
    # no reading (CKAN 2.11 answers 404, 2.12 405)
    assert requests.get(url, timeout=60).status_code in (404, 405)
    wrong_secret = url.rsplit("/", 1)[0] + "/not-the-secret"
    body = s3_api.assemble_complete_multipart_xml(["0" * 32] * 3)
    resp = requests.post(wrong_secret, data=body, timeout=60)
    assert resp.status_code == 404 and "<Error>" in resp.text
    resp = requests.post(url, data="<nonsense/>", timeout=60)
    assert resp.status_code == 400 and "<Error>" in resp.text
    # parts not uploaded: nothing is completed
    resp = requests.post(url, data=body, timeout=60)
    assert resp.status_code == 400 and "<Error>" in resp.text
    assert open_uploads(org.bucket) == [
        layout.object_key(answer["resource_id"])]


# ------------------------------------------------ found by review
def test_a_cookie_head_request_starts_no_upload(site, org, ds):
    session = cookie_session(site, org.editor)
    for params in ({"organization_id": org.id, "file_size": "10"},
                   {"package_id": ds["id"], "name": "x", "size": "10"}):
        resp = session.head(
            f"{site.url}/api/3/action/resource_upload_s3_urls",
            params=params, timeout=60)
        assert resp.status_code == 403
    assert open_uploads(org.bucket) == []


def test_a_refused_registration_leaves_the_upload_open(site, org, ds):
    answer = issued(site, org.editor, org.id, 1000)
    send(answer, os.urandom(1000))
    rid = answer["resource_id"]
    status, error = error_status(lambda: site.action(
        "package_revise", org.editor.token, match={"id": ds["id"]},
        update__resources__extend=[{"id": rid, "name": "x",
                                    "s3_available": True,
                                    "sha256": "0" * 64}]))
    assert status == 409 and "sha256" in str(error)
    # nothing was completed: the upload is still open, no object exists
    assert open_uploads(org.bucket) == [layout.object_key(rid)]
    assert object_store.head_object(org.bucket, layout.object_key(rid)) \
        is None
    register(site, org.editor, ds["id"], rid)


def test_the_recorded_etag_is_that_of_the_stored_parts(site, org, ds):
    """A completion noted but never done (the store failed), then a part
    sent again with other bytes: the ETag recorded is the object's."""
    import dataclasses
    import time
    answer = issued(site, org.editor, org.id, 1000)
    send(answer, os.urandom(1000))
    rid = answer["resource_id"]
    grant = upload_grants.load(rid)
    upload_grants.save(dataclasses.replace(
        grant, completed_etag="0" * 32 + "-1", client_etag="0" * 32),
        time.time())
    final = os.urandom(1000)
    send(answer, final)
    (res,) = register(site, org.editor, ds["id"], rid)["package"][
        "resources"]
    assert res["etag"] == hashlib.md5(final).hexdigest()
    stored = object_store.get_client().get_object(
        Bucket=org.bucket, Key=layout.object_key(rid))["Body"].read()
    assert stored == final


def test_the_uploader_may_end_a_dcoraid_upload(site, org):
    answer = issued(site, org.editor, org.id, 1000)
    rid = answer["resource_id"]
    other = organization()
    for who in (other.editor, org.member):
        assert site.status("resource_upload_s3_abort", who.token,
                           resource_id=rid) == 403
    assert site.action("resource_upload_s3_status", org.editor.token,
                       resource_id=rid)["issued_to_you"] is True
    assert site.action("resource_upload_s3_abort", org.editor.token,
                       resource_id=rid) == {"aborted": True}
    assert open_uploads(org.bucket) == []


def test_a_wrong_secret_gets_no_body_read(site, org, monkeypatch):
    answer = small_multipart(site, org, monkeypatch, 25 * MiB)
    wrong = answer["complete_url"].rsplit("/", 1)[0] + "/wrong"
    resp = requests.post(wrong, data=b"x" * (3 * MiB), timeout=60)
    assert resp.status_code == 404 and "NoSuchUpload" in resp.text
    resp = requests.post(answer["complete_url"], data=b"x" * (3 * MiB),
                         timeout=60)
    assert resp.status_code == 400 and "EntityTooLarge" in resp.text


def test_the_plugins_own_dialect_answers_a_get_with_a_token(site, org, ds):
    params = {"package_id": ds["id"], "name": "cells.rtdc", "size": "1000"}
    url = f"{site.url}/api/3/action/resource_upload_s3_urls"
    resp = requests.get(url, params=params, timeout=60,
                        headers={"Authorization": org.editor.token})
    assert resp.status_code == 200
    assert [p["size"] for p in resp.json()["result"]["parts"]] == [1000]
    assert requests.get(url, params=params, timeout=60).status_code == 403
