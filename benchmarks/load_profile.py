"""Where a small upload's jobs spend their time (issue 15, load).

Run with the stack running (no worker needed):
`.devstack/venv-2.12.0/bin/python benchmarks/load_profile.py`.
It measures, in this process with CKAN loaded as a worker has it:

- the setup of a work horse: fork, then CKAN's ``load_environment`` (what
  ckan.lib.jobs.Worker.main_work_horse does before every job), and the
  functions that take most of it;
- the symlink job, the S3 job (with its steps: reading the resource,
  the verified upload, the tagging, recording the fields, the move check)
  and the search-index job of a 1 KiB resource, in a dataset of 1 and
  of ``--resources`` resources.

The benchmark's datasets run under another site id (benchmarks/run.py's
bench.ini): no worker of the dev site picks up their jobs. Everything it
creates is deleted at the end.
"""
from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import statistics
import time
from collections.abc import Callable
from typing import Any

import run as base  # the shared helpers of benchmarks/run.py

#: Steps of the S3 job, by function name (cumulative time in a profile).
S3_STEPS = ["resource_facts", "upload_verified", "reconcile",
            "merge_resource_fields", "reindex_later",
            "request_move_if_needed"]
#: Steps of a work horse's setup.
SETUP_STEPS = ["load_all", "update_config", "load_environment_config",
               "is_redis_available", "reset"]


def in_fork(func: Callable[[], None]) -> float:
    """Seconds from before the fork until ``func`` returned in the child
    (the child reports through a pipe)."""
    read, write = os.pipe()
    start = time.perf_counter()
    pid = os.fork()
    if pid == 0:
        os.close(read)
        func()
        os.write(write, repr(time.perf_counter()).encode())
        os._exit(0)
    os.close(write)
    with os.fdopen(read) as pipe:
        done = float(pipe.read())
    os.waitpid(pid, 0)
    return done - start


def step_seconds(profile: cProfile.Profile, names: list[str]
                 ) -> dict[str, float]:
    """Cumulative seconds of the functions ``names`` in a profile."""
    stats = pstats.Stats(profile).stats  # type: ignore[attr-defined]
    found: dict[str, float] = {}
    for (_, _, name), (_, _, _, cumulative, _) in stats.items():
        if name in names:
            found[name] = max(found.get(name, 0.0), cumulative)
    return found


def profile_setup(rounds: int) -> None:
    import ckan.model as model
    from ckan.common import config
    from ckan.config.environment import load_environment

    def setup() -> None:
        load_environment(config)

    def profiled() -> None:
        profile = cProfile.Profile()
        profile.runcall(setup)
        steps = step_seconds(profile, SETUP_STEPS)
        print("  of one setup: " + ", ".join(
            f"{name} {seconds:.2f} s" for name, seconds in steps.items()),
            flush=True)
        pstats.Stats(profile).sort_stats("cumulative").print_stats(18)

    model.Session.remove()
    model.meta.engine.dispose()  # as the worker does before each fork
    seconds = [in_fork(setup) for _ in range(rounds)]
    print(f"work horse setup (fork + load_environment): median "
          f"{statistics.median(seconds):.2f} s, min {min(seconds):.2f} s "
          f"over {rounds} forks", flush=True)
    in_fork(profiled)


def timed_profile(func: Callable[..., Any], *args: Any
                  ) -> tuple[float, cProfile.Profile]:
    profile = cProfile.Profile()
    start = time.perf_counter()
    profile.runcall(func, *args)
    return time.perf_counter() - start, profile


def profile_jobs(resources: int, rounds: int) -> None:
    import ckan.model as model

    from ckanext.dcor_depot.operations import jobs
    from ckanext.dcor_depot.records import search_index
    source = base.random_file(base.WORK / "load-profile.bin", 1024)
    for size in (1, resources):
        rids = base.resources_on_block_storage([source] * size,
                                               per_dataset=size)
        dataset_id = model.Session.query(model.Resource.package_id).filter(
            model.Resource.id == rids[0]).scalar()
        symlink, upload, index = [], [], []
        steps: dict[str, list[float]] = {name: [] for name in S3_STEPS}
        for rid in rids[:rounds]:
            symlink.append(timed_profile(jobs.SYMLINK.func, rid)[0])
            seconds, profile = timed_profile(jobs.UPLOAD_S3.func, rid)
            upload.append(seconds)
            for name, value in step_seconds(profile, S3_STEPS).items():
                steps[name].append(value)
            index.append(timed_profile(search_index.reindex_datasets,
                                       [dataset_id])[0])
        print(f"dataset of {size} resources, median of {len(upload)} "
              f"jobs: symlink {statistics.median(symlink):.3f} s, S3 "
              f"{statistics.median(upload):.3f} s (" + ", ".join(
                  f"{name} {statistics.median(v):.3f}"
                  for name, v in steps.items() if v) +
              f"), search index {statistics.median(index):.3f} s",
              flush=True)
        base.remove_local_files(rids)
        for rid in rids:
            from ckanext.dcor_depot.operations.migrate import (
                delete_local_file,
            )
            from ckanext.dcor_depot.storage import layout
            if layout.ckan_upload_path(rid).is_symlink():
                delete_local_file(layout.ckan_upload_path(rid))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--resources", type=int, default=200)
    args = parser.parse_args()
    env = base.load_env()
    base.WORK.mkdir(parents=True, exist_ok=True)
    app = base.ckan_app(base.bench_ini(env))
    s3 = base.plain_client()
    with app._wsgi_app.test_request_context():
        try:
            profile_jobs(args.resources, args.rounds)
            profile_setup(args.rounds)
        finally:
            base.empty_buckets(s3, f"bench-none-{os.getpid()}")
            base.purge_benchmark_records()
            (base.WORK / "load-profile.bin").unlink(missing_ok=True)


if __name__ == "__main__":
    main()
