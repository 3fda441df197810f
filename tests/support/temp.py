"""Temporary files as killed runs leave them, for the cleanup tests.

The names are written out here (not made by the plugin's helper) so that
the tests pin the format: ``.{name}.{pid}[-{token}].{kind}.tmp``.
"""
from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

DAY = 24 * 3600


def dead_pid() -> int:
    """The pid of a process that has ended (and was reaped)."""
    for _ in range(100):
        child = subprocess.Popen(["true"])
        child.wait()
        try:
            os.kill(child.pid, 0)
        except ProcessLookupError:
            return child.pid
    raise AssertionError("no free pid found")


def plant(folder: Path, name: str, *, pid: int, kind: str,
          age: float = 0.0, token: str = "") -> Path:
    """A temporary file of ``name`` owned by ``pid``, ``age`` s old."""
    folder.mkdir(parents=True, exist_ok=True)
    owner = f"{pid}-{token}" if token else str(pid)
    path = folder / f".{name}.{owner}.{kind}.tmp"
    path.write_bytes(b"half-written")
    if age:
        then = time.time() - age
        os.utime(path, (then, then))
    return path


def plant_set(folder: Path, name: str, kind: str) -> dict[str, Path]:
    """One temporary file per case: only ``old_dead`` may be removed."""
    dead = dead_pid()
    return {
        "old_dead": plant(folder, name, pid=dead, kind=kind, age=2 * DAY),
        "old_dead_token": plant(folder, name, pid=dead, kind=kind,
                                age=2 * DAY, token="0a1b2c3d"),
        "fresh_dead": plant(folder, name, pid=dead, kind=kind,
                            age=DAY - 600, token="4e5f6a7b"),
        "old_alive": plant(folder, name, pid=os.getpid(), kind=kind,
                           age=2 * DAY),
    }


def assert_only_dead_removed(planted: dict[str, Path]) -> None:
    for case, path in planted.items():
        if case.startswith("old_dead"):
            assert not path.exists(), f"{case} {path.name} was kept"
        else:
            assert path.exists(), f"{case} {path.name} was removed"
