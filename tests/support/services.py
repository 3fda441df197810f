"""Crash and start services of the running devstack (the fault suite).

The scripts live in the checkout's ``stack/``; they find the stack in
the checkout's ``.devstack`` (CI's clone has its own).
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _env() -> dict[str, str]:
    # The venv running the tests names the CKAN version (venv-2.12.0).
    venv = Path(sys.executable).parent.parent.name
    version = venv.removeprefix("venv-")
    return {**os.environ, "CKAN_VERSION": version}


def crash(service: str) -> None:
    """SIGKILL (PostgreSQL: immediate stop) one of redis, postgres, rgw."""
    subprocess.run(["bash", str(ROOT / "stack" / "crash.sh"), service],
                   check=True, capture_output=True, env=_env(), timeout=60)


def start_services() -> None:
    """Start whatever service is down again (idempotent)."""
    proc = subprocess.run(
        ["bash", str(ROOT / "stack" / "start.sh"), "services"],
        capture_output=True, text=True, env=_env(), timeout=600)
    assert proc.returncode == 0, proc.stderr
