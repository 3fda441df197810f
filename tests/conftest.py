"""Shared fixtures: the real object store of the devstack and helpers."""
from __future__ import annotations

import uuid

import pytest
import requests

from ckanext.dcor_depot import object_store


@pytest.fixture
def s3_client(with_plugins):
    """The plugin's boto3 client, built from the test config."""
    return object_store.get_client()


@pytest.fixture
def fresh_bucket(s3_client):
    """A new bucket with the plugin's policy, for one test."""
    bucket = object_store.bucket_name(str(uuid.uuid4()))
    object_store.ensure_bucket(bucket)
    return bucket


def anonymous_get(url: str) -> requests.Response:
    """GET without credentials, as a visitor's browser would."""
    return requests.get(url, timeout=30)


# ------------------------------------------------------------ CKAN helpers
QUEUES = ["default", "dcor-short", "dcor-normal"]


def run_jobs() -> None:
    """Run every queued job in this process until the queues are empty."""
    from ckan.lib import jobs
    jobs.Worker(QUEUES).work(burst=True)


@pytest.fixture
def pipeline(clean_db, clean_queues, with_plugins, with_test_worker,
             with_request_context):
    """A clean database and queues, the plugin loaded, jobs in-process."""
    object_store._known_buckets.clear()
    yield


@pytest.fixture
def owner(pipeline):
    """A user who administers a fresh organization."""
    from ckan.tests import factories
    user = factories.User()
    org = factories.Organization(
        users=[{"name": user["name"], "capacity": "admin"}])
    return {"user": user, "org": org}


@pytest.fixture
def make_dataset(owner):
    from ckan.tests import factories

    def make(private: bool = True, **kwargs):
        return factories.Dataset(user=owner["user"],
                                 owner_org=owner["org"]["id"],
                                 private=private, **kwargs)
    return make


@pytest.fixture
def upload(owner, create_with_upload):
    """Upload bytes as a new resource through CKAN's resource_create."""
    def do_upload(dataset, data: bytes, name: str = "data.rtdc", **kwargs):
        return create_with_upload(
            data, name, package_id=dataset["id"], name=name,
            url="upload", context={"user": owner["user"]["name"]},
            **kwargs)
    return do_upload


@pytest.fixture
def rtdc_bytes(tmp_path):
    from ckanext.dcor_depot.sample_data import make_rtdc_file
    return make_rtdc_file(tmp_path / "sample.rtdc").read_bytes()
