"""``resource_upload_s3_urls`` / ``resource_upload_s3_abort`` over HTTP,
with real users and the real store (the live site's part size: 5 MiB)."""
from __future__ import annotations

import dataclasses
import hashlib
import os
import time
from urllib.parse import parse_qs, urlencode, urlsplit, urlunsplit

import ckan.plugins.toolkit as tk
import pytest
import requests

from ckanext.dcor_depot.records import upload_grants
from ckanext.dcor_depot.storage import layout, object_store
from tests.support.access import (
    anon_status,
    dataset,
    fresh_dataset,
    fresh_resource,
    organization,
    person,
    upload,
)
from tests.support.live_site import error_status
from tests.support.stack import run_jobs
from tests.support.store import open_uploads

MiB = 2**20


def tk_bool(value) -> bool:
    return str(value).lower() == "true"


def urls(site, who, ds, size=12 * MiB, **extra):
    return site.action("resource_upload_s3_urls", who.token,
                       package_id=ds["id"], name="cells.rtdc", size=size,
                       **extra)


def put(part, data: bytes) -> requests.Response:
    return requests.put(part["url"], data=data, timeout=60)


def stored_parts(org, rid, upload_id):
    s3 = object_store.get_client()
    reply = s3.list_parts(Bucket=object_store.bucket_name(org.id),
                          Key=layout.object_key(rid), UploadId=upload_id)
    return [(p["PartNumber"], p["Size"]) for p in reply.get("Parts", [])]


def test_editor_gets_one_url_per_part_and_parts_reach_the_store(
        site, org, ds):
    issued = urls(site, org.editor, ds)
    assert issued["part_size"] == 5 * MiB
    assert [(p["part_number"], p["size"]) for p in issued["parts"]] \
        == [(1, 5 * MiB), (2, 5 * MiB), (3, 2 * MiB)]
    assert issued["complete_parts"] == []
    data = os.urandom(12 * MiB)
    for part in issued["parts"]:
        start = (part["part_number"] - 1) * 5 * MiB
        assert put(part, data[start:start + part["size"]]).status_code \
            == 200
    assert stored_parts(org, issued["resource_id"], issued["upload_id"]) \
        == [(1, 5 * MiB), (2, 5 * MiB), (3, 2 * MiB)]
    # nothing exists at the key until the plugin completes the upload
    assert object_store.head_object(object_store.bucket_name(org.id),
                                    layout.object_key(issued["resource_id"])
                                    ) is None


def test_small_file_is_one_part(site, org, ds):
    issued = urls(site, org.editor, ds, size=1000)
    assert [(p["part_number"], p["size"]) for p in issued["parts"]] \
        == [(1, 1000)]


def test_resume_returns_only_the_missing_parts(site, org, ds):
    issued = urls(site, org.editor, ds)
    assert put(issued["parts"][0], os.urandom(5 * MiB)).status_code == 200
    # a wrong-sized part (not from its URL, which signs the size) does
    # not count as done
    object_store.get_client().upload_part(
        Bucket=object_store.bucket_name(org.id),
        Key=layout.object_key(issued["resource_id"]),
        UploadId=issued["upload_id"], PartNumber=3, Body=b"short")

    again = urls(site, org.editor, ds, resource_id=issued["resource_id"])
    assert again["resource_id"] == issued["resource_id"]
    assert again["upload_id"] == issued["upload_id"]
    assert again["complete_parts"] == [1]
    assert [p["part_number"] for p in again["parts"]] == [2, 3]


@pytest.mark.parametrize("who", ["member", "other_editor", "anonymous"])
def test_users_who_may_not_add_resources_get_403(site, org, ds, who):
    other = organization()
    token = {"member": org.member.token, "other_editor": other.editor.token,
             "anonymous": None}[who]
    before = open_uploads(org.bucket)
    assert site.status("resource_upload_s3_urls", token,
                       package_id=ds["id"], name="x.rtdc", size=10) == 403
    assert open_uploads(org.bucket) == before  # nothing started in the store


def test_resume_by_another_user_or_elsewhere_is_refused(site, org, ds):
    issued = urls(site, org.editor, ds)
    rid = issued["resource_id"]
    status, error = error_status(lambda: urls(site, org.admin, ds,
                                              resource_id=rid))
    assert status == 409 and "no upload" in str(error)
    other_ds = dataset(site, org, private=True)
    status, error = error_status(lambda: urls(site, org.editor, other_ds,
                                              resource_id=rid))
    assert status == 409 and "no upload" in str(error)
    status, error = error_status(lambda: urls(
        site, org.editor, ds, resource_id=rid, size=13 * MiB))
    assert status == 409 and "12582912 bytes" in str(error)


def test_ids_never_issued_or_of_existing_resources_are_refused(
        site, org, ds):
    existing = upload(site, org.editor, ds["id"])
    status, error = error_status(lambda: urls(
        site, org.editor, ds, resource_id=existing["id"]))
    assert status == 409 and "exists" in str(error)
    never = "0b8e4b55-3c1c-4b48-9b8b-000000000000"
    status, error = error_status(lambda: urls(site, org.editor, ds,
                                              resource_id=never))
    assert status == 409 and "no upload" in str(error)


@pytest.mark.parametrize("size, message", [
    (-1, "between 0 and"), (2 * 2**40, "between 0 and"),
    ("lots", "number of bytes"), (None, "number of bytes"),
])
def test_bad_sizes_are_refused(site, org, ds, size, message):
    before = open_uploads(org.bucket)
    status, error = error_status(lambda: urls(site, org.editor, ds,
                                              size=size))
    assert status == 409 and message in str(error["size"])
    assert open_uploads(org.bucket) == before


def test_a_part_url_writes_only_its_part(site, org, ds):
    issued = urls(site, org.editor, ds)
    url = issued["parts"][0]["url"]
    scheme, netloc, path, query, _ = urlsplit(url)
    params = {k: v[0] for k, v in parse_qs(query).items()}
    params["partNumber"] = "2"
    forged = urlunsplit((scheme, netloc, path, urlencode(params), ""))
    assert requests.put(forged, data=b"x", timeout=30).status_code == 403
    # and the key itself cannot be written without a signature
    bare = urlunsplit((scheme, netloc, path, "", ""))
    assert requests.put(bare, data=b"x", timeout=30).status_code == 403
    assert stored_parts(org, issued["resource_id"], issued["upload_id"]) \
        == []


def test_abort_frees_the_parts_and_ends_the_id(site, org, ds):
    issued = urls(site, org.editor, ds)
    rid = issued["resource_id"]
    assert put(issued["parts"][0], os.urandom(5 * MiB)).status_code == 200
    assert layout.object_key(rid) in open_uploads(org.bucket)
    # only the user it was issued to (or a sysadmin) may end it
    assert site.status("resource_upload_s3_abort", org.admin.token,
                       resource_id=rid) == 403
    assert site.status("resource_upload_s3_abort", None,
                       resource_id=rid) == 403
    assert layout.object_key(rid) in open_uploads(org.bucket)

    assert site.action("resource_upload_s3_abort", org.editor.token,
                       resource_id=rid) == {"aborted": True}
    assert layout.object_key(rid) not in open_uploads(org.bucket)
    status, _ = error_status(lambda: urls(site, org.editor, ds,
                                          resource_id=rid))
    assert status == 409
    assert site.status("resource_upload_s3_abort", org.editor.token,
                       resource_id=rid) == 404


def test_a_sysadmin_ends_another_users_upload_only_with_force(
        site, org, ds):
    issued = urls(site, org.editor, ds)
    rid = issued["resource_id"]
    assert put(issued["parts"][0], os.urandom(5 * MiB)).status_code == 200
    admin = person(sysadmin=True)
    for flag in ({}, {"force": False}, {"force": "yes"}):
        assert site.status("resource_upload_s3_abort", admin.token,
                           resource_id=rid, **flag) == 403
    # force is a sysadmin's flag: an organization admin gains nothing
    assert site.status("resource_upload_s3_abort", org.admin.token,
                       resource_id=rid, force=True) == 403
    # nothing changed: the parts are there and the editor resumes
    assert layout.object_key(rid) in open_uploads(org.bucket)
    assert stored_parts(org, rid, issued["upload_id"]) == [(1, 5 * MiB)]
    again = urls(site, org.editor, ds, resource_id=rid)
    assert again["complete_parts"] == [1]

    assert site.action("resource_upload_s3_abort", admin.token,
                       resource_id=rid, force=True) == {"aborted": True}
    assert layout.object_key(rid) not in open_uploads(org.bucket)
    assert upload_grants.load(rid) is None


def test_a_sysadmin_ends_their_own_upload_without_force(site, org, ds):
    admin = person(sysadmin=True)
    rid = urls(site, admin, ds, size=1000)["resource_id"]
    assert site.action("resource_upload_s3_abort", admin.token,
                       resource_id=rid) == {"aborted": True}


# ------------------------------------------------------------ the status
def status_of(site, who, rid) -> dict:
    return site.action("resource_upload_s3_status", who.token,
                       resource_id=rid)


def test_status_says_whose_upload_it_is_and_changes_nothing(site, org, ds):
    issued = urls(site, org.editor, ds)
    rid = issued["resource_id"]
    assert put(issued["parts"][0], os.urandom(5 * MiB)).status_code == 200
    status = status_of(site, org.editor, rid)
    assert {k: status[k] for k in ("resource_id", "dataset_id",
                                   "issued_to_you", "expired", "complete",
                                   "resumable")} == {
        "resource_id": rid, "dataset_id": ds["id"], "issued_to_you": True,
        "expired": False, "complete": False, "resumable": True}
    assert status["expires"] == issued["expires"]
    # others of the organization, other users, anonymous: refused
    for token in (org.admin.token, org.member.token,
                  organization().editor.token, None):
        assert site.status("resource_upload_s3_status", token,
                           resource_id=rid) == 403
    # a sysadmin may look, and learns that it is not theirs
    admin = person(sysadmin=True)
    assert status_of(site, admin, rid)["issued_to_you"] is False
    # read-only: the upload goes on as before
    assert stored_parts(org, rid, issued["upload_id"]) == [(1, 5 * MiB)]
    assert urls(site, org.editor, ds, resource_id=rid)["complete_parts"] \
        == [1]


def test_status_of_an_expired_or_ended_upload(site, org, ds):
    issued = urls(site, org.editor, ds, size=1000)
    rid = issued["resource_id"]
    grant = upload_grants.load(rid)
    upload_grants.save(dataclasses.replace(grant,
                                           expires_at=time.time() - 1),
                       time.time())
    status = status_of(site, org.editor, rid)
    assert status["expired"] is True and status["resumable"] is True
    # the store ended it (its lifecycle rule, the prune command)
    object_store.get_client().abort_multipart_upload(
        Bucket=object_store.bucket_name(org.id), Key=layout.object_key(rid),
        UploadId=issued["upload_id"])
    assert status_of(site, org.editor, rid)["resumable"] is False
    # an id the site never issued
    assert site.status("resource_upload_s3_status", org.editor.token,
                       resource_id="0" * 8 + rid[8:]) == 404


# ------------------------------------------------- creating the resource
def upload_all(site, who, ds, data: bytes) -> dict:
    issued = urls(site, who, ds, size=len(data))
    for part in issued["parts"]:
        start = (part["part_number"] - 1) * issued["part_size"]
        assert put(part, data[start:start + part["size"]]).status_code \
            == 200
    return issued


def create(site, who, ds, rid, **fields):
    return site.action("resource_create", who.token, package_id=ds["id"],
                       id=rid, url_type="s3_upload", name="cells.rtdc",
                       **fields)


@pytest.mark.parametrize("private, anonymous", [(False, 200), (True, 403)])
def test_uploaded_parts_become_a_verified_resource(site, org, private,
                                                   anonymous):
    ds = dataset(site, org, private=private)
    data = os.urandom(12 * MiB + 7)
    issued = upload_all(site, org.editor, ds, data)
    rid = issued["resource_id"]

    res = create(site, org.editor, ds, rid)

    assert res["id"] == rid and res["url_type"] == "s3_upload"
    assert res["size"] == len(data)
    assert tk_bool(res["s3_available"])
    url = res["s3_url"]
    assert url == object_store.object_url(object_store.bucket_name(org.id),
                                          layout.object_key(rid))
    assert anon_status(url) == anonymous
    s3 = object_store.get_client()
    body = s3.get_object(Bucket=object_store.bucket_name(org.id),
                         Key=layout.object_key(rid))["Body"].read()
    assert body == data
    assert open_uploads(org.bucket) == []  # nothing left behind
    run_jobs()  # the SHA256 job, then the backup job
    assert fresh_resource(rid)["sha256"] == hashlib.sha256(data).hexdigest()
    backup = layout.backup_path(rid)
    assert backup is not None and backup.read_bytes() == data
    # the URLs are used up: no part can be written any more
    assert put(issued["parts"][0], os.urandom(5 * MiB)).status_code \
        == 404


def test_creation_before_the_parts_are_complete_is_refused(site, org, ds):
    issued = urls(site, org.editor, ds)
    put(issued["parts"][0], os.urandom(5 * MiB))
    status, error = error_status(
        lambda: create(site, org.editor, ds, issued["resource_id"]))
    assert status == 409 and "missing parts [2, 3]" in str(error)
    assert fresh_dataset(ds["id"])["resources"] == []
    # the upload goes on: the rest can still be sent and created
    for part in issued["parts"][1:]:
        put(part, os.urandom(part["size"]))
    assert create(site, org.editor, ds, issued["resource_id"])["size"] \
        == 12 * MiB


def test_a_part_url_takes_exactly_its_parts_size(site, org, ds):
    # Each URL signs its part's Content-Length: a longer or shorter body
    # is refused by the store, and nothing is stored.
    issued = urls(site, org.editor, ds, size=7 * MiB)
    last = issued["parts"][1]  # declared: 2 MiB
    for wrong in (3 * MiB, 2 * MiB - 1, 0):
        assert put(last, os.urandom(wrong)).status_code == 403
    assert stored_parts(org, issued["resource_id"], issued["upload_id"]) \
        == []
    put(issued["parts"][0], os.urandom(5 * MiB))
    status, error = error_status(
        lambda: create(site, org.editor, ds, issued["resource_id"]))
    assert status == 409 and "missing parts [2]" in str(error)
    assert fresh_dataset(ds["id"])["resources"] == []


def test_parts_of_the_wrong_size_are_refused(site, org, ds):
    issued = urls(site, org.editor, ds, size=7 * MiB)
    put(issued["parts"][0], os.urandom(5 * MiB))
    # A part the URLs could not have sent (written with the plugin's own
    # credentials, as by an older release's unsized URL).
    object_store.get_client().upload_part(
        Bucket=object_store.bucket_name(org.id),
        Key=layout.object_key(issued["resource_id"]),
        UploadId=issued["upload_id"], PartNumber=2,
        Body=os.urandom(3 * MiB))
    status, error = error_status(
        lambda: create(site, org.editor, ds, issued["resource_id"]))
    assert status == 409 and "wrong size" in str(error)
    assert fresh_dataset(ds["id"])["resources"] == []


def test_creation_by_another_user_or_without_a_grant_is_refused(
        site, org, ds):
    issued = upload_all(site, org.editor, ds, os.urandom(1000))
    for who in (org.admin, org.editor):
        rid = issued["resource_id"] if who is org.admin \
            else "0b8e4b55-3c1c-4b48-9b8b-000000000001"
        status, error = error_status(
            lambda w=who, r=rid: create(site, w, ds, r))
        assert status == 409 and "no upload" in str(error)
    assert site.status("resource_create", org.member.token,
                       package_id=ds["id"], id=issued["resource_id"],
                       url_type="s3_upload", name="x") == 403
    assert fresh_dataset(ds["id"])["resources"] == []
    # the editor it was issued to still can
    assert create(site, org.editor, ds, issued["resource_id"])["size"] \
        == 1000


def expire(rid: str) -> None:
    grant = upload_grants.load(rid)
    upload_grants.save(dataclasses.replace(grant, expires_at=time.time() - 1),
                       time.time())


def test_a_complete_upload_whose_urls_expired_still_becomes_its_resource(
        site, org, ds):
    issued = upload_all(site, org.editor, ds, os.urandom(1000))
    expire(issued["resource_id"])
    assert create(site, org.editor, ds, issued["resource_id"])["size"] \
        == 1000


def test_an_expired_incomplete_upload_is_resumed_first(site, org, ds):
    issued = urls(site, org.editor, ds, size=6 * MiB)
    assert put(issued["parts"][0], os.urandom(5 * MiB)).status_code == 200
    expire(issued["resource_id"])
    status, error = error_status(
        lambda: create(site, org.editor, ds, issued["resource_id"]))
    assert status == 409 and "expired" in str(error)
    # resuming gives new URLs (of the missing part) and a new deadline
    again = urls(site, org.editor, ds, size=6 * MiB,
                 resource_id=issued["resource_id"])
    assert again["complete_parts"] == [1]
    (part,) = again["parts"]
    assert put(part, os.urandom(MiB)).status_code == 200
    assert create(site, org.editor, ds, issued["resource_id"])["size"] \
        == 6 * MiB


@pytest.mark.ckan_config("dcor_object_store.upload_max_open_per_user", 1)
def test_resuming_an_expired_upload_counts_against_the_cap(site, org, ds):
    from ckan.tests import helpers

    def issue(**extra):
        return helpers.call_action(
            "resource_upload_s3_urls", context={"user": org.editor.name},
            package_id=ds["id"], name="cells.rtdc", size=1000, **extra)
    expired = issue()
    expire(expired["resource_id"])
    issue()  # the one open upload the cap allows
    with pytest.raises(tk.ValidationError, match="1 direct uploads open"):
        issue(resource_id=expired["resource_id"])
    grant = upload_grants.load(expired["resource_id"])
    assert not upload_grants.is_open(grant, time.time())


def test_s3_upload_resources_need_a_grant_in_any_action(site, org, ds):
    for action, fields in (
            ("resource_create", {"package_id": ds["id"]}),
            ("package_patch", {"id": ds["id"], "resources": [
                {"name": "x", "url_type": "s3_upload", "url": "x"}]})):
        if action == "resource_create":
            fields = dict(fields, name="x", url_type="s3_upload")
        status, _ = error_status(
            lambda a=action, f=fields: site.action(a, org.editor.token, **f))
        assert status == 409
    assert fresh_dataset(ds["id"])["resources"] == []


@pytest.mark.parametrize("field, value", [
    ("sha256", "0" * 64),
    ("s3_moved_from", "http://127.0.0.1:7480/other-bucket/resource/x"),
    ("s3_url", "http://127.0.0.1:7480/other-bucket/resource/x"),
])
def test_owned_fields_cannot_ride_on_a_direct_upload(site, org, ds, field,
                                                     value):
    issued = upload_all(site, org.editor, ds, os.urandom(1000))
    rid = issued["resource_id"]
    status, error = error_status(
        lambda: create(site, org.editor, ds, rid, **{field: value}))
    assert status == 409 and field in error
    assert fresh_dataset(ds["id"])["resources"] == []
    # the honest request still works, and the plugin computes the SHA256
    create(site, org.editor, ds, rid)
    run_jobs()
    assert fresh_resource(rid)["sha256"] != "0" * 64


def test_a_file_cannot_ride_on_a_direct_upload(site, org, ds):
    issued = upload_all(site, org.editor, ds, os.urandom(1000))
    reply = site.call("resource_create", org.editor.token,
                      files={"upload": ("other.rtdc", b"other bytes")},
                      package_id=ds["id"], id=issued["resource_id"],
                      url_type="s3_upload", name="cells.rtdc")
    assert reply.status_code == 409
    assert fresh_dataset(ds["id"])["resources"] == []


def test_a_creation_ckan_refuses_can_be_retried(site, org, ds):
    data = os.urandom(6 * MiB)
    issued = upload_all(site, org.editor, ds, data)
    rid = issued["resource_id"]
    status, error = error_status(lambda: create(
        site, org.editor, ds, rid, last_modified="not a date"))
    assert status == 409 and "last_modified" in error
    assert fresh_dataset(ds["id"])["resources"] == []
    # the upload was completed, and is kept for the retry
    res = create(site, org.editor, ds, rid)
    assert res["size"] == len(data)
    body = object_store.get_client().get_object(
        Bucket=object_store.bucket_name(org.id),
        Key=layout.object_key(rid))["Body"].read()
    assert body == data
    # used up now
    status, _ = error_status(lambda: create(site, org.editor, ds, rid))
    assert status == 409


def test_concurrent_creations_make_one_resource(site, org, ds):
    from concurrent.futures import ThreadPoolExecutor
    data = os.urandom(6 * MiB)
    rid = upload_all(site, org.editor, ds, data)["resource_id"]

    def attempt(_):
        return site.call("resource_create", org.editor.token,
                         package_id=ds["id"], id=rid, url_type="s3_upload",
                         name="cells.rtdc").status_code
    with ThreadPoolExecutor(3) as pool:
        statuses = sorted(pool.map(attempt, range(3)))
    assert statuses[0] == 200 and all(s == 409 for s in statuses[1:])
    assert [r["id"] for r in fresh_dataset(ds["id"])["resources"]] == [rid]
    body = object_store.get_client().get_object(
        Bucket=object_store.bucket_name(org.id),
        Key=layout.object_key(rid))["Body"].read()
    assert body == data


def test_data_follow_a_dataset_moved_while_uploading(site, org, ds):
    data = os.urandom(1000)
    rid = upload_all(site, org.editor, ds, data)["resource_id"]
    # an organization where the uploader is an editor too
    from ckan.tests import factories
    other = factories.Organization(users=[
        {"name": org.editor.name, "capacity": "editor"}])
    site.action("package_patch", person(sysadmin=True).token,
                id=ds["id"], owner_org=other["id"])
    create(site, org.editor, ds, rid)
    run_jobs()  # the move
    res = fresh_resource(rid)
    assert res["s3_url"] == object_store.object_url(
        object_store.bucket_name(other["id"]), layout.object_key(rid))
    body = object_store.get_client().get_object(
        Bucket=object_store.bucket_name(other["id"]),
        Key=layout.object_key(rid))["Body"].read()
    assert body == data


@pytest.mark.ckan_config("dcor_object_store.upload_max_open_per_user", 2)
def test_a_user_has_a_limited_number_of_open_uploads(site, org, ds):
    from ckan.tests import helpers

    def issue(who, **extra):
        return helpers.call_action(
            "resource_upload_s3_urls", context={"user": who.name},
            package_id=ds["id"], name="cells.rtdc", size=1000, **extra)
    first, second = issue(org.editor), issue(org.editor)
    with pytest.raises(tk.ValidationError, match="2 direct uploads open"):
        issue(org.editor)
    assert len(open_uploads(org.bucket)) == 2  # nothing started for the third
    issue(org.admin)  # others are not held up
    issue(org.editor, resource_id=first["resource_id"])  # resuming is fine
    # ending one (abort, or creating its resource) makes room again
    helpers.call_action("resource_upload_s3_abort",
                        context={"user": org.editor.name},
                        resource_id=second["resource_id"])
    assert issue(org.editor)["resource_id"]
