"""People, organizations and data for the access-control tests.

Users, organizations and tokens are made in-process (fast, not what is
tested); everything whose authorization matters goes over HTTP to the
live site with the token of the person acting.
"""
from __future__ import annotations

import urllib.parse
from dataclasses import dataclass
from typing import Any

import ckan.model as model
import requests
from ckan.tests import factories, helpers

from ckanext.dcor_depot.storage import layout, object_store
from tests.support.live_site import LiveSite
from tests.support.stack import anonymous_get, run_jobs


@dataclass
class Person:
    name: str
    id: str
    token: str


@dataclass
class Org:
    id: str
    name: str
    admin: Person
    editor: Person
    member: Person

    @property
    def bucket(self) -> str:
        return object_store.bucket_name(self.id)


def person(sysadmin: bool = False) -> Person:
    user = factories.Sysadmin() if sysadmin else factories.User()
    token = helpers.call_action("api_token_create", user=user["name"],
                                name="tests")["token"]
    return Person(user["name"], user["id"], token)


def organization() -> Org:
    admin, editor, member = person(), person(), person()
    org = factories.Organization(users=[
        {"name": admin.name, "capacity": "admin"},
        {"name": editor.name, "capacity": "editor"},
        {"name": member.name, "capacity": "member"}])
    return Org(org["id"], org["name"], admin, editor, member)


def dataset(site: LiveSite, org: Org, private: bool = True,
            **fields: Any) -> dict[str, Any]:
    """A dataset created over HTTP by the organization's editor."""
    return site.action("package_create", org.editor.token,
                       name=f"ds-{factories.fake.uuid4()}",
                       owner_org=org.id, private=private, **fields)


def upload(site: LiveSite, who: Person, dataset_id: str,
           data: bytes = b"measurement bytes", name: str = "data.rtdc",
           **fields: Any) -> dict[str, Any]:
    return site.action("resource_create", who.token,
                       files={"upload": (name, data)},
                       package_id=dataset_id, name=name, **fields)


def stored_resource(site: LiveSite, who: Person, dataset_id: str,
                    data: bytes = b"measurement bytes") -> dict[str, Any]:
    """Upload over HTTP and run the jobs: the data are in the store."""
    res = upload(site, who, dataset_id, data)
    run_jobs()
    return fresh_resource(res["id"])


def fresh_resource(rid: str) -> dict[str, Any]:
    """What the database says of a resource now.

    No cached objects: another process (a worker, the live site) may
    have changed it, and package_show compares the dataset's
    metadata_modified with the search index's copy, which a stale
    object in this session would serve.
    """
    model.Session.remove()
    return helpers.call_action("resource_show", id=rid)


def fresh_dataset(ref: str) -> dict[str, Any]:
    model.Session.remove()
    return helpers.call_action("package_show", id=ref)


def object_url(org_id: str, rid: str, artifact: str = "resource") -> str:
    bucket = object_store.bucket_name(org_id)
    return object_store.object_url(bucket, layout.object_key(rid, artifact))


def download_url(site: LiveSite, res: dict[str, Any],
                 name: str = "cells.rtdc") -> str:
    """CKAN's download URL of a resource (of its dataset ``package_id``)
    on ``site``, with the file name ``name``."""
    return (f"{site.url}/dataset/{res['package_id']}/resource/{res['id']}"
            f"/download/{urllib.parse.quote(name)}")


def anon_status(url: str) -> int:
    return anonymous_get(url).status_code


def put_artifact(org_id: str, rid: str, artifact: str,
                 data: bytes = b"artifact") -> str:
    """Store an ancillary artifact as other DCOR plugins would."""
    bucket = object_store.bucket_name(org_id)
    object_store.ensure_bucket(bucket)
    object_store.get_client().put_object(
        Bucket=bucket, Key=layout.object_key(rid, artifact), Body=data)
    return object_url(org_id, rid, artifact)


def direct_upload(site: LiveSite, who: Person, dataset_id: str,
                  data: bytes, name: str = "cells.rtdc",
                  resource_name: str | None = None,
                  **fields: Any) -> dict[str, Any]:
    """A resource made by the direct-upload route: URLs, parts PUT to
    the store, resource_create with ``url_type: s3_upload``."""
    issued = site.action("resource_upload_s3_urls", who.token,
                         package_id=dataset_id, name=name, size=len(data))
    for part in issued["parts"]:
        start = (part["part_number"] - 1) * issued["part_size"]
        requests.put(part["url"], data=data[start:start + part["size"]],
                     timeout=60).raise_for_status()
    return site.action("resource_create", who.token, package_id=dataset_id,
                       id=issued["resource_id"], url_type="s3_upload",
                       name=resource_name or name, **fields)
