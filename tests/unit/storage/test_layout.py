"""Object keys, ids and names of the storage layout: no CKAN config."""
from __future__ import annotations

from pathlib import Path

import pytest

from ckanext.dcor_depot.storage import fsops, layout

RID = "7f1a3c2e-5b8d-4e6f-9a0b-1c2d3e4f5a6b"


def test_object_keys():
    assert layout.object_key(RID) == \
        "resource/7f1/a3c/2e-5b8d-4e6f-9a0b-1c2d3e4f5a6b"
    assert layout.object_key(RID, "condensed").startswith("condensed/7f1/")
    assert layout.object_key(RID, "preview").startswith("preview/7f1/")
    with pytest.raises(ValueError):
        layout.object_key(RID, "thumbnail")


@pytest.mark.parametrize("artifact", layout.ARTIFACTS)
def test_object_key_round_trip(artifact):
    assert layout.parse_object_key(layout.object_key(RID, artifact)) \
        == (artifact, RID)


@pytest.mark.parametrize("key", [
    "resource/7f1/a3c",                       # too short
    "thumbnail/7f1/a3c/2e-5b8d-4e6f-9a0b",    # unknown artifact
    "resource/7f1/a3c/2e/../x",               # extra component
    "resource/7f/1a3c/2e-5b8d-4e6f-9a0b-1c2d3e4f5a6b",  # wrong split
    "resource/../a3c/2e-5b8d-4e6f",
])
def test_foreign_keys_are_not_ours(key):
    with pytest.raises(ValueError):
        layout.parse_object_key(key)


@pytest.mark.parametrize("bad_id", ["../../etc", "abc", "a/b/c/d/e/f",
                                    "", "x" * 101, "\x00abcdefgh", None])
def test_hostile_ids_are_refused(bad_id):
    with pytest.raises(ValueError):
        layout.check_id(bad_id)
    with pytest.raises(ValueError):
        layout.object_key(bad_id)


def test_id_parts():
    assert layout.id_parts(RID) == ("7f1", "a3c",
                                    "2e-5b8d-4e6f-9a0b-1c2d3e4f5a6b")


@pytest.mark.parametrize(("name", "expected"), [
    ("cells.rtdc", "cells.rtdc"),
    ("../secret/cells\x00 day 1.rtdc", "secret_cells_ day 1.rtdc"),
    ("..", "unnamed"),
    (".hidden", "hidden"),
    ("", "unnamed"),
    ("tab\there", "tab_here"),
])
def test_safe_component(name, expected):
    assert fsops.safe_component(name) == expected


def test_safe_component_cuts_at_a_character_boundary():
    cut = fsops.safe_component("ü" * 200, max_bytes=101)
    assert cut == "ü" * 50  # 100 bytes; half a character is dropped
    assert len(fsops.safe_component("x" * 1000).encode()) == 255


@pytest.mark.parametrize(("path", "root", "inside"), [
    ("/srv/depots/users/a", "/srv/depots", True),
    ("/srv/depots", "/srv/depots", False),
    ("/srv/depots-lookalike/a", "/srv/depots", False),
    ("/srv/depots/../etc/passwd", "/srv/depots", False),
    ("/srv/depots/a/", "/srv/depots/", True),
])
def test_is_inside(path, root, inside):
    assert fsops.is_inside(path, root) is inside
    if inside:
        assert fsops.ensure_inside(Path(root), Path(path)) == Path(path)
    else:
        with pytest.raises(ValueError, match="would leave"):
            fsops.ensure_inside(Path(root), Path(path))


def test_a_link_loop_at_an_upload_path_is_foreign(tmp_path):
    # Before: ELOOP read as "nothing there", and the download route fell
    # through to CKAN's own view (security review).
    upload_path, other = tmp_path / "upload", tmp_path / "other"
    upload_path.symlink_to(other)
    other.symlink_to(upload_path)
    assert layout.foreign_file(upload_path) is not None
    assert not layout.owned_file(upload_path)


def test_a_dangling_link_is_nothing_there(tmp_path):
    upload_path = tmp_path / "upload"
    upload_path.symlink_to(tmp_path / "deleted")
    assert layout.foreign_file(upload_path) is None
