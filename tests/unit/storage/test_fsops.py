"""Temporary names and the removal of stale temporary files (no services)."""
from __future__ import annotations

import os
import threading

import pytest

from ckanext.dcor_depot.storage import fsops
from tests.support import temp as temp_helpers


@pytest.mark.parametrize("name", [
    "ü" * 200 + ".rtdc",                  # 405 bytes of UTF-8
    "数" * 300,                            # 900 bytes
    "../../etc/passwd\x00" * 20,
    "x" * 1000,
])
def test_names_fit_in_bytes_and_name_their_process(tmp_path, name):
    path = fsops.temp_path(tmp_path, name, "figshare", unique=True)

    assert path.parent == tmp_path
    assert len(path.name.encode()) <= 255
    assert "/" not in path.name and "\x00" not in path.name
    parsed = fsops.parse_temp_name(path.name)
    assert parsed == fsops.TempName(fsops.short_name(name),
                                        os.getpid(), "figshare")
    # Usable on a real filesystem (no ENAMETOOLONG).
    path.write_bytes(b"x")


def test_created_names_are_unique_across_threads(tmp_path):
    made = []

    def make():
        made.extend(fsops.create_temp(tmp_path, "same.rtdc", "download")
                    for _ in range(50))

    threads = [threading.Thread(target=make) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(set(made)) == 200
    assert all(p.exists() for p in made)


@pytest.mark.parametrize("name", [
    ".bashrc", ".x.txt.1.other", ".a.123.part.tmp.bak", "a.123.part.tmp",
    ".a.123.unknownkind.tmp", ".a.0.part.tmp", ".a.12x.part.tmp", "data.rtdc",
])
def test_foreign_names_are_not_ours(name):
    assert fsops.parse_temp_name(name) is None


def test_names_of_earlier_versions_are_recognised():
    assert fsops.parse_temp_name(".data.rtdc.4711.part") == fsops.TempName(
        "data.rtdc", 4711, "part")
    assert fsops.parse_temp_name(".ceid.12.symlink") == fsops.TempName(
        "ceid", 12, "symlink")


def test_only_old_files_of_gone_processes_are_removed(tmp_path):
    planted = temp_helpers.plant_set(tmp_path, "a.rtdc", "part")
    foreign = tmp_path / ".a.rtdc.1.other"
    foreign.write_bytes(b"")
    os.utime(foreign, (0, 0))
    # A dangling symlink (a killed swap of the upload path) goes too.
    link = tmp_path / f".b.{temp_helpers.dead_pid()}.symlink.tmp"
    os.symlink(tmp_path / "gone", link)
    os.utime(link, (0, 0), follow_symlinks=False)

    removed = fsops.remove_stale_temps(tmp_path)

    temp_helpers.assert_only_dead_removed(planted)
    assert foreign.exists()
    assert not os.path.lexists(link)
    assert sorted(removed) == sorted([planted["old_dead"],
                                      planted["old_dead_token"], link])


def test_under_a_lock_every_temporary_file_of_the_name_goes(tmp_path):
    mine = fsops.temp_path(tmp_path, "a.rtdc", "part")
    mine.write_bytes(b"")  # a reused pid: ours now
    other = fsops.temp_path(tmp_path, "b.rtdc", "part")
    other.write_bytes(b"")

    fsops.remove_stale_temps(tmp_path, name="a.rtdc", max_age=0,
                           owner_gone=False)

    assert not mine.exists()
    assert other.exists()


def test_missing_folder_is_fine(tmp_path):
    assert fsops.remove_stale_temps(tmp_path / "nope") == []
