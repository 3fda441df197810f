"""The config validators accept what they promise and name what they
refuse."""
from __future__ import annotations

import pytest
from ckan.plugins.toolkit import Invalid

from ckanext.dcor_depot import validators as v


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
