"""Hostile config values stop CKAN at start-up, as an operator sees it.

The validators' cases are in ``tests/unit/abuse/test_config_values.py``;
here one of each kind goes through a real ``ckan`` start.
"""
from __future__ import annotations

import pytest

from tests.integration.test_config import (
    run_ckan,
    write_ini,  # noqa: F401 - fixture
)

SECRET = "s3cr3t-Key-0123"


@pytest.mark.parametrize("key, value, message", [
    ("dcor_object_store.endpoint_url",
     f"http://admin:{SECRET}@127.0.0.1:7480", "carries credentials"),
    ("ckanext.dcor_depot.figshare_api_url",
     f"https://u:{SECRET}@api.figshare.com/v2", "carries credentials"),
    ("dcor_object_store.endpoint_url", "http://127.0.0.1:7480/?a=b",
     "without query or fragment"),
    ("dcor_object_store.bucket_name", "circle-{organization_id!r}",
     "without a conversion or format"),
    ("dcor_object_store.bucket_name", "../x/{organization_id}",
     "other characters"),
    ("ckanext.dcor_depot.depots_path", "/data/depots/../../etc",
     "contains '..'"),
    ("dcor_object_store.local_backup_location", "/srv/backup/../..",
     "contains '..'"),
])
def test_hostile_values_stop_ckan_and_hide_secrets(
        write_ini, key, value, message):
    result = run_ckan(write_ini(**{key: value}), "jobs", "list")
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert f"{key}: " in output and message in output
    assert SECRET not in output
    assert "Traceback" not in output
