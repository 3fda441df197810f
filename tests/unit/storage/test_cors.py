"""The plugin's CORS rule is merged into a bucket's rules, never in place
of an operator's."""
from __future__ import annotations

import pytest

from ckanext.dcor_depot.storage import cors

SITE = "https://dcor.example.org"
OPERATOR = {"ID": "viewer", "AllowedOrigins": ["https://viewer.example"],
            "AllowedMethods": ["GET"]}
UNNAMED = {"AllowedOrigins": ["*"], "AllowedMethods": ["HEAD"]}


def test_the_rule_lets_the_site_put_parts_and_read_their_etag():
    rule = cors.site_rule(SITE)
    assert rule["AllowedOrigins"] == [SITE]
    assert "PUT" in rule["AllowedMethods"]
    assert rule["AllowedHeaders"] == ["*"]
    assert rule["ExposeHeaders"] == ["ETag"]


def test_added_to_the_operators_rules():
    merged = cors.merged_rules([OPERATOR, UNNAMED], SITE)
    assert merged == [OPERATOR, UNNAMED, cors.site_rule(SITE)]


def test_nothing_to_do_when_the_rule_is_there_in_any_order():
    stored = dict(cors.site_rule(SITE),
                  AllowedMethods=["HEAD", "GET", "PUT"])
    assert cors.merged_rules([OPERATOR, stored], SITE) is None


@pytest.mark.parametrize("stale", [
    cors.site_rule("https://old.example"),
    dict(cors.site_rule(SITE), AllowedMethods=["GET"]),
])
def test_a_changed_rule_is_replaced(stale):
    merged = cors.merged_rules([stale, OPERATOR], SITE)
    assert merged == [OPERATOR, cors.site_rule(SITE)]


def test_duplicates_of_the_rule_become_one():
    rule = cors.site_rule(SITE)
    assert cors.merged_rules([rule, OPERATOR, rule], SITE) \
        == [OPERATOR, rule]
