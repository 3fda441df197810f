"""A real CKAN web server on the tests' database, driven over HTTP.

Access control is tested as users meet it: HTTP requests with API tokens
of ordinary users (or none), answered by a separate ``ckan run`` process
with this plugin loaded. The server shares the test database, Redis and
object store; tests prepare users and organizations in-process (fast) and
do everything that needs authorization over HTTP.
"""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

#: Settings of the live site that differ from the in-process tests.
OVERRIDES = {
    # Organization deletion then clears owner_org (the case to test).
    "ckan.auth.create_unowned_dataset": "true",
    # Direct uploads of a few MiB then have several parts.
    "dcor_object_store.upload_part_size": str(5 * 2**20),
    # As on a real site: the web form's API calls (session cookie) must
    # carry CKAN's CSRF token; calls with an API token need none.
    "WTF_CSRF_ENABLED": "true",
}


class ApiError(Exception):
    def __init__(self, status: int, body: dict[str, Any]) -> None:
        super().__init__(f"HTTP {status}: {body.get('error')}")
        self.status = status
        self.body = body

    @property
    def error(self) -> dict[str, Any]:
        return self.body.get("error") or {}


def error_status(call: Callable[[], Any]) -> tuple[int, dict[str, Any]]:
    """The HTTP status and the error of an action call the site refuses
    (the test fails if it does not)."""
    with pytest.raises(ApiError) as info:
        call()
    return info.value.status, info.value.error


class LiveSite:
    def __init__(self, url: str) -> None:
        self.url = url

    def call(self, action: str, token: str | None = None,
             files: dict[str, tuple[str, bytes]] | None = None,
             **data: Any) -> requests.Response:
        """POST an action; JSON body, or multipart when ``files``."""
        headers = {"Authorization": token} if token else {}
        endpoint = f"{self.url}/api/3/action/{action}"
        if files:
            form = {k: v if isinstance(v, str) else json.dumps(v)
                    for k, v in data.items()}
            return requests.post(endpoint, data=form, files=files,
                                 headers=headers, timeout=300)
        return requests.post(endpoint, json=data, headers=headers,
                             timeout=300)

    def action(self, action: str, token: str | None = None,
               files: dict[str, tuple[str, bytes]] | None = None,
               **data: Any) -> Any:
        """The action's result; ApiError with the status otherwise."""
        resp = self.call(action, token, files, **data)
        try:
            body = resp.json()
        except ValueError:
            body = {"error": {"message": resp.text[:500]}}
        if resp.status_code != 200 or not body.get("success"):
            raise ApiError(resp.status_code, body)
        return body["result"]

    def status(self, action: str, token: str | None = None,
               files: dict[str, tuple[str, bytes]] | None = None,
               **data: Any) -> int:
        return self.call(action, token, files, **data).status_code


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def write_ini(test_ini: Path, target: Path, site_url: str,
              extra: dict[str, str] | None = None) -> Path:
    """The test ini with :data:`OVERRIDES`, ``site_url`` (the origin
    the buckets' CORS rule lets browsers upload from) and ``extra`` set
    in its ``[app:main]``."""
    return ini_with(test_ini, target, {
        **OVERRIDES, "ckan.site_url": site_url, **(extra or {})})


def ini_with(test_ini: Path, target: Path,
             overrides: dict[str, str]) -> Path:
    """A copy of the test ini with ``overrides`` set in its
    ``[app:main]`` (for `ckan` processes that must see a test's
    settings)."""
    lines = test_ini.read_text().splitlines()
    out: list[str] = []
    section = ""
    for line in lines:
        stripped = line.strip()
        if stripped.startswith("["):
            if section == "app:main":
                out += [f"{k} = {v}" for k, v in overrides.items()]
            section = stripped.strip("[]")
        elif section == "app:main" and stripped.split("=")[0].strip() \
                in overrides:
            continue
        out.append(line)
    if section == "app:main":
        out += [f"{k} = {v}" for k, v in overrides.items()]
    target.write_text("\n".join(out) + "\n")
    return target


def serve(ckan: str, test_ini: Path, workdir: Path,
          extra: dict[str, str] | None = None) -> Iterator[LiveSite]:
    """Run ``ckan run`` until the generator is closed (``extra``: more
    settings, see :func:`write_ini`)."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    ini = write_ini(test_ini, workdir / "live.ini", url, extra)
    log = open(workdir / "live-site.log", "wb")
    proc = subprocess.Popen(
        [ckan, "-c", str(ini), "run", "-H", "127.0.0.1", "-p", str(port),
         "--disable-reloader", "--threaded"],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 90
        while True:
            if proc.poll() is not None:
                raise RuntimeError("the live CKAN site exited: "
                                   + (workdir / "live-site.log").read_text())
            try:
                if requests.get(f"{url}/api/3/action/status_show",
                                timeout=2).ok:
                    break
            except requests.RequestException:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("the live CKAN site did not answer")
            time.sleep(0.3)
        yield LiveSite(url)
    finally:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(10)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            os.killpg(proc.pid, signal.SIGKILL)
        log.close()
