"""Config values an attacker (or a typo) could slip into ckan.ini: every
one stops CKAN at start-up with a message naming the problem.

Already covered elsewhere: other URL schemes (``test_validators.
test_http_url``), templates without or with other fields
(``test_validators.test_bucket_template``), relative paths and folder
names with ``/`` (``test_validators``); the start-up refusal itself
(``integration/test_config.test_malformed_values_stop_ckan_with_clear_
message``, whose cases include new ones below).
"""
from __future__ import annotations

import pytest
from ckan.plugins.toolkit import Invalid

from ckanext.dcor_depot import validators as v

SECRET = "s3cr3t-Key"


@pytest.mark.parametrize("template, message", [
    ("circle-{organization_id!r}", "without a conversion or format"),
    ("circle-{organization_id:>60}", "without a conversion or format"),
    ("circle-{organization_id:x<40}", "without a conversion or format"),
    ("{organization_id}{organization_id}", "once"),
    ("circle-{organization_id.__class__}", "no other field"),
    ("circle-{organization_id[0]}", "no other field"),
    ("../{organization_id}", "other characters"),
    ("circle/{organization_id}", "other characters"),
    ("circle-{organization_id}/../x", "other characters"),
    ("Circle-{organization_id}", "other characters"),
    ("circle_{organization_id}", "other characters"),
    ("circle {organization_id}", "other characters"),
    ("circle-{organization_id}?x=1", "other characters"),
    ("-{organization_id}", "start and end with a letter or digit"),
    ("{organization_id}.", "start and end with a letter or digit"),
    ("a..{organization_id}", "no '..'"),
    ("x" * 28 + "{organization_id}", "longer than 63"),
])
def test_bucket_templates_that_make_no_bucket_name(template, message):
    with pytest.raises(Invalid, match=message.replace("?", r"\?")):
        v.dcor_depot_bucket_template(template)


@pytest.mark.parametrize("template", [
    "circle-{organization_id}", "{organization_id}",
    "dcor.{organization_id}.data", "x" * 27 + "{organization_id}"])
def test_bucket_templates_s3_accepts(template):
    assert v.dcor_depot_bucket_template(template) == template


@pytest.mark.parametrize("url", [
    f"https://admin:{SECRET}@objects.example.org",
    f"https://{SECRET}@objects.example.org",
    f"http://user:{SECRET}@127.0.0.1:7480/",
    # Also when the URL is wrong in other ways (security review).
    f"ftp://user:{SECRET}@objects.example.org",
    f"https://user:{SECRET}@",
    f"https://AKIA:ab/{SECRET}@objects.example.org",
    f"https://AKIA:{SECRET}?x#y@objects.example.org",
    f"user:{SECRET}@objects.example.org",
])
def test_endpoints_with_credentials_are_refused_without_showing_them(url):
    with pytest.raises(Invalid, match="carries credentials") as refused:
        v.dcor_depot_http_url(url)
    # The message goes to logs and terminals: the secret stays out.
    assert SECRET not in str(refused.value)


@pytest.mark.parametrize("url, message", [
    ("https://objects.example.org/?X-Amz-Credential=k", "query"),
    ("https://objects.example.org/#frag", "fragment"),
    ("https://objects.example.org:abc", "port"),
    ("https://objects.example.org/a b", "blanks"),
    ("https://objects.example.org/\r\nX-Injected: 1", "blanks"),
    ("https://", "http:// or https://"),
    ("javascript://objects.example.org", "http:// or https://"),
    ("//objects.example.org", "http:// or https://"),
])
def test_endpoints_that_would_break_object_urls_are_refused(url, message):
    with pytest.raises(Invalid, match=message):
        v.dcor_depot_http_url(url)


@pytest.mark.parametrize("path", [
    "/data/depots/../../etc", "/data/..", "/../etc/shadow",
    "/data/link/../depots"])
def test_paths_with_dot_dot_are_refused(path):
    with pytest.raises(Invalid, match=r"contains '\.\.'"):
        v.dcor_depot_absolute_path(path)


@pytest.mark.parametrize("path", ["/data/dep\x00ots", "/data/dep\nots"])
def test_paths_with_control_characters_are_refused(path):
    with pytest.raises(Invalid, match="control characters"):
        v.dcor_depot_absolute_path(path)


def test_dots_inside_names_are_fine():
    assert v.dcor_depot_absolute_path("/data/depots..old/x.y") \
        == "/data/depots..old/x.y"


@pytest.mark.parametrize("name", ["users\nhost", "users\x7fhost", "a\tb"])
def test_folder_names_with_control_characters_are_refused(name):
    with pytest.raises(Invalid, match="plain folder name"):
        v.dcor_depot_folder_name(name)
