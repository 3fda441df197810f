"""Nobody can open, close or forge another's data (over HTTP, real users).

Each test drives the live CKAN site with the API token of an ordinary
user (or none) and asserts what an anonymous visitor of the object store
gets afterwards.
"""
from __future__ import annotations

import hashlib
import uuid

import pytest
import requests
from ckan.tests import helpers

from ckanext.dcor_depot.storage import layout, object_store
from tests.support.access import (
    anon_status,
    dataset,
    fresh_dataset,
    fresh_resource,
    object_url,
    organization,
    person,
    put_artifact,
    stored_resource,
    upload,
)
from tests.support.stack import run_jobs


@pytest.fixture
def org_a(site):
    return organization()


@pytest.fixture
def public_data(site, org_a):
    """A public dataset of org A whose data are in the store (200)."""
    ds = dataset(site, org_a, private=False)
    res = stored_resource(site, org_a.editor, ds["id"])
    url = res["s3_url"]
    assert anon_status(url) == 200
    return ds, res, url


# ------------------------------------------------ 1. authorization first
@pytest.mark.parametrize("action", ["package_delete", "dataset_purge"])
def test_refused_dataset_removal_leaves_public_data_public(
        site, org_a, public_data, action):
    ds, res, url = public_data
    outsider = person()
    for token in (None, outsider.token, org_a.member.token):
        assert site.status(action, token, id=ds["id"]) == 403
        assert anon_status(url) == 200
    assert fresh_dataset(ds["id"])["state"] == "active"


def test_refused_resource_delete_leaves_public_data_public(
        site, org_a, public_data):
    ds, res, url = public_data
    for token in (None, person().token, org_a.member.token):
        assert site.status("resource_delete", token, id=res["id"]) == 403
        assert anon_status(url) == 200
    assert fresh_resource(res["id"])["state"] == "active"


@pytest.mark.parametrize("action", ["bulk_update_private",
                                    "bulk_update_delete"])
def test_bulk_action_of_another_organization_changes_nothing(
        site, org_a, public_data, action):
    ds, res, url = public_data
    stamped = metadata_modified(ds["id"])
    org_b = organization()
    # Admin of B names B as the organization but A's dataset: CKAN
    # changes nothing (the dataset is not B's), and neither may the store.
    site.action(action, org_b.admin.token, org_id=org_b.id,
                datasets=[ds["id"]])
    assert anon_status(url) == 200
    # Naming A as the organization is refused outright.
    assert site.status(action, org_b.admin.token, org_id=org_a.id,
                       datasets=[ds["id"]]) == 403
    assert anon_status(url) == 200
    after = fresh_dataset(ds["id"])
    assert (after["private"], after["state"]) == (False, "active")
    assert metadata_modified(ds["id"]) == stamped


def metadata_modified(dataset_id: str):
    """As the database has it (CKAN's bulk actions write behind the ORM:
    the plugin stamps their datasets for the rolling audit)."""
    import sqlalchemy as sa
    from ckan import model
    with model.meta.engine.connect() as conn:
        return conn.execute(sa.text(
            "SELECT metadata_modified FROM package WHERE id = :id"),
            {"id": dataset_id}).scalar_one()


def test_bulk_actions_of_the_own_organization_take_effect(
        site, org_a, public_data):
    ds, res, url = public_data
    stamped = metadata_modified(ds["id"])
    site.action("bulk_update_private", org_a.admin.token, org_id=org_a.id,
                datasets=[ds["id"]])
    assert anon_status(url) == 403
    assert metadata_modified(ds["id"]) > stamped
    site.action("bulk_update_public", org_a.admin.token, org_id=org_a.id,
                datasets=[ds["id"]])
    assert anon_status(url) == 200
    site.action("bulk_update_delete", org_a.admin.token, org_id=org_a.id,
                datasets=[ds["id"]])
    assert anon_status(url) == 403


def test_member_cannot_make_a_dataset_public(site, org_a):
    ds = dataset(site, org_a, private=True)
    res = stored_resource(site, org_a.editor, ds["id"])
    assert site.status("package_patch", org_a.member.token, id=ds["id"],
                       private=False) == 403
    assert site.status("bulk_update_public", org_a.member.token,
                       org_id=org_a.id, datasets=[ds["id"]]) == 403
    assert anon_status(res["s3_url"]) == 403
    assert fresh_dataset(ds["id"])["private"] is True


# ----------------------------------------- purge and unowned datasets
def test_purge_closes_every_artifact_and_keeps_the_objects(
        site, org_a, public_data):
    ds, res, url = public_data
    preview = put_artifact(org_a.id, res["id"], "preview")
    site.action("package_patch", org_a.editor.token, id=ds["id"],
                private=True)
    site.action("package_patch", org_a.editor.token, id=ds["id"],
                private=False)
    assert anon_status(preview) == 200
    sysadmin = person(sysadmin=True)
    site.action("dataset_purge", sysadmin.token, id=ds["id"])
    assert anon_status(url) == 403
    assert anon_status(preview) == 403
    # The objects stay (an audit finds them), only access is closed.
    assert object_store.object_exists(org_a.bucket,
                                      layout.object_key(res["id"]))


def test_organization_delete_closes_objects_of_its_datasets(
        site, org_a, public_data):
    ds, res, url = public_data
    site.action("organization_delete", org_a.admin.token, id=org_a.id)
    after = fresh_dataset(ds["id"])
    assert not after["owner_org"]  # the live site allows unowned datasets
    assert anon_status(url) == 403
    assert object_store.object_exists(org_a.bucket,
                                      layout.object_key(res["id"]))


def test_purge_of_a_deleted_dataset_keeps_it_closed(site, org_a,
                                                    public_data):
    ds, res, url = public_data
    site.action("package_delete", org_a.editor.token, id=ds["id"])
    assert anon_status(url) == 403
    site.action("dataset_purge", person(sysadmin=True).token, id=ds["id"])
    assert anon_status(url) == 403


# ------------------------------------------------- plugin-owned fields
FORGED = {
    "s3_available": True,
    "s3_url": "http://127.0.0.1:7480/other-bucket/resource/abc/def/ghi",
    "sha256": "0" * 64,
}
#: Owned too: present while a dataset's data move, and once the stored
#: bytes were verified.
MOVE_MARKER = {"s3_moved_from": FORGED["s3_url"],
               "s3_verified_at": "2020-01-01T00:00:00+00:00"}


@pytest.mark.parametrize("field", sorted(FORGED | MOVE_MARKER))
def test_editor_cannot_create_a_resource_with_owned_fields(
        site, org_a, field):
    ds = dataset(site, org_a)
    resp = site.call("resource_create", org_a.editor.token,
                     package_id=ds["id"], url="http://example.org/x",
                     name="forged", **{field: (FORGED | MOVE_MARKER)[field]})
    assert resp.status_code == 409
    assert field in resp.json()["error"]
    assert fresh_dataset(ds["id"])["resources"] == []


def test_forged_owned_fields_with_an_upload_store_nothing(site, org_a):
    ds = dataset(site, org_a)
    resp = site.call("resource_create", org_a.editor.token,
                     files={"upload": ("data.rtdc", b"forged")},
                     package_id=ds["id"], name="data.rtdc",
                     sha256=FORGED["sha256"], s3_available="true")
    assert resp.status_code == 409
    assert fresh_dataset(ds["id"])["resources"] == []


@pytest.mark.parametrize("field", sorted(FORGED | MOVE_MARKER))
def test_editor_cannot_change_owned_fields(site, org_a, field):
    ds = dataset(site, org_a)
    res = stored_resource(site, org_a.editor, ds["id"])
    before = {k: res[k] for k in FORGED}
    value = {"s3_available": False, "s3_url": FORGED["s3_url"],
             "sha256": FORGED["sha256"],
             "s3_moved_from": MOVE_MARKER["s3_moved_from"],
             "s3_verified_at": MOVE_MARKER["s3_verified_at"]}[field]
    for action, extra in (("resource_patch", {}),
                          ("resource_update", {"url": res["url"]})):
        resp = site.call(action, org_a.editor.token, id=res["id"],
                         **extra, **{field: value})
        assert resp.status_code == 409, action
        assert field in resp.json()["error"]
    resp = site.call("package_revise", org_a.editor.token,
                     match={"id": ds["id"]},
                     update={"resources": [dict(res, **{field: value})]})
    assert resp.status_code == 409
    after = fresh_resource(res["id"])
    assert {k: after[k] for k in FORGED} == before


def test_round_trip_and_metadata_edits_keep_owned_fields(site, org_a):
    ds = dataset(site, org_a)
    res = stored_resource(site, org_a.editor, ds["id"])
    owned = {k: res[k] for k in FORGED}
    # package_show -> edit -> package_update, as API clients do
    shown = site.action("package_show", org_a.editor.token, id=ds["id"])
    shown["notes"] = "edited"
    shown["resources"][0]["description"] = "edited too"
    site.action("package_update", org_a.editor.token, **shown)
    # resource_update without the owned fields keeps them
    site.action("resource_update", org_a.editor.token, id=res["id"],
                url=res["url"], url_type="upload", name="renamed.rtdc")
    site.action("resource_patch", org_a.editor.token, id=res["id"],
                description="patched")
    after = fresh_resource(res["id"])
    assert {k: after[k] for k in FORGED} == owned
    assert (after["name"], after["description"]) == ("renamed.rtdc",
                                                     "patched")


def test_not_even_a_sysadmin_sets_owned_fields_of_a_new_resource(
        site, org_a):
    ds = dataset(site, org_a)
    admin = person(sysadmin=True)
    resp = site.call("resource_create", admin.token, package_id=ds["id"],
                     url="http://example.org/x", name="x", sha256="1" * 64)
    assert resp.status_code == 409
    assert fresh_dataset(ds["id"])["resources"] == []


# ------------------------------------------------------ immutable files
def test_the_file_of_a_resource_cannot_be_replaced(site, org_a):
    ds = dataset(site, org_a)
    data = b"original bytes"
    res = stored_resource(site, org_a.editor, ds["id"], data)
    token = org_a.editor.token
    attempts = [
        site.call("resource_update", token, id=res["id"], url="new.rtdc",
                  files={"upload": ("new.rtdc", b"replaced")}),
        site.call("resource_patch", token, id=res["id"],
                  files={"upload": ("new.rtdc", b"replaced")}),
        site.call("resource_patch", token, id=res["id"],
                  clear_upload="true"),
        site.call("resource_patch", token, id=res["id"], url_type="",
                  url="http://example.org/elsewhere"),
        site.call("package_revise", token, match__id=ds["id"],
                  files={f"update__resources__{res['id'][:8]}__upload":
                         ("new.rtdc", b"replaced")}),
    ]
    for resp in attempts:
        assert resp.status_code == 409, resp.text
        assert "add a new resource" in resp.text
    after = fresh_resource(res["id"])
    assert after["url_type"] == "upload"
    path = layout.ckan_upload_path(res["id"])
    assert path.read_bytes() == data
    s3 = object_store.get_client()
    assert s3.get_object(Bucket=org_a.bucket, Key=layout.object_key(
        res["id"]))["Body"].read() == data


def test_resources_created_by_package_revise_get_their_jobs(site, org_a):
    ds = dataset(site, org_a, private=False)
    data = b"added through package_revise"
    site.action("package_revise", org_a.editor.token, match__id=ds["id"],
                update__resources__extend=[{"name": "added.rtdc"}],
                files={"update__resources__-1__upload":
                       ("added.rtdc", data)})
    res = fresh_dataset(ds["id"])["resources"][0]
    run_jobs()
    res = fresh_resource(res["id"])
    assert layout.ckan_upload_path(res["id"]).is_symlink()
    assert res["sha256"] == hashlib.sha256(data).hexdigest()
    assert anon_status(res["s3_url"]) == 200


# ------------------------------------------------------------------ ids
@pytest.mark.parametrize("make_id", [
    lambda u: "{" + u + "}", lambda u: "urn:uuid:" + u, lambda u: u + "/..",
])
def test_unusable_resource_ids_are_refused_cleanly(site, org_a, make_id):
    ds = dataset(site, org_a)
    admin = person(sysadmin=True)
    resp = site.call("resource_create", admin.token,
                     files={"upload": ("d.rtdc", b"x")},
                     package_id=ds["id"], id=make_id(str(uuid.uuid4())))
    assert resp.status_code == 409, resp.text
    assert "id" in resp.json()["error"]
    assert fresh_dataset(ds["id"])["resources"] == []


def test_unusable_dataset_id_is_refused_cleanly(site, org_a):
    admin = person(sysadmin=True)
    resp = site.call("package_create", admin.token,
                     name=f"ds-{uuid.uuid4()}", owner_org=org_a.id,
                     id="{" + str(uuid.uuid4()) + "}")
    assert resp.status_code == 409
    assert "id" in resp.json()["error"]


@pytest.mark.parametrize("sysadmin", [False, True])
def test_nobody_chooses_resource_ids_over_the_api(site, org_a, sysadmin):
    ds = dataset(site, org_a)
    who = person(sysadmin=True) if sysadmin else org_a.editor
    resp = site.call("resource_create", who.token,
                     files={"upload": ("d.rtdc", b"x")},
                     package_id=ds["id"], id=str(uuid.uuid4()))
    assert resp.status_code == 409
    assert "chosen by CKAN" in resp.json()["error"]["id"][0]
    assert fresh_dataset(ds["id"])["resources"] == []


def test_the_id_of_a_purged_resource_cannot_reopen_its_objects(
        site, org_a):
    hidden = dataset(site, org_a, private=True)
    res = stored_resource(site, org_a.editor, hidden["id"], b"secret")
    site.action("dataset_purge", person(sysadmin=True).token,
                id=hidden["id"])
    public = dataset(site, org_a, private=False)
    resp = site.call("resource_create", org_a.editor.token,
                     package_id=public["id"], id=res["id"],
                     url="http://example.org/link", name="link")
    assert resp.status_code == 409
    assert anon_status(res["s3_url"]) == 403


def test_a_taken_resource_id_is_refused_even_for_sysadmins(site, org_a):
    mine = dataset(site, org_a)
    res = upload(site, org_a.editor, mine["id"], b"first")
    org_b = organization()
    theirs = dataset(site, org_b)
    resp = site.call("resource_create", person(sysadmin=True).token,
                     files={"upload": ("d.rtdc", b"overwrite")},
                     package_id=theirs["id"], id=res["id"])
    assert resp.status_code == 409
    assert "issued to you" in resp.json()["error"]["id"][0]
    assert layout.ckan_upload_path(res["id"]).read_bytes() == b"first"
    assert fresh_resource(res["id"])["package_id"] == mine["id"]


@pytest.mark.parametrize("hidden", [
    {"s3_available": True, "sha256": "0" * 64},
    {"url_type": "", "url": "http://example.org/elsewhere"},
])
def test_fields_hidden_in_extras_are_refused(site, org_a, hidden):
    ds = dataset(site, org_a)
    resp = site.call("resource_create", org_a.editor.token,
                     package_id=ds["id"], url="http://example.org/x",
                     name="x", __extras=hidden)
    assert resp.status_code == 409
    assert "__extras" in resp.json()["error"]
    res = stored_resource(site, org_a.editor, ds["id"])
    resp = site.call("resource_patch", org_a.editor.token, id=res["id"],
                     __extras=hidden)
    assert resp.status_code == 409
    after = fresh_resource(res["id"])
    assert (after["url_type"], after["sha256"]) == ("upload", res["sha256"])


# -------------------------------------------------- visibility commits
def test_private_and_public_over_http(site, org_a):
    ds = dataset(site, org_a, private=True)
    res = stored_resource(site, org_a.editor, ds["id"])
    condensed = put_artifact(org_a.id, res["id"], "condensed")
    url = res["s3_url"]
    assert (anon_status(url), anon_status(condensed)) == (403, 403)
    site.action("package_patch", org_a.editor.token, id=ds["id"],
                private=False)
    assert (anon_status(url), anon_status(condensed)) == (200, 200)
    site.action("package_patch", org_a.editor.token, id=ds["id"],
                private=True)
    assert (anon_status(url), anon_status(condensed)) == (403, 403)
    site.action("package_patch", org_a.editor.token, id=ds["id"],
                private=False, state="draft")
    assert anon_status(url) == 403
    site.action("package_patch", org_a.editor.token, id=ds["id"],
                state="active")
    assert anon_status(url) == 200
    site.action("resource_delete", org_a.editor.token, id=res["id"])
    assert (anon_status(url), anon_status(condensed)) == (403, 403)


def test_object_url_of_a_new_public_resource(site, org_a):
    ds = dataset(site, org_a, private=False)
    res = upload(site, org_a.editor, ds["id"], b"fresh")
    assert anon_status(object_url(org_a.id, res["id"])) == 403  # no object
    run_jobs()
    assert anon_status(object_url(org_a.id, res["id"])) == 200


def test_the_web_form_edits_metadata_and_keeps_the_file(site, org_a):
    """The resource edit form posts what a browser sends for an unchanged
    file (url_type "upload", an empty file field, the download URL)."""
    ds = dataset(site, org_a, private=False)
    res = stored_resource(site, org_a.editor, ds["id"], b"form data")
    headers = {"Authorization": org_a.editor.token}
    page = f"{site.url}/dataset/{ds['id']}/resource/{res['id']}/edit"
    form = requests.get(page, headers=headers, timeout=60)
    assert form.status_code == 200
    assert 'name="url_type" value="upload"' in form.text
    resp = requests.post(
        page, headers=headers, allow_redirects=False, timeout=60,
        data={"url_type": "upload", "url": res["url"], "name": res["name"],
              "description": "edited in the form", "format": "",
              "save": ""},
        files={"upload": ("", b"")})
    assert resp.status_code == 302, resp.text[:2000]
    after = fresh_resource(res["id"])
    assert after["description"] == "edited in the form"
    assert {k: after[k] for k in FORGED} == {k: res[k] for k in FORGED}
    assert anon_status(res["s3_url"]) == 200
    # Choosing another file in the same form is refused.
    resp = requests.post(
        page, headers=headers, allow_redirects=False, timeout=60,
        data={"url_type": "upload", "url": res["url"], "name": res["name"],
              "save": ""},
        files={"upload": ("other.rtdc", b"replacement")})
    assert resp.status_code == 200  # the form again, with the error
    assert "add a new resource" in resp.text
    assert layout.ckan_upload_path(res["id"]).read_bytes() == b"form data"


def test_a_chosen_id_with_a_public_object_is_closed(site, org_a):
    """An object left public under an id (e.g. by an interrupted purge)
    is closed when the plugin's own commands (the only callers that
    choose ids besides registered uploads) create a resource with that
    id in a private dataset."""
    rid = str(uuid.uuid4())
    url = put_artifact(org_a.id, rid, "resource", b"left behind")
    object_store.set_public(org_a.bucket, layout.object_key(rid), True)
    assert anon_status(url) == 200
    ds = dataset(site, org_a, private=True)
    helpers.call_action("resource_create", package_id=ds["id"], id=rid,
                        url="http://example.org/x", name="x")
    assert anon_status(url) == 403
