"""The operator page (``/ckan-admin/dcor-depot``) and the resource page's
"Data storage" box, over HTTP against the live site, as real users with
their API tokens (or none) see them.

The audit's report is planted as ``dcor-depot-audit`` keeps it
(``findings.keep``); the resource counts come from real datasets.
"""
from __future__ import annotations

import os

import pytest

from ckanext.dcor_depot import config
from ckanext.dcor_depot.operations.audit import findings
from ckanext.dcor_depot.operations.audit.findings import Finding, Kind, Report
from ckanext.dcor_depot.operations.audit.usage import OrgUsage
from ckanext.dcor_depot.storage import layout, object_store
from tests.support.access import (
    dataset,
    direct_upload,
    fresh_resource,
    organization,
    person,
    stored_resource,
    upload,
)
from tests.support.live_site import ApiError
from tests.support.pages import (
    ADMIN_PAGE,
    finding_kinds,
    get,
    kept_reports,
    organization_row,
    storage_box,
    text_of,
)
from tests.support.stack import run_jobs

MiB = 2**20
VERIFIED_AT = "2025-03-01T10:00:00+00:00"


@pytest.fixture
def reports(site):
    with kept_reports():
        yield


@pytest.fixture
def sysadmin(site):
    return person(sysadmin=True)


def verify(site, sysadmin, rid: str) -> None:
    """Record a check of the stored bytes, as the plugin does (a sysadmin
    may set plugin-owned fields)."""
    site.action("resource_patch", sysadmin.token, id=rid,
                s3_verified_at=VERIFIED_AT)


def test_the_page_is_for_sysadmins_only(site, reports, sysadmin):
    org = organization()
    stranger = person()
    url = site.url + ADMIN_PAGE
    for who in (None, stranger, org.member, org.editor, org.admin):
        reply = get(url, who)
        assert reply.status_code == 403, who
        assert "Data storage" not in reply.text
    assert get(url, sysadmin).status_code == 200
    # The tab in CKAN's admin area leads there.
    admin_area = get(f"{site.url}/ckan-admin", sysadmin)
    assert f'href="{ADMIN_PAGE}"' in admin_area.text


def test_without_a_report_the_page_names_the_command(site, reports,
                                                     sysadmin):
    findings.last_report_path().unlink(missing_ok=True)
    reply = get(site.url + ADMIN_PAGE, sysadmin)
    assert reply.status_code == 200
    shown = text_of(reply.text)
    assert "No audit has run yet" in shown
    assert "ckan dcor-depot-audit" in shown
    assert "Findings of the last audit" not in shown


def planted_report(org, lost_dataset: dict, lost_rid: str) -> Report:
    usage = OrgUsage(org.name, block_bytes=5 * 2**30, multipart_uploads=2,
                     multipart_bytes=12 * MiB, orphan_objects=1,
                     orphan_bytes=MiB)
    usage.add_object("resource", 3 * MiB)
    usage.add_object("condensed", MiB // 2)
    return Report(
        started="2025-03-01T10:00:00+00:00",
        finished="2025-03-01T10:05:00+00:00",
        options={"deep": False},
        usage={org.name: usage.as_json()},
        findings=[
            Finding(Kind.STALE_MULTIPART_UPLOAD, org.name,
                    key=f"{org.bucket}:resource/abc/def/1", detail="7 days"),
            Finding(Kind.STALE_MULTIPART_UPLOAD, org.name,
                    key=f"{org.bucket}:resource/abc/def/2", detail="9 days"),
            Finding(Kind.ORPHAN_OBJECT, org.name,
                    key=f"{org.bucket}:resource/fff/fff/fff",
                    detail="<script>alert('orphan')</script>"),
            Finding(Kind.DATA_LOST, org.name, lost_dataset["name"],
                    lost_rid, detail="no local file, backup or object",
                    dataset_id=lost_dataset["id"]),
        ])


def test_the_page_shows_the_last_audit_and_the_counts_now(
        site, reports, sysadmin):
    org = organization()
    public = dataset(site, org, private=False)
    # Both stored resources were verified by their upload.
    stored_resource(site, org.editor, public["id"])  # in store, public
    private = dataset(site, org, private=True)
    verified = stored_resource(site, org.editor, private["id"])
    verify(site, sysadmin, verified["id"])
    depot_only = upload(site, org.editor, private["id"])  # no job run yet
    site.action("resource_create", org.editor.token,  # a link: no file
                package_id=private["id"], url="https://example.org/a")
    findings.keep(planted_report(org, private, depot_only["id"]))

    reply = get(site.url + ADMIN_PAGE, sysadmin)
    assert reply.status_code == 200
    shown = text_of(reply.text)
    assert "Last audit finished 2025-03-01 10:05 UTC" in shown
    assert "Complete yes" in shown
    assert organization_row(reply.text, org.name) == {
        "dcor-files": "3", "dcor-depot-only": "1", "dcor-in-store": "2",
        "dcor-verified": "2", "dcor-public": "1",
        "dcor-objects": "2 / 3.5 MiB resource: 1 / 3.0 MiB; "
                        "condensed: 1 / 512.0 KiB",
        "dcor-block": "5.0 GiB", "dcor-stale": "2",
        "dcor-multipart": "2 / 12.0 MiB", "dcor-orphans": "1 / 1.0 MiB"}
    # Worst first, the lost data linked to their dataset and resource.
    assert finding_kinds(reply.text) == [
        "data-lost", "orphan-object", "stale-multipart-upload",
        "stale-multipart-upload"]
    assert f'href="/dataset/{private["name"]}"' in reply.text
    assert (f'href="/dataset/{private["name"]}/resource/'
            f'{depot_only["id"]}"') in reply.text
    # Data from the storage are text, never markup.
    assert "<script>alert" not in reply.text
    assert "&lt;script&gt;alert(&#39;orphan&#39;)" in reply.text


def test_an_incomplete_audit_says_so(site, reports, sysadmin):
    findings.keep(Report(started="2025-03-02T08:00:00Z", finished="",
                         errors=["object store: cannot list bucket x"]))
    reply = get(site.url + ADMIN_PAGE, sysadmin)
    shown = text_of(reply.text)
    assert "not finished (started 2025-03-02 08:00 UTC)" in shown
    assert "Complete no" in shown
    assert "object store: cannot list bucket x" in shown
    assert "The last audit found nothing to report" in shown


def locations_of(rid: str, org) -> list[str]:
    """Every path and object location of a resource's data."""
    upload_path = layout.ckan_upload_path(rid)
    found = [str(upload_path), os.path.realpath(upload_path),
             str(config.storage_path()), str(config.depots_path()),
             f"{org.bucket}:{layout.object_key(rid)}"]
    backup = layout.backup_path(rid)
    return found + ([str(backup)] if backup else [])


def test_members_see_the_state_of_the_data_but_no_paths(
        site, sysadmin):
    org = organization()
    ds = dataset(site, org, private=True)
    res = stored_resource(site, org.editor, ds["id"])
    verify(site, sysadmin, res["id"])
    depot_file = os.path.realpath(layout.ckan_upload_path(res["id"]))
    assert depot_file.startswith(str(config.depots_path()))
    page = f"{site.url}/dataset/{ds['name']}/resource/{res['id']}"

    reply = get(page, org.member)
    assert reply.status_code == 200
    assert storage_box(reply.text) == {
        "dcor-in-store": "yes", "dcor-verified": "yes, on 2025-03-01 "
        "10:00 UTC", "dcor-backed-up": "yes"}
    for location in locations_of(res["id"], org):
        assert location not in reply.text

    reply = get(page, sysadmin)
    assert storage_box(reply.text) == {
        "dcor-in-store": "yes",
        "dcor-verified": "yes, on 2025-03-01 10:00 UTC",
        "dcor-backed-up": "yes",
        "dcor-object": f"{org.bucket}:{layout.object_key(res['id'])}",
        "dcor-upload-path": str(layout.ckan_upload_path(res["id"])),
        "dcor-link-target": depot_file}


def test_a_direct_upload_shows_its_backup_to_sysadmins(site, sysadmin):
    org = organization()
    ds = dataset(site, org, private=False)
    res = direct_upload(site, org.editor, ds["id"], b"direct bytes" * 100)
    page = f"{site.url}/dataset/{ds['name']}/resource/{res['id']}"
    # Before the backup job: only in the store (anonymous visitors of a
    # public dataset see the state too).
    assert storage_box(get(page).text) == {
        "dcor-in-store": "yes", "dcor-verified": "no",
        "dcor-backed-up": "no"}
    run_jobs()  # SHA256, then the backup
    backup = layout.backup_path(res["id"])
    assert backup is not None and backup.is_file()
    reply = get(page)
    assert storage_box(reply.text)["dcor-backed-up"] == "yes"
    assert str(backup) not in reply.text
    box = storage_box(get(page, sysadmin).text)
    assert box["dcor-backup-path"] == str(backup)
    assert "dcor-upload-path" not in box


def test_the_box_is_refused_with_the_page(site):
    org = organization()
    ds = dataset(site, org, private=True)
    res = stored_resource(site, org.editor, ds["id"])
    page = f"{site.url}/dataset/{ds['name']}/resource/{res['id']}"
    for who in (None, person()):  # CKAN hides private datasets: 404
        reply = get(page, who)
        assert reply.status_code == 404
        assert storage_box(reply.text) == {}
        for location in locations_of(res["id"], org):
            assert location not in reply.text


def test_links_have_no_box(site):
    org = organization()
    ds = dataset(site, org, private=False)
    link = site.action("resource_create", org.editor.token,
                       package_id=ds["id"], url="https://example.org/a")
    reply = get(f"{site.url}/dataset/{ds['name']}/resource/{link['id']}")
    assert reply.status_code == 200
    assert storage_box(reply.text) == {}


def test_verified_at_is_the_plugins_field(site):
    org = organization()
    ds = dataset(site, org, private=True)
    res = stored_resource(site, org.editor, ds["id"])
    with pytest.raises(ApiError) as refused:
        site.action("resource_patch", org.editor.token, id=res["id"],
                    s3_verified_at=VERIFIED_AT)
    assert refused.value.status == 409
    assert "s3_verified_at" in refused.value.error
    # the verified upload's own record stays
    assert res["s3_verified_at"] != VERIFIED_AT
    assert fresh_resource(res["id"])["s3_verified_at"] == \
        res["s3_verified_at"]
    assert object_store.object_exists(org.bucket,
                                      layout.object_key(res["id"]))


@pytest.fixture
def kept_rotation(site):
    """The rolling audit's rotation may be replaced inside; the one from
    before is put back afterwards."""
    import ckan.model as model
    import sqlalchemy as sa

    from ckanext.dcor_depot.records import audit_rotation
    earlier = audit_rotation.load()
    yield audit_rotation
    if earlier is not None:
        audit_rotation.update(lambda _: earlier)
    else:
        with model.meta.engine.begin() as connection:
            connection.execute(sa.text(
                "DELETE FROM system_info WHERE key = :key"),
                {"key": audit_rotation.KEY})


def test_the_page_shows_the_rolling_share_and_the_rotation(
        site, reports, kept_rotation, sysadmin):
    kept_rotation.update(lambda _: {
        "version": 1, "days": 3, "next_share": 2,
        "last_started": "2025-03-02T03:00:00+00:00",
        "checked": {"0": "2025-03-01T03:00:00+00:00",
                    "1": "2025-03-02T03:00:00+00:00"}})
    findings.keep(Report(
        started="2025-03-02T03:00:00+00:00",
        finished="2025-03-02T03:01:00+00:00",
        rolling={"days": 3, "share": 1, "since": None, "restarted": "",
                 "resources_checked": 40, "changed": 4,
                 "objects_tag_checked": 52, "advanced": True,
                 "next_share": 2, "shares": {}}))
    reply = get(site.url + ADMIN_PAGE, sysadmin)
    assert reply.status_code == 200
    shown = text_of(reply.text)
    assert ("The last audit was a rolling audit: share 1 of 3 (shares 0 "
            "to 2); it read the tags of 52 objects of 40 resources, 4 of "
            "which changed since the previous rolling run.") in shown
    assert "Share Last checked (run started) 0 2025-03-01 03:00 UTC " \
        "1 2025-03-02 03:00 UTC 2 next never" in shown
