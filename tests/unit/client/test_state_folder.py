"""The client reads its state folder only if it is the user's own: a
state file planted by someone else would choose the upload it resumes
(and the one it may end)."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from ckanext.dcor_depot.client import state
from ckanext.dcor_depot.client.api import ClientError

pytestmark = pytest.mark.skipif(not hasattr(os, "getuid"),
                                reason="POSIX owners and modes")


def saved_upload(tmp_path: Path) -> tuple[Path, state.UploadState]:
    path = tmp_path / "cells.rtdc"
    path.write_bytes(b"abc")
    wanted = state.UploadState.for_file("https://a.org", "ds",
                                        state.FileIdentity.of(path))
    folder = tmp_path / "state"
    state.save(folder, state.UploadState.for_file(
        "https://a.org", "ds", state.FileIdentity.of(path), "rid-1"))
    return folder, wanted


def test_own_private_folder_is_read(tmp_path):
    folder, wanted = saved_upload(tmp_path)
    assert folder.stat().st_mode & 0o777 == 0o700
    assert state.load(folder, wanted).resource_id == "rid-1"


def test_missing_folder_is_no_state(tmp_path):
    _, wanted = saved_upload(tmp_path)
    assert state.load(tmp_path / "nowhere", wanted) is None


def test_folder_of_another_user_is_refused(tmp_path, monkeypatch):
    folder, wanted = saved_upload(tmp_path)
    owner = folder.stat().st_uid
    monkeypatch.setattr(os, "getuid", lambda: owner + 1)
    with pytest.raises(ClientError, match="belongs to another user"):
        state.load(folder, wanted)
    with pytest.raises(ClientError, match="belongs to another user"):
        state.save(folder, wanted)


@pytest.mark.parametrize("mode", [0o770, 0o702, 0o777])
def test_folder_others_may_write_is_refused(tmp_path, mode):
    folder, wanted = saved_upload(tmp_path)
    folder.chmod(mode)
    with pytest.raises(ClientError, match="written by other users"):
        state.load(folder, wanted)
    # nor written to (the state file stays as it was)
    before = sorted(p.name for p in folder.iterdir())
    with pytest.raises(ClientError, match="written by other users"):
        state.save(folder, wanted)
    assert sorted(p.name for p in folder.iterdir()) == before


def test_a_file_in_place_of_the_folder_is_refused(tmp_path):
    _, wanted = saved_upload(tmp_path)
    not_a_folder = tmp_path / "plain"
    not_a_folder.write_text("x")
    with pytest.raises(ClientError, match="not a folder"):
        state.load(not_a_folder, wanted)


def test_readable_by_others_is_fine(tmp_path):
    # Reading grants nothing: only writers choose what is resumed.
    folder, wanted = saved_upload(tmp_path)
    folder.chmod(0o755)
    assert state.load(folder, wanted).resource_id == "rid-1"
