"""The parts of ``dcor-depot-check`` that need no site: lines, writable
folders, free space."""
from __future__ import annotations

from pathlib import Path

from ckanext.dcor_depot.operations import health


def test_lines_name_status_detail_and_fix():
    assert health.ok("redis", "answers").line() == "OK   redis: answers"
    assert health.skipped("x", "why").line() == "SKIP x: why"
    line = health.failed("worker", "none", "start one").line()
    assert line == "FAIL worker: none — fix: start one"


def test_writable_folder_and_folder_to_be_created(tmp_path: Path):
    assert health.check_writable("a", tmp_path).detail == (
        f"{tmp_path} is writable")
    later = tmp_path / "depots" / "users"
    result = health.check_writable("a", later)
    assert not result.failed
    assert result.detail == f"{later} will be created in writable {tmp_path}"
    assert list(tmp_path.iterdir()) == []  # the probe file is gone


def test_folder_inside_a_file_is_not_writable(tmp_path: Path):
    a_file = tmp_path / "file"
    a_file.write_text("x")
    result = health.check_writable("option.name", a_file / "depot")
    assert result.failed
    assert result.detail == f"{a_file} is not a directory"
    assert "set option.name to one" in result.fix


def test_free_space_one_line_per_filesystem(tmp_path: Path):
    paths = [("a", tmp_path / "a"), ("b", tmp_path / "b")]
    results = health.check_free_space(paths, min_free_gib=0)
    assert len(results) == 1 and not results[0].failed
    assert results[0].name == f"free space {tmp_path / 'a'}"
    assert f"(also {tmp_path / 'b'})" in results[0].detail
    short = health.check_free_space(paths, min_free_gib=1e12)
    assert short[0].failed and "below 1e+12 GiB" in short[0].detail
