"""The dev site's side of benchmarks/load.py: its workers, what they hold
in memory, and when resources reach the store.

Workers are started as stack/start.sh's start_worker starts the site's
own (``ckan -c INI dcor-depot-worker default dcor-short dcor-normal``;
``DCOR_BENCH_WORKER="jobs worker"`` measures CKAN's worker), with
subprocess's default close_fds, so that no child holds the lock file of
the test runs. Only the site's worker (its pid file) and the workers
started here are ever signalled.
"""
from __future__ import annotations

import configparser
import contextlib
import datetime
import json
import os
import re
import signal
import statistics
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

QUEUES = ["default", "dcor-short", "dcor-normal"]
POLL = 0.2


def ckan_command(env: dict[str, str]) -> str:
    return str(Path(env["CKAN_VENV"]) / "bin" / "ckan")


def worker_command(env: dict[str, str], ini: str | None = None,
                   queues: list[str] | None = None) -> list[str]:
    """The site's worker command (or one of ``ini`` on ``queues``)."""
    command = os.environ.get("DCOR_BENCH_WORKER", "dcor-depot-worker")
    return [ckan_command(env), "-c", ini or env["CKAN_INI"],
            *command.split(), *(queues or QUEUES)]


def alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie does not)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def is_worker(pid: int) -> bool:
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    # `ckan dcor-depot-worker` (the devstack's) or `ckan jobs worker`.
    return b"dcor-depot-worker" in cmdline or (
        b"jobs" in cmdline and b"worker" in cmdline)


def stop(pid: int, timeout: float = 300) -> None:
    """SIGTERM (RQ's warm shutdown: the current job ends first), then
    SIGKILL if the worker is still there after ``timeout``."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while alive(pid):
        if time.monotonic() > deadline:
            print(f"  worker {pid} ignored SIGTERM; killed", flush=True)
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.1)


def site_id(env: dict[str, str]) -> str:
    parser = configparser.ConfigParser(interpolation=None, strict=False)
    parser.read(env["CKAN_INI"])
    return parser.get("app:main", "ckan.site_id", fallback="default")


def rq_queues(env: dict[str, str]) -> list:
    """The site's queues (this process runs under another site id)."""
    import rq
    from ckan.lib import jobs
    redis = jobs.connect_to_redis()
    return [rq.Queue(f"ckan:{site_id(env)}:{name}", connection=redis)
            for name in QUEUES]


# --------------------------------------------------------------- workers
@contextlib.contextmanager
def stack_worker_paused(env: dict[str, str]) -> Iterator[None]:
    """Stop the site's worker (its pid file); start it again at the end
    as start_worker does: same command, log file (appended) and pid
    file."""
    ckan_dir = Path(env["CKAN_INI"]).parent
    pidfile, logfile = ckan_dir / "worker.pid", ckan_dir / "worker.log"
    with contextlib.suppress(OSError, ValueError):
        pid = int(pidfile.read_text().strip())
        if alive(pid) and is_worker(pid):
            print(f"stopping the site's worker (PID {pid})", flush=True)
            stop(pid)
    try:
        yield
    finally:
        with open(logfile, "ab") as log:
            proc = subprocess.Popen(
                ["nohup", "setsid", *worker_command(env)], stdout=log,
                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        pidfile.write_text(f"{proc.pid}\n")
        time.sleep(1)
        state = "runs" if alive(proc.pid) else "DID NOT START"
        print(f"the site's worker {state} again (PID {proc.pid}, "
              f"log {logfile})", flush=True)


@contextlib.contextmanager
def own_workers(env: dict[str, str], count: int, log_prefix: Path,
                ini: str | None = None, queue: Any = None
                ) -> Iterator[list[int]]:
    """``count`` workers of the site's queues (or, with ``ini``, of that
    configuration on the rq ``queue``), registered with RQ before this
    yields their PIDs; stopped (warm) at the end."""
    command = worker_command(env) if ini is None else worker_command(
        env, ini, [queue.name.rsplit(":", 1)[-1]])
    procs = []
    try:
        for i in range(count):
            with open(f"{log_prefix}-{i}.log", "wb") as log:
                procs.append(subprocess.Popen(
                    command, stdout=log,
                    stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                    start_new_session=True))
        wait_registered(env, {p.pid for p in procs}, procs, queue)
        yield [p.pid for p in procs]
    finally:
        for proc in procs:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(timeout=300)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def wait_registered(env: dict[str, str], pids: set[int],
                    procs: list[subprocess.Popen], queue: Any = None
                    ) -> None:
    import rq
    queue = queue or rq_queues(env)[0]
    deadline = time.monotonic() + 120
    while not pids <= {w.pid for w in rq.Worker.all(queue=queue)}:
        if time.monotonic() > deadline or any(p.poll() is not None
                                              for p in procs):
            raise RuntimeError("the benchmark's workers did not start")
        time.sleep(0.2)


def wait_until_idle(env: dict[str, str], deadline: float,
                    queues: list | None = None) -> float | None:
    """When no job of the site (or of the rq ``queues``) is queued,
    deferred or running (the search-index jobs included); None if not
    before ``deadline``."""
    from rq.registry import DeferredJobRegistry, StartedJobRegistry
    queues = queues or rq_queues(env)
    while time.monotonic() < deadline:
        busy = sum(q.count + len(StartedJobRegistry(queue=q))
                   + len(DeferredJobRegistry(queue=q)) for q in queues)
        if not busy:
            return time.monotonic()
        time.sleep(POLL)
    return None


# ---------------------------------------------------------------- memory
def descendants(pid: int) -> list[int]:
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        with contextlib.suppress(OSError):
            for task in Path(f"/proc/{current}/task").iterdir():
                todo += [int(c) for c in
                         (task / "children").read_text().split()]
    return found


def kib(path: str, field: str) -> int:
    with contextlib.suppress(OSError):
        for line in Path(path).read_text().splitlines():
            if line.startswith(field):
                return int(line.split()[1])
    return 0


SamplingT = TypeVar("SamplingT", bound="Sampling")


class Sampling:
    """A daemon thread calling ``sample`` every ``interval`` seconds
    while the ``with`` block runs."""

    interval = 0.25

    def __init__(self) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def __enter__(self: SamplingT) -> SamplingT:
        self._thread.start()
        return self

    def __exit__(self, kind: type[BaseException] | None,
                 exc: BaseException | None, tb: TracebackType | None) -> None:
        self._stop.set()
        self._thread.join()
        self.close()

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self.sample()

    def sample(self) -> None:
        raise NotImplementedError

    def close(self) -> None:
        """Release what the sampling held (after its last round)."""


class MemorySampler(Sampling):
    """Peak memory of the workers and their work horses, from /proc.

    RSS summed over processes counts the pages a work horse shares with
    its worker after the fork twice; PSS shares them out, so its sum is
    what the processes take from the machine."""

    def __init__(self, pids: list[int]) -> None:
        super().__init__()
        self.pids = pids
        self.rss_kib = self.pss_kib = self.horse_kib = 0
        self.processes = 0

    def sample(self) -> None:
        rss = pss = 0
        for worker in self.pids:
            family = descendants(worker)
            self.processes = max(self.processes, len(family))
            for pid in family:
                own = kib(f"/proc/{pid}/status", "VmRSS:")
                rss += own
                pss += kib(f"/proc/{pid}/smaps_rollup", "Pss:")
                if pid != worker:
                    self.horse_kib = max(self.horse_kib, own)
        self.rss_kib = max(self.rss_kib, rss)
        self.pss_kib = max(self.pss_kib, pss)

    def describe(self) -> str:
        return (f"RSS sum {self.rss_kib / 1024:.0f} MiB, PSS sum "
                f"{self.pss_kib / 1024:.0f} MiB (workers, work horses and "
                f"RQ schedulers, up to {self.processes} processes per "
                f"worker); largest child {self.horse_kib / 1024:.0f} MiB")


# ---------------------------------------------------------- s3_available
class AvailabilityWatch(Sampling):
    """When each resource of the datasets was first seen ``s3_available``
    in the database (read every 0.2 s: cheaper for the site than asking
    its API, so the polling does not slow the workers measured)."""

    interval = POLL

    def __init__(self, dataset_ids: list[str], expected: int) -> None:
        super().__init__()
        import ckan.plugins.toolkit as tk
        import sqlalchemy as sa
        self.engine = sa.create_engine(tk.config["sqlalchemy.url"])
        self.query = sa.text(
            "SELECT id, extras FROM resource WHERE state = 'active' AND "
            "package_id = ANY(:ids)")
        self.dataset_ids = dataset_ids
        self.expected = expected
        self.seen: dict[str, float] = {}

    def sample(self) -> None:
        with self.engine.connect() as conn:
            rows = conn.execute(self.query, {"ids": self.dataset_ids})
            now = time.monotonic()
            for rid, extras in rows:
                value = json.loads(extras or "{}").get("s3_available")
                if str(value).lower() == "true":
                    self.seen.setdefault(rid, now)

    def close(self) -> None:
        self.engine.dispose()

    def wait(self, deadline: float) -> float | None:
        """Time the last resource became available; None if not all did
        before ``deadline``."""
        while len(self.seen) < self.expected:
            if time.monotonic() > deadline:
                return None
            time.sleep(POLL)
        return max(self.seen.values())


# ------------------------------------------------------------- job costs
LOG_TIME = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) ")
JOB_EVENT = re.compile(r"Worker \S+ (starts|has finished) job (\S+)")


def job_phases(log_path: Path) -> Iterator[tuple[str, float, float]]:
    """``(kind, setup, work)`` seconds of each job in a worker's log.

    setup: from the worker's "starts job" (before the fork) to the work
    horse's last "Loading templates" line (CKAN's load_environment);
    work: from there to "has finished job" (the job, recording its
    result, and the end of the work horse).
    """
    start = loaded = None
    for line in log_path.read_text(errors="replace").splitlines():
        stamp = LOG_TIME.match(line)
        if not stamp:
            continue
        when = datetime.datetime.strptime(
            stamp.group(1), "%Y-%m-%d %H:%M:%S,%f").timestamp()
        event = JOB_EVENT.search(line)
        if event and event.group(1) == "starts":
            start = loaded = when
        elif "Loading templates" in line and start is not None:
            loaded = when
        elif event and start is not None and loaded is not None:
            yield job_kind(event.group(2)), loaded - start, when - loaded
            start = loaded = None


def job_kind(job_id: str) -> str:
    """The kind of a job from its id (``{resource}-s3-upload``,
    ``{dataset}-reindex-again``, ...); "other" for ids without one."""
    for kind in ("reindex-again", "s3-upload", "s3-backup", "s3-sha256",
                 "symlink", "reindex", "move", "sync-visibility"):
        if job_id.endswith(f"-{kind}"):
            return kind
    return "other"


def job_breakdown(log_paths: list[Path]) -> list[str]:
    """Per kind of job: how many ran, median setup and work, and the
    worker-seconds they took in all."""
    phases: dict[str, list[tuple[float, float]]] = {}
    for path in log_paths:
        for kind, setup, work in job_phases(path):
            phases.setdefault(kind, []).append((setup, work))
    lines = []
    for kind, runs in sorted(phases.items()):
        setups = [s for s, _ in runs]
        works = [w for _, w in runs]
        lines.append(
            f"{kind}: {len(runs)} jobs, median setup (fork + CKAN "
            f"environment) {statistics.median(setups):.2f} s, work "
            f"{statistics.median(works):.2f} s (max {max(works):.2f} s); "
            f"{sum(setups) + sum(works):.0f} worker-s in all, "
            f"{sum(setups):.0f} of them setup")
    return lines
