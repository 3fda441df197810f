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
