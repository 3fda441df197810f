"""Paths of the storage layout under the configured roots, including
hostile names (the pure parts are in tests/unit/storage/test_layout.py)."""
import os
import uuid

import pytest

from ckanext.dcor_depot import config
from ckanext.dcor_depot.storage import layout

RID = "7f1a3c2e-5b8d-4e6f-9a0b-1c2d3e4f5a6b"
DID = "d0b1c2d3-0000-4000-8000-000000000001"


@pytest.fixture
def cfg(with_plugins):
    return config


def test_ckan_upload_path(cfg):
    path = layout.ckan_upload_path(RID)
    assert path == (config.storage_path() / "resources" / "7f1" / "a3c"
                    / "2e-5b8d-4e6f-9a0b-1c2d3e4f5a6b")


def test_artifact_paths(cfg):
    base = str(layout.ckan_upload_path(RID))
    assert str(layout.artifact_local_path(RID, "resource")) == base
    assert str(layout.artifact_local_path(RID, "condensed")) == \
        base + "_condensed.rtdc"
    assert str(layout.artifact_local_path(RID, "preview")) == \
        base + "_preview.jpg"


def test_user_depot_path(cfg):
    path = layout.user_depot_path(
        user_name="alice", org_name="lab", dataset_id=DID,
        dataset_name="cells-2024", resource_id=RID,
        resource_name="M1_data.rtdc")
    assert path == (config.users_depot_path() / "alice-lab" / "d0" / "b1"
                    / f"cells-2024_{RID}_M1_data.rtdc")


def test_users_depot_name_defaults_to_hostname(cfg):
    assert config.users_depot_name() == f"users-{os.uname().nodename}"


@pytest.mark.ckan_config("ckanext.dcor_depot.users_depot_name",
                         "users-prod")
def test_users_depot_name_from_config(cfg):
    assert config.users_depot_path().name == "users-prod"


HOSTILE_NAMES = [
    "../../../../etc/passwd",
    "..",
    ".",
    "/absolute/path.rtdc",
    "nul\x00byte.rtdc",
    "tab\tnew\nline\rbell\x07.rtdc",
    "x" * 1000,
    "ü" * 1000,  # multi-byte characters near the byte limit
    "",
    "back\\slash",
]


@pytest.mark.parametrize("name", HOSTILE_NAMES)
def test_hostile_resource_names_stay_inside_depot(cfg, name):
    root = config.users_depot_path()
    path = layout.user_depot_path(
        user_name=name, org_name=name, dataset_id=DID, dataset_name=name,
        resource_id=RID, resource_name=name)
    resolved = os.path.normpath(os.path.abspath(path))
    assert resolved.startswith(str(root) + os.sep)
    relative = path.relative_to(root)
    assert len(relative.parts) == 4  # owner / PK / ID / file
    for part in relative.parts:
        assert part not in (".", "..")
        assert "\x00" not in part and "/" not in part
        assert not any(ord(ch) < 32 for ch in part)
        assert len(part.encode("utf-8")) <= 255
    # the resource id survives, so every resource has its own file
    assert RID in relative.parts[-1]


def test_hostile_name_stays_readable(cfg):
    path = layout.user_depot_path(
        user_name="bob", org_name="lab", dataset_id=DID,
        dataset_name="ds", resource_id=RID,
        resource_name="../secret/cells\x00 day 1.rtdc")
    assert path.name == f"ds_{RID}_secret_cells_ day 1.rtdc"


@pytest.mark.parametrize("bad_id", ["../../etc", "abc", "a/b/c/d/e/f",
                                    "", "x" * 101, "\x00abcdefgh"])
def test_hostile_ids_are_refused(cfg, bad_id):
    with pytest.raises(ValueError):
        layout.ckan_upload_path(bad_id)
    with pytest.raises(ValueError):
        layout.object_key(bad_id)


def test_figshare_depot_path(cfg):
    path = layout.figshare_depot_path(7771184, 2, "../cells.rtdc")
    assert path == config.depots_path() / "figshare" / "7771184" / "v2" / \
        "cells.rtdc"


def test_backup_path(cfg):
    rid = str(uuid.uuid4())
    path = layout.backup_path(rid)
    assert path == config.local_backup_location() / rid[:3] / rid[3:6] / \
        rid[6:]


@pytest.mark.ckan_config("dcor_object_store.local_backup_location", "")
def test_no_backup_path_without_location(cfg):
    assert layout.backup_path(RID) is None
