"""The upload client's command as a user runs it: the command line, its
environment, and a run to its end while this process works the site's
jobs (the SHA256 job the client waits for)."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from tests.support.stack import run_jobs

REPO = Path(__file__).resolve().parents[2]


def command(*args: str) -> list[str]:
    return [sys.executable, "-m", "ckanext.dcor_depot.client", *args]


def client_env(**extra: str) -> dict[str, str]:
    """This process's environment without an API token, the checkout
    on the module path, and ``extra``."""
    env = {k: v for k, v in os.environ.items() if k != "DCOR_API_TOKEN"}
    return {**env, "PYTHONPATH": str(REPO), **extra}


def run_command(args: list[str], env: dict[str, str], timeout: float = 120
                ) -> subprocess.CompletedProcess[str]:
    """Run the command to its end while this process runs the jobs."""
    proc = subprocess.Popen(args, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)
    deadline = time.monotonic() + timeout
    while proc.poll() is None and time.monotonic() < deadline:
        run_jobs()
        time.sleep(0.2)
    out, err = proc.communicate(timeout=10)
    return subprocess.CompletedProcess(args, proc.returncode, out, err)
