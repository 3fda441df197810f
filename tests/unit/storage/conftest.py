"""Settings of the object store for tests that need no store."""
from __future__ import annotations

import pytest

from ckanext.dcor_depot import config
from tests.support.store import ENDPOINT


@pytest.fixture
def s3_settings(monkeypatch) -> config.S3Settings:
    """The plugin's S3 settings, without a CKAN config behind them."""
    settings = config.S3Settings(
        endpoint_url=ENDPOINT, access_key_id="key-id",
        secret_access_key="secret", ssl_verify=True,
        bucket_template="dcor-{organization_id}-objects")
    monkeypatch.setattr(config, "s3_settings", lambda: settings)
    return settings
