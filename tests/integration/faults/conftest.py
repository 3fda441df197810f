"""The fault suite (`make test-faults`: 20 seeded iterations per
scenario; run alone with pytest, a reduced seeded subset).

Every test here is marked ``faults`` and works on buckets, depots and
backups of its own, so that the audit of its organizations sees only
what the scenario made.
"""
from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from ckanext.dcor_depot.storage import object_store
from tests.support.stack import remove_template_buckets


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if Path(str(item.fspath)).parent == Path(__file__).parent:
            item.add_marker(pytest.mark.faults)


@pytest.fixture
def fault_site(pipeline, with_extended_cli, ckan_config, monkeypatch,
               tmp_path) -> Iterator[Path]:
    """Buckets (a template of this test), depots, backups and temporary
    files of this test only; its buckets are removed afterwards."""
    template = f"test-f{uuid.uuid4().hex[:10]}-{{organization_id}}"
    monkeypatch.setitem(ckan_config, "dcor_object_store.bucket_name",
                        template)
    for option, folder in (("ckanext.dcor_depot.depots_path", "depots"),
                           ("dcor_object_store.local_backup_location",
                            "backup"),
                           ("ckanext.dcor_depot.tmp_dir", "tmp")):
        (tmp_path / folder).mkdir()
        monkeypatch.setitem(ckan_config, option, str(tmp_path / folder))
    object_store._known_buckets.clear()
    yield tmp_path
    remove_template_buckets()
