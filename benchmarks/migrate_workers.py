"""Migration by the worker fleet vs one process (issue 25).

Run with `make bench-migrate-workers` (or `make bench`, after run.py)
or, with the stack running (`make start`), `.devstack/venv-2.12.0/bin/
python benchmarks/migrate_workers.py [--rounds 3] [--count 300] [--size
16MiB] [--workers 1,2,4] [--worker-jobs 4]`; try it small with `--count
20 --size 1MiB --rounds 1`.

Each round, in an order rotated from round to round (so that machine
noise and warm caches hit every side alike), ``--count`` fresh resources
of ``--size`` bytes on block storage (distinct random files, hard-linked
as run.py's figures do) are migrated to the store by:

- the local run: what ``dcor-migrate-resources-to-object-store --jobs
  16`` does, in this process (``run.migrate``);
- the fleet: what ``... --via-workers --jobs W_JOBS --queue
  bench-migrate`` does (``fleet.queue_run`` and ``fleet.follow_run``,
  as the command calls them), with W = 1, 2 and 4 workers ``ckan
  dcor-depot-worker bench-migrate`` of the benchmark site, started
  before the timing and registered with RQ, idle; timed from the
  listing of the resources until every resource has its outcome (the
  command's summary line).

Both sides run the command's code in this process, not the command in
a child: the command lists every resource of the site, and would
migrate the dev site's own resources along with the benchmark's. So
neither figure includes CKAN's start-up (a few seconds per command).

Every measurement gets its own resources; their objects and files are
deleted after it (and the store's garbage collected), once the
search-index jobs it queued have run (the benchmark site's background
worker runs them; not timed). Printed per round and then, for each W,
min and median of local time / fleet time, MiB/s of each side and the
fleet's MiB/s per worker: on hosts of their own, each bounded by its
link, N hosts would move about N x that figure ("the scale-out on
paper"). The goal: 2 workers >= 0.9 x the local run (PASS or MISS).

Everything it makes (organizations ``bench-*``, datasets, objects,
buckets, files on block storage, source files, workers and queued jobs
of ``bench-migrate``) is removed at the end, and at the start after a
killed run.
"""
from __future__ import annotations

import argparse
import collections
import contextlib
import re
import shutil
import socket
import statistics
import sys
import time
from pathlib import Path

import load_site as site
import run as base  # the shared helpers of benchmarks/run.py

#: The fleet's queue (of the benchmark site, ``ckan:dcor-bench:...``):
#: no worker of the dev site listens on it.
QUEUE = "bench-migrate"
LOCAL_JOBS = 16
GOAL_WORKERS, GOAL_RATIO = 2, 0.9
#: The benchmark's bucket in run.py's helpers: never created here; the
#: objects are in the buckets of the ``bench-*`` organizations.
BUCKET = "bench-migrate-workers"
FILES = base.WORK / "migrate-workers"
#: Seconds a fleet run may take beyond its bytes at 1 MiB/s.
TIMEOUT_BASE = 300
UNITS = {"": 1, "B": 1, "KIB": 2**10, "MIB": 2**20, "GIB": 2**30}


def size_arg(text: str) -> int:
    """``16MiB``, ``512KiB``, ``1GiB`` or bytes."""
    match = re.fullmatch(r"\s*(\d+)\s*([KMG]iB|B)?\s*", text, re.IGNORECASE)
    if not match:
        raise argparse.ArgumentTypeError(f"not a size: {text!r}")
    return int(match.group(1)) * UNITS[(match.group(2) or "").upper()]


def counts_arg(text: str) -> list[int]:
    try:
        counts = [int(n) for n in text.split(",")]
    except ValueError:
        counts = []
    if not counts or min(counts) < 1:
        raise argparse.ArgumentTypeError(f"not worker counts: {text!r}")
    return counts


# --------------------------------------------------------------- cleanup
def fleet_queue():
    from ckan.lib import jobs as ckan_jobs
    return ckan_jobs.get_queue(QUEUE)


def remove_leftovers(s3) -> None:
    """What a killed run left: its workers (registered on the benchmark
    site's queue from this host), their jobs, the files on block storage
    of the ``bench-*`` resources, their objects, buckets and records."""
    import ckan.model as model
    import rq
    from rq.registry import (
        DeferredJobRegistry,
        ScheduledJobRegistry,
        StartedJobRegistry,
    )
    queue = fleet_queue()
    for worker in rq.Worker.all(queue=queue):
        if (worker.hostname == socket.gethostname()
                and site.alive(worker.pid) and site.is_worker(worker.pid)):
            print(f"  (stopping worker {worker.pid} of a killed run)",
                  flush=True)
            site.stop(worker.pid, timeout=60)
    queue.empty()
    for registry in (StartedJobRegistry(queue=queue),
                     DeferredJobRegistry(queue=queue),
                     ScheduledJobRegistry(queue=queue)):
        for job_id in registry.get_job_ids():
            registry.remove(job_id, delete_job=True)
    rids = [row[0] for row in model.Session.query(model.Resource.id)
            .join(model.Package,
                  model.Resource.package_id == model.Package.id)
            .join(model.Group, model.Package.owner_org == model.Group.id)
            .filter(model.Group.name.like("bench-%"))
            .filter(~model.Group.name.like("bench-audit-%"))]
    base.remove_local_files(rids)
    base.delete_benchmark_objects(s3, BUCKET)
    base.purge_benchmark_records()
    shutil.rmtree(FILES, ignore_errors=True)


def reset(env: dict[str, str], s3, rids: list[str]) -> None:
    """After a measurement: let the search-index jobs it queued run,
    delete its objects and files, let the store free the space."""
    from ckan.lib import jobs as ckan_jobs

    from ckanext.dcor_depot.records import search_index
    queues = [ckan_jobs.get_queue(search_index.QUEUE), fleet_queue()]
    if site.wait_until_idle(env, time.monotonic() + 300, queues) is None:
        print("  (the search-index jobs did not end within 300 s)",
              flush=True)
    base.empty_buckets(s3, BUCKET)
    base.remove_local_files(rids)
    base.settle()


# ------------------------------------------------------------- measuring
def local_run(rids: list[str]) -> float:
    start = time.perf_counter()
    base.migrate(rids, LOCAL_JOBS)
    return time.perf_counter() - start


def idle_workers(pids: list[int], timeout: float = 60) -> None:
    """Wait until the workers ``pids`` are registered and idle."""
    import rq
    deadline = time.monotonic() + timeout
    while True:
        states = {w.pid: w.get_state()
                  for w in rq.Worker.all(queue=fleet_queue())}
        if all(states.get(pid) == "idle" for pid in pids):
            return
        if time.monotonic() > deadline:
            sys.exit(f"bench: the workers are not idle: {states}")
        time.sleep(0.2)


def fleet_run(rids: list[str], threads: int, pids: list[int],
              timeout: float) -> tuple[float, int]:
    """``(seconds, jobs)`` of a migration by the workers ``pids``."""
    from ckanext.dcor_depot.operations.migrate import (
        MigrationOptions,
        Status,
        fleet,
    )
    statuses: collections.Counter[str] = collections.Counter()
    start = time.perf_counter()

    def sleep(seconds: float) -> None:
        if time.perf_counter() - start > timeout:
            sys.exit(f"bench: the workers took more than {timeout:.0f} s"
                     f" ({sum(statuses.values())} of {len(rids)} done)")
        if not all(site.alive(pid) for pid in pids):
            sys.exit("bench: a worker died; see "
                     f"{base.WORK}/migrate-worker-*.log")
        time.sleep(seconds)

    records = base.benchmark_records(rids)
    run = fleet.queue_run(records, MigrationOptions(), QUEUE, threads)
    fleet.follow_run(run.run_id, lambda item: statuses.update(
        [item["status"]]), sleep=sleep)
    seconds = time.perf_counter() - start
    if statuses != {Status.UPLOADED.value: len(rids)} or run.joined:
        sys.exit(f"bench: the workers' migration: {dict(statuses)}, "
                 f"{len(run.joined)} earlier runs joined")
    return seconds, len(run.jobs)


def measure(kind: int, args, env: dict[str, str], ini: str, s3,
            files: list[Path]) -> tuple[float, str]:
    """Seconds of one migration of fresh resources: the local run
    (``kind`` 0) or ``kind`` workers; and what to print of it."""
    rids = base.resources_on_block_storage(files)
    try:
        if not kind:
            seconds = local_run(rids)
            return seconds, f"local --jobs {LOCAL_JOBS} {seconds:.1f} s"
        with site.own_workers(env, kind, base.WORK / f"migrate-worker-{kind}",
                              ini=ini, queue=fleet_queue()) as pids:
            idle_workers(pids)
            seconds, jobs = fleet_run(
                rids, args.worker_jobs, pids,
                TIMEOUT_BASE + len(files) * args.size / base.MiB)
        return seconds, (f"{kind} worker{'s' if kind > 1 else ''} "
                         f"{seconds:.1f} s ({jobs} jobs)")
    finally:
        reset(env, s3, rids)


def rates(mib: float, seconds: list[float]) -> str:
    return (f"median {statistics.median(seconds):.1f} s, "
            f"{mib / statistics.median(seconds):.0f} MiB/s")


def bench(args, env: dict[str, str], ini: str, s3) -> None:
    files = [base.random_file(FILES / f"{i:04d}.bin", args.size)
             for i in range(args.count)]
    mib = args.count * args.size / base.MiB
    kinds = [0, *args.workers]
    seconds: dict[int, list[float]] = {kind: [] for kind in kinds}
    for number in range(args.rounds):
        turn = number % len(kinds)
        said = []
        for kind in kinds[turn:] + kinds[:turn]:
            taken, line = measure(kind, args, env, ini, s3, files)
            seconds[kind].append(taken)
            said.append(line)
        print(f"  round {number + 1}: {', then '.join(said)}", flush=True)
    what = (f"{args.count} x {args.size / base.MiB:g} MiB migration, "
            f"--via-workers --jobs {args.worker_jobs}")
    print(f"local run --jobs {LOCAL_JOBS}: {rates(mib, seconds[0])}",
          flush=True)
    for count in args.workers:
        ratios = [local / fleet for local, fleet
                  in zip(seconds[0], seconds[count], strict=True)]
        per_worker = mib / statistics.median(seconds[count]) / count
        target = (f">= {GOAL_RATIO}" if count == GOAL_WORKERS
                  else "none (figure only)")
        workers = f"{count} worker{'s' if count > 1 else ''}"
        base.report(f"{what} with {workers}: local --jobs "
                    f"{LOCAL_JOBS} time / workers time", ratios, target,
                    f"({rates(mib, seconds[count])}, {per_worker:.0f} "
                    "MiB/s per worker)")
    if GOAL_WORKERS in args.workers:
        ratios = [local / fleet for local, fleet in
                  zip(seconds[0], seconds[GOAL_WORKERS], strict=True)]
        met = statistics.median(ratios) >= GOAL_RATIO
        print(f"goal: {GOAL_WORKERS} workers >= {GOAL_RATIO} x --jobs "
              f"{LOCAL_JOBS} in one process (median ratio "
              f"{statistics.median(ratios):.2f}): "
              f"{'PASS' if met else 'MISS'}", flush=True)
    print("scale-out on paper: N hosts, each bounded by its own link, "
          "would move about N x the per-worker figure", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--count", type=int, default=300,
                        help="resources per measurement (default 300)")
    parser.add_argument("--size", type=size_arg, default=16 * base.MiB,
                        help="bytes per resource: 16MiB (default), "
                             "512KiB, ...")
    parser.add_argument("--workers", type=counts_arg, default=[1, 2, 4],
                        help="worker counts, comma-separated (default "
                             "1,2,4)")
    parser.add_argument("--worker-jobs", type=int, default=4,
                        help="--jobs of the --via-workers runs: transfer "
                             "threads in each job (default 4)")
    args = parser.parse_args()
    env = base.load_env()
    base.WORK.mkdir(parents=True, exist_ok=True)
    ini = base.bench_ini(env)
    app = base.ckan_app(ini)
    s3 = base.plain_client()
    print(f"migration of {args.count} x {args.size / base.MiB:g} MiB: "
          f"local --jobs {LOCAL_JOBS} vs --via-workers --jobs "
          f"{args.worker_jobs} with {args.workers} workers "
          f"(queue {QUEUE}), {args.rounds} rounds", flush=True)
    with contextlib.ExitStack() as stack:
        stack.enter_context(app._wsgi_app.test_request_context())
        remove_leftovers(s3)  # left by a killed run
        stack.callback(remove_leftovers, s3)
        # The migration hands search-index updates to the site's worker.
        stack.enter_context(base.background_worker(ini))
        bench(args, env, ini, s3)


if __name__ == "__main__":
    main()
