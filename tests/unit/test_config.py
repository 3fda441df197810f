"""The plugin's config without CKAN running: the validators of
config_declaration.yaml accept what they promise and name what they
refuse, hostile values (what an attacker or a typo could slip into
ckan.ini) included, without repeating a secret; config.py's parsing;
and the files the config points to by default ship in the wheel.

CKAN refusing to start with such values, as an operator sees it, is in
``tests/integration/test_config.py``.
"""
from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from ckan.plugins.toolkit import Invalid

from ckanext.dcor_depot import config
from ckanext.dcor_depot import validators as v

ROOT = Path(__file__).resolve().parents[2]
#: A secret in hostile values: no message may repeat it.
SECRET = "s3cr3t-Key"


# --------------------------------------------- what the validators take
@pytest.mark.parametrize(("value", "expected"), [
    ("true", True), ("Yes", True), (" on ", True), ("1", True), (True, True),
    ("false", False), ("NO", False), ("off", False), ("0", False),
    (False, False),
])
def test_strict_bool(value, expected):
    assert v.dcor_depot_strict_bool(value) is expected


@pytest.mark.parametrize("value", ["maybe", "", "2", "truee"])
def test_strict_bool_refuses(value):
    with pytest.raises(Invalid, match="expected true or false"):
        v.dcor_depot_strict_bool(value)


def test_absolute_path_is_normalised():
    assert v.dcor_depot_absolute_path(" /data//depots/./x/ ") \
        == "/data/depots/x"
    with pytest.raises(Invalid, match="absolute path"):
        v.dcor_depot_absolute_path("data/depots")


@pytest.mark.parametrize("value", ["a/b", ".", "..", "x\0y"])
def test_folder_name_refuses(value):
    with pytest.raises(Invalid, match="plain folder name"):
        v.dcor_depot_folder_name(value)


def test_folder_name():
    assert v.dcor_depot_folder_name(" users-host ") == "users-host"


def test_http_url():
    assert v.dcor_depot_http_url("https://api.figshare.com/v2/") \
        == "https://api.figshare.com/v2"
    for bad in ("ftp://host/x", "https://", "file:///etc/passwd", "host"):
        with pytest.raises(Invalid, match="http"):
            v.dcor_depot_http_url(bad)


def test_bucket_template():
    assert v.dcor_depot_bucket_template("circle-{organization_id}") \
        == "circle-{organization_id}"
    for bad in ("circle", "{organization_id}-{user}", "{org", "{0}"):
        with pytest.raises(Invalid):
            v.dcor_depot_bucket_template(bad)


def test_positive_int():
    assert v.dcor_depot_positive_int(" 10800 ") == 10800
    for bad, message in (("0", "greater than 0"), ("-1", "greater than 0"),
                         ("1.5", "whole number"), ("lots", "whole number")):
        with pytest.raises(Invalid, match=message):
            v.dcor_depot_positive_int(bad)


def test_part_size_within_what_s3_accepts():
    assert v.dcor_depot_part_size(str(5 * 2**20)) == 5 * 2**20
    assert v.dcor_depot_part_size(5 * 2**30) == 5 * 2**30
    for bad in (5 * 2**20 - 1, 5 * 2**30 + 1):
        with pytest.raises(Invalid, match="part size from"):
            v.dcor_depot_part_size(bad)


def test_url_lifetime_within_what_sigv4_signs():
    assert v.dcor_depot_url_lifetime("604800") == 604800
    with pytest.raises(Invalid, match="7 days"):
        v.dcor_depot_url_lifetime("604801")


def test_upload_max_size_within_what_s3_stores():
    assert v.dcor_depot_upload_max_size(5 * 2**40) == 5 * 2**40
    with pytest.raises(Invalid, match="5 TiB"):
        v.dcor_depot_upload_max_size(5 * 2**40 + 1)


# ------------------------------------------- hostile values in ckan.ini
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


# ------------------------------------------------------------ parsing
@pytest.mark.parametrize("url, origin", [
    ("https://dcor.mpl.mpg.de", "https://dcor.mpl.mpg.de"),
    ("https://DCOR.example.org/", "https://dcor.example.org"),
    ("https://dcor.example.org:443/ckan", "https://dcor.example.org"),
    ("http://127.0.0.1:5000", "http://127.0.0.1:5000"),
    ("http://example.org:80", "http://example.org"),
    ("http://[::1]:8080/", "http://[::1]:8080"),
    ("", None), ("dcor.example.org", None), ("ftp://x.example", None),
    ("http://x.example:port", None),
])
def test_the_origin_of_the_site_url(url, origin):
    assert config.origin_of(url) == origin


# -------------------------------------------------- what the wheel ships
def test_wheel_ships_doi_list_and_declaration(tmp_path):
    """A normal (non-editable) install finds figshare_dois.txt."""
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps",
                    "--no-build-isolation", "-w", str(tmp_path), str(ROOT)],
                   check=True, capture_output=True, timeout=300)
    wheel, = tmp_path.glob("ckanext_dcor_depot-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "ckanext/dcor_depot/figshare_dois.txt" in names
    assert "ckanext/dcor_depot/config_declaration.yaml" in names
    assert "ckanext/__init__.py" not in names
    dois = zipfile.ZipFile(wheel).read(
        "ckanext/dcor_depot/figshare_dois.txt").decode().split()
    assert dois == [
        "10.6084/m9.figshare.7771184.v2",
        "10.6084/m9.figshare.11302595.v1",
        "10.6084/m9.figshare.11662773.v2",
        "10.6084/m9.figshare.12721436.v1",
    ]


# ------------------------------------------ options that depend on others
S3 = ("dcor_object_store.access_key_id",
      "dcor_object_store.secret_access_key",
      "dcor_object_store.endpoint_url")


@pytest.mark.parametrize(("values", "message"), [
    (("key", "", "http://s3"), "dcor_object_store.secret_access_key is empty"),
    (("", "secret", "http://s3"), "dcor_object_store.access_key_id is empty"),
    (("key", "secret", ""), "dcor_object_store.endpoint_url is empty"),
])
def test_inconsistent_s3_settings_are_refused(monkeypatch, values, message):
    from ckan.exceptions import CkanConfigurationException
    settings = dict(zip(S3, values, strict=True))
    monkeypatch.setattr(config.tk, "config", settings)
    with pytest.raises(CkanConfigurationException, match=message):
        config.check_consistency()


@pytest.mark.parametrize("values", [("", "", ""),
                                    ("key", "secret", "http://s3")])
def test_s3_off_or_complete_is_consistent(monkeypatch, values):
    settings = dict(zip(S3, values, strict=True))
    monkeypatch.setattr(config.tk, "config", settings)
    config.check_consistency()
