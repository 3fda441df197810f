"""The settings of a fault scenario for `ckan` processes it starts.

The fixture ``fault_site`` gives a test buckets, depots, backups and a
temporary folder of its own, but only in the test process (CKAN's config
object); a `ckan` command or web server started by the test reads an
ini file, so it gets a copy of the tests' ini with the same settings.
"""
from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from tests.support.live_site import ini_with

#: What ``fault_site`` sets for the test.
FAULT_SITE_OPTIONS = (
    "dcor_object_store.bucket_name",
    "ckanext.dcor_depot.depots_path",
    "dcor_object_store.local_backup_location",
    "ckanext.dcor_depot.tmp_dir",
    "ckan.storage_path",
)


def fault_site_settings(ckan_config: Mapping[str, Any]) -> dict[str, str]:
    """The settings of this test's site, as the test process has them."""
    return {option: str(ckan_config[option])
            for option in FAULT_SITE_OPTIONS}


def write_fault_ini(test_ini: str | Path, target: Path,
                    ckan_config: Mapping[str, Any]) -> Path:
    """A copy of the tests' ini with this test's site settings."""
    return ini_with(Path(test_ini), target,
                          fault_site_settings(ckan_config))
