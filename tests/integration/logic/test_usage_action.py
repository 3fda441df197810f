"""``dcor_depot_usage`` over HTTP: sysadmins only, the figures of the
store and the disks."""
from __future__ import annotations

from tests.support.access import (
    dataset,
    person,
    stored_resource,
)


def test_only_sysadmins_see_the_usage(site, org):
    for token in (None, person().token, org.admin.token):
        resp = site.call("dcor_depot_usage", token, organization=org.name)
        assert resp.status_code == 403
        assert resp.json()["success"] is False
        assert "organizations" not in resp.text  # no figures


def test_sysadmin_gets_the_figures(site, org):
    ds = dataset(site, org, private=True)
    res = stored_resource(site, org.editor, ds["id"])
    admin = person(sysadmin=True)
    result = site.action("dcor_depot_usage", admin.token,
                         organization=org.name)
    (row,) = result["organizations"]
    assert row["organization"] == org.name
    assert row["objects"]["resource"] == 1
    assert row["object_bytes"]["resource"] == res["size"]
    assert row["block_bytes"] == res["size"]


def test_unknown_organization_is_a_validation_error(site):
    admin = person(sysadmin=True)
    resp = site.call("dcor_depot_usage", admin.token,
                     organization="no-such-organization")
    assert resp.status_code == 409
    assert "no organization no-such-organization" in resp.text
