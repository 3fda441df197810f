"""Bucket names, object URLs and the organizations they name (no store)."""
from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from ckanext.dcor_depot.storage import object_store
from tests.support.store import ENDPOINT


def test_bucket_name_follows_the_template(s3_settings):
    assert object_store.bucket_name("org1") == "dcor-org1-objects"


def test_object_url_is_path_style(s3_settings):
    assert (object_store.object_url("dcor-org1-objects", "resource/a/b")
            == f"{ENDPOINT}/dcor-org1-objects/resource/a/b")


def test_object_url_is_parsed_back(s3_settings):
    url = object_store.object_url("dcor-org1-objects", "resource/a/b/c")
    assert object_store.parse_object_url(url) == ("dcor-org1-objects",
                                                  "resource/a/b/c")


@pytest.mark.parametrize("url", [
    "https://other.example.org/dcor-org1-objects/resource/a",
    f"{ENDPOINT}/dcor-org1-objects",
    f"{ENDPOINT}/dcor-org1-objects/",
    f"{ENDPOINT}//resource/a",
    f"{ENDPOINT}dcor-org1-objects/resource/a",
    "",
    None,
    42,
])
def test_other_urls_are_not_parsed(s3_settings, url):
    assert object_store.parse_object_url(url) is None


def test_bucket_regex_matches_only_the_template():
    pattern = object_store.bucket_regex("dcor-{organization_id}-objects")
    assert pattern.match("dcor-abc-objects").group("org") == "abc"
    assert not pattern.match("dcor-abc-objects-2")
    assert not pattern.match("other-abc-objects")
    assert not pattern.match("dcor--objects")


def test_bucket_template_without_placeholder_is_refused():
    with pytest.raises(ValueError, match="organization_id"):
        object_store.bucket_regex("dcor-objects")


def test_template_characters_are_taken_literally():
    pattern = object_store.bucket_regex("dcor.{organization_id}")
    assert pattern.match("dcor.abc")
    assert not pattern.match("dcorxabc")


def test_bucket_organization(s3_settings):
    assert object_store.bucket_organization("dcor-org1-objects") == "org1"
    assert object_store.bucket_organization("someone-elses") is None


def test_url_organization(s3_settings):
    url = object_store.object_url("dcor-org1-objects", "resource/a")
    assert object_store.url_organization(url) == "org1"
    assert object_store.url_organization(None) is None
    assert object_store.url_organization("") is None
    assert object_store.url_organization(
        object_store.object_url("foreign", "resource/a")) is None


def test_url_organizations(s3_settings):
    urls = [object_store.object_url("dcor-org1-objects", "k1"),
            object_store.object_url("dcor-org2-objects", "k2"),
            object_store.object_url("dcor-org1-objects", "k3"),
            object_store.object_url("foreign", "k4"),
            None]
    assert object_store.url_organizations(urls) == {"org1", "org2"}


def test_bucket_policy_opens_only_public_tagged_objects():
    policy = object_store.bucket_policy("dcor-org1-objects")
    [statement] = policy["Statement"]
    assert statement["Action"] == ["s3:GetObject"]
    assert statement["Resource"] == ["arn:aws:s3:::dcor-org1-objects/*"]
    assert statement["Condition"] == {"StringEquals": {
        f"s3:ExistingObjectTag/{object_store.PUBLIC_TAG}": "true"}}


def test_importing_the_storage_modules_reads_no_config():
    # A fresh interpreter whose CKAN config fails on every read once CKAN
    # itself is imported (CKAN's toolkit reads it while importing).
    code = textwrap.dedent("""
        import ckan.plugins.toolkit
        from ckan.common import CKANConfig

        def refuse(self, key, *args):
            raise AssertionError(f"config read at import: {key}")

        CKANConfig.__getitem__ = refuse
        CKANConfig.get = refuse
        from ckanext.dcor_depot.storage import (
            download, multipart, object_store, transfer, upload)
    """)
    subprocess.run([sys.executable, "-c", code], check=True)


def test_bucket_regex_follows_the_template():
    pattern = object_store.bucket_regex("circle-{organization_id}")
    assert pattern.match("circle-0b8e4b55-3c1c-4b48-9b8b-5d6b0e7f0a11")
    assert not pattern.match("circle-")
    assert not pattern.match("other-circle-abc")
    assert not pattern.match("xcircle-abc")
    suffixed = object_store.bucket_regex("dcor.{organization_id}.data")
    assert suffixed.match("dcor.abc-1.data")
    assert not suffixed.match("dcorXabc-1.data")
