"""The devstack scripts refuse what they cannot do, and clean up after."""
import shutil
import socket
import subprocess
import uuid
from pathlib import Path

import ckan
import pytest

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture
def scratch_devstack():
    # Inside the checkout: PostgreSQL runs as its own user and cannot
    # enter pytest's private temporary folders.
    path = ROOT / ".devstack" / f"scratch-{uuid.uuid4().hex[:8]}"
    path.mkdir(parents=True)
    yield path
    subprocess.run(["bash", str(ROOT / "stack" / "stop.sh")],
                   env={"DEVSTACK": str(path), "PATH": "/usr/bin:/bin:"
                        "/usr/sbin:/sbin"}, capture_output=True)
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def taken_port():
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(1)
    yield sock.getsockname()[1]
    sock.close()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_services(devstack: Path, **ports) -> subprocess.CompletedProcess:
    # The CKAN version under test: its venv is the one that exists (a
    # fresh clone testing 2.11 only has no 2.12 venv, the default).
    env = {"DEVSTACK": str(devstack), "PATH": "/usr/bin:/bin:/usr/sbin:/sbin",
           "CKAN_VERSION": ckan.__version__,
           **{key: str(value) for key, value in ports.items()}}
    return subprocess.run(["bash", str(ROOT / "stack" / "start.sh"),
                           "services"], env=env, capture_output=True,
                          text=True, timeout=120)


def listening(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def test_taken_port_is_refused_with_one_clear_line(scratch_devstack,
                                                   taken_port):
    result = start_services(scratch_devstack, PG_PORT=taken_port)
    assert result.returncode != 0
    assert (f"port {taken_port} (PostgreSQL) is taken by another process: "
            "stop it or set PG_PORT to a free port") in result.stderr
    assert "Traceback" not in result.stderr


def test_nothing_half_started_is_left_behind(scratch_devstack, taken_port):
    pg_port = free_port()
    result = start_services(scratch_devstack, PG_PORT=pg_port,
                            REDIS_PORT=taken_port)
    assert result.returncode != 0
    assert f"port {taken_port} (Redis) is taken" in result.stderr
    # PostgreSQL came up first and was stopped again
    assert f"PostgreSQL on 127.0.0.1:{pg_port}" in result.stderr
    assert "stopping what this run started (postgres)" in result.stderr
    assert not listening(pg_port)


def test_postgres_starts_from_a_folder_other_users_cannot_enter(tmp_path,
                                                                taken_port):
    # pytest's temporary folders are private to root (0700), like a
    # checkout below /root: the user postgres cannot enter them.
    devstack = tmp_path / "private" / ".devstack"
    devstack.parent.mkdir(mode=0o700)
    pg_port = free_port()
    try:
        result = start_services(devstack, PG_PORT=pg_port,
                                REDIS_PORT=taken_port)
        # PostgreSQL came up (the run then stops at the taken Redis port)
        assert f"PostgreSQL on 127.0.0.1:{pg_port}" in result.stderr, \
            result.stderr
        assert "stopping what this run started (postgres)" in result.stderr
        assert not listening(pg_port)
        # its files live outside, linked from the stack's folder
        link = devstack / "pg"
        assert link.is_symlink()
        assert (link.resolve() / "data" / "PG_VERSION").is_file()
        assert oct(devstack.parent.stat().st_mode & 0o777) == "0o700"
    finally:
        subprocess.run(["bash", str(ROOT / "stack" / "stop.sh")],
                       env={"DEVSTACK": str(devstack),
                            "PATH": "/usr/bin:/bin:/usr/sbin:/sbin"},
                       capture_output=True)
        # what `make clean` does: the folder outside, not just its link
        subprocess.run(["bash", str(ROOT / "stack" / "clean_pg_outside.sh")],
                       env={"DEVSTACK": str(devstack),
                            "PATH": "/usr/bin:/bin:/usr/sbin:/sbin"},
                       capture_output=True)
        assert not (devstack / "pg").resolve().parent.exists()
