"""The client's pure parts: offsets, bodies, state files, CLI parsing,
error texts; and that it imports nothing of CKAN or boto."""
from __future__ import annotations

import argparse
import io
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ckanext.dcor_depot.client import __main__ as cli
from ckanext.dcor_depot.client import state
from ckanext.dcor_depot.client.api import ClientError, describe_error
from ckanext.dcor_depot.client.progress import ProgressLine, Tracker
from ckanext.dcor_depot.client.transfer import (
    Part,
    PartBody,
    file_sha256,
    part_offset,
    parts_of,
)

MiB = 2**20
REPO = Path(__file__).resolve().parents[3]


def test_part_offsets():
    assert part_offset(1, 5 * MiB) == 0
    assert part_offset(3, 5 * MiB) == 10 * MiB
    with pytest.raises(ValueError):
        part_offset(0, 5 * MiB)


def test_parts_of_an_answer_start_at_their_offsets():
    issued = {"part_size": 5 * MiB, "parts": [
        {"part_number": 2, "size": 5 * MiB, "url": "u2"},
        {"part_number": 3, "size": 7, "url": "u3"}]}
    assert parts_of(issued) == [Part(2, 5 * MiB, "u2", 5 * MiB),
                                Part(3, 7, "u3", 10 * MiB)]


def test_a_part_body_reads_exactly_its_bytes(tmp_path):
    data = os.urandom(100_000)
    path = tmp_path / "f"
    path.write_bytes(data)
    seen: list[tuple[int, int]] = []
    tracker = Tracker(len(data), lambda done, total: seen.append((done,
                                                                 total)))
    with open(path, "rb") as fh:
        body = PartBody(fh, Part(2, 30_000, "u", 40_000), tracker)
        assert len(body) == 30_000
        assert b"".join(body) == data[40_000:70_000]
    assert body.read_bytes == 30_000
    assert seen[-1] == (30_000, len(data))
    tracker.take_back(body.read_bytes)
    assert tracker.done == 0


def test_a_part_body_of_a_truncated_file_fails(tmp_path):
    path = tmp_path / "f"
    path.write_bytes(b"x" * 10)
    with open(path, "rb") as fh:
        body = PartBody(fh, Part(1, 20, "u", 0), Tracker(20))
        with pytest.raises(OSError, match="changed"):
            b"".join(body)


def test_the_tracker_holds_the_rate():
    now = [100.0]  # an injected clock that only sleeping advances

    def sleep(seconds: float) -> None:
        now[0] += seconds

    tracker = Tracker(10**6, max_rate=2 * 10**6, clock=lambda: now[0],
                      sleep=sleep)
    for _ in range(10):
        tracker.add(100_000)
    assert now[0] - 100.0 == pytest.approx(0.5)  # 1 MB at 2 MB/s


def test_file_sha256(tmp_path):
    import hashlib
    data = os.urandom(3 * MiB + 5)
    (tmp_path / "f").write_bytes(data)
    assert file_sha256(str(tmp_path / "f"), chunk=MiB) \
        == hashlib.sha256(data).hexdigest()


# ------------------------------------------------------------ state files
def identity(tmp_path: Path, data: bytes = b"abc") -> state.FileIdentity:
    path = tmp_path / "data.rtdc"
    path.write_bytes(data)
    return state.FileIdentity.of(path)


def test_state_file_names_depend_on_site_dataset_and_file(tmp_path):
    ident = identity(tmp_path)
    base = state.UploadState.for_file("https://a.org/", "ds", ident)
    assert base.site == "https://a.org"
    assert base.file_name.endswith(".json") and len(base.file_name) == 37
    assert base.file_name == state.UploadState.for_file(
        "https://a.org", "ds", ident, "rid").file_name
    others = {
        state.UploadState.for_file("https://b.org", "ds", ident).file_name,
        state.UploadState.for_file("https://a.org", "ds2", ident).file_name,
        state.UploadState.for_file("https://a.org", "ds", state.FileIdentity(
            ident.path, ident.size + 1, ident.mtime_ns)).file_name,
        state.UploadState.for_file("https://a.org", "ds", state.FileIdentity(
            ident.path, ident.size, ident.mtime_ns + 1)).file_name,
    }
    assert base.file_name not in others and len(others) == 4


def test_state_is_saved_atomically_and_loaded_for_the_same_file(tmp_path):
    ident = identity(tmp_path)
    wanted = state.UploadState.for_file("https://a.org", "ds", ident)
    folder = tmp_path / "state"
    assert state.load(folder, wanted) is None
    saved = state.save(folder, state.UploadState.for_file(
        "https://a.org", "ds", ident, "rid-1"))
    assert [p.name for p in folder.iterdir()] == [saved.name]  # no temp
    assert json.loads(saved.read_text())["resource_id"] == "rid-1"
    assert state.load(folder, wanted).resource_id == "rid-1"
    # the file changed: its old upload is not resumed
    os.utime(ident.path, ns=(ident.mtime_ns + 10**9,) * 2)
    changed = state.UploadState.for_file(
        "https://a.org", "ds", state.FileIdentity.of(ident.path))
    assert state.load(folder, changed) is None
    state.delete(folder, wanted)
    assert list(folder.iterdir()) == []
    state.delete(folder, wanted)  # gone already: fine


@pytest.mark.parametrize("content", ["{not json", '{"version": 99}',
                                     '{"version": 1, "site": "x"}'])
def test_unreadable_or_foreign_state_is_not_trusted(tmp_path, content):
    wanted = state.UploadState.for_file("https://a.org", "ds",
                                        identity(tmp_path))
    folder = tmp_path / "state"
    folder.mkdir()
    state.state_file(folder, wanted).write_text(content)
    assert state.load(folder, wanted) is None


def test_a_failed_save_leaves_no_temporary_file(tmp_path, monkeypatch):
    wanted = state.UploadState.for_file("https://a.org", "ds",
                                        identity(tmp_path), "rid")

    def broken(*_):
        raise OSError("disk full")
    monkeypatch.setattr(os, "replace", broken)
    folder = tmp_path / "state"
    with pytest.raises(OSError, match="disk full"):
        state.save(folder, wanted)
    assert list(folder.iterdir()) == []


def test_default_state_dir_follows_xdg(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert state.default_state_dir() == tmp_path / "dcor-depot-client"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert state.default_state_dir() \
        == tmp_path / "home" / ".cache" / "dcor-depot-client"


# ------------------------------------------------------- errors, command
def test_errors_read_as_one_line():
    assert describe_error("resource_create", 403, {
        "__type": "Authorization Error", "message": "Access denied"}) \
        == "resource_create failed (HTTP 403): Access denied"
    text = describe_error("resource_upload_s3_urls", 409, {
        "__type": "Validation Error", "size": ["too big"],
        "name": ["Missing value"]})
    assert text == ("resource_upload_s3_urls failed (HTTP 409): size: "
                    "too big; name: Missing value")
    assert "direct uploads" in describe_error(
        "resource_upload_s3_urls", 400,
        {"message": "Bad request - Action name not known: x"})
    exc = ClientError("x", 409, {"upload": ["upload 1 is complete"]})
    assert exc.mentions("is complete") and exc.mentions("complete", "upload")
    assert not exc.mentions("complete", "resource_id")


@pytest.mark.parametrize("text, rate", [("500", 500), ("500k", 5e5),
                                        ("4M", 4e6), ("1.5g", 1.5e9)])
def test_rates(text, rate):
    assert cli.byte_rate(text) == rate


@pytest.mark.parametrize("text", ["fast", "0", "-1k", ""])
def test_bad_rates(text):
    with pytest.raises(argparse.ArgumentTypeError):
        cli.byte_rate(text)


@pytest.mark.parametrize("argv", [
    [], ["upload"], ["upload", "--site", "x", "--token", "t", "f"],
    ["upload", "--site", "x", "--token", "t", "--dataset", "d",
     "--parallel", "0", "f"],
    ["upload", "--site", "x", "--token", "t", "--dataset", "d",
     "--field", "nokey", "f"],
])
def test_usage_errors_exit_2(argv, capsys):
    with pytest.raises(SystemExit) as info:
        cli.main(argv)
    assert info.value.code == 2
    assert "usage:" in capsys.readouterr().err


def test_a_token_is_needed(monkeypatch, capsys):
    monkeypatch.delenv(cli.TOKEN_VARIABLE, raising=False)
    with pytest.raises(SystemExit) as info:
        cli.main(["upload", "--site", "x", "--dataset", "d", "f"])
    assert info.value.code == 2
    assert cli.TOKEN_VARIABLE in capsys.readouterr().err


def test_a_missing_file_exits_1(tmp_path, capsys):
    code = cli.main(["upload", "--site", "http://127.0.0.1:9", "--token",
                     "t", "--dataset", "d", str(tmp_path / "missing")])
    assert code == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "no such file" in err
    assert len(err.strip().splitlines()) == 1


def test_progress_lines_off_a_terminal():
    out = io.StringIO()
    clock = iter([5.0, 6.0, 15.0, 16.0])  # seconds of a young machine
    line = ProgressLine(out, interval=3600, clock=lambda: next(clock))
    line(0, 30 * MiB)
    line(10 * MiB, 30 * MiB)  # within the interval: not shown
    line(30 * MiB, 30 * MiB)  # the end is always shown
    line(30 * MiB, 30 * MiB)  # but once
    line.close()
    shown = out.getvalue().splitlines()
    assert len(shown) == 2
    assert shown[0].startswith("0.0 / 30.0 MiB")
    assert shown[1] == "30.0 / 30.0 MiB  100%  3.1 MB/s"


def test_the_client_imports_neither_ckan_nor_boto():
    code = ("import sys, ckanext.dcor_depot.client, "
            "ckanext.dcor_depot.client.__main__\n"
            "bad = [m for m in sys.modules if m.split('.')[0] in "
            "('ckan', 'boto3', 'botocore', 'click')]\n"
            "print(bad)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True,
                         text=True, check=True,
                         env={**os.environ,
                              "PYTHONPATH": str(REPO)}).stdout
    assert out.strip() == "[]"


def test_no_part_starts_after_its_urls_expire(tmp_path):
    from ckanext.dcor_depot.client.transfer import send_round
    parts = [Part(1, 5, "http://127.0.0.1:9/1", 0),
             Part(2, 5, "http://127.0.0.1:9/2", 5)]
    outcome = send_round(None, str(tmp_path / "unused"),  # type: ignore
                         parts, Tracker(10), parallel=2,
                         start_before=time.monotonic() - 1)
    assert outcome.not_started == [1, 2]
    assert outcome.sent == [] and outcome.failed == {}


def test_seconds_until_the_urls_expire():
    import datetime

    from ckanext.dcor_depot.client.upload import _expires_in
    soon = datetime.datetime.now(datetime.timezone.utc) \
        + datetime.timedelta(seconds=100)
    assert 98 < _expires_in({"expires": soon.isoformat()}) <= 100
    assert _expires_in({"expires": "tomorrow"}) is None
    assert _expires_in({}) is None
    assert _expires_in({"expires": soon.replace(tzinfo=None).isoformat()}) \
        is None
