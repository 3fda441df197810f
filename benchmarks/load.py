"""Load benchmark: a burst of uploads through CKAN's API (issue 15).

Run with `make bench` or, with the whole stack running (`make start`),
`.devstack/venv-2.12.0/bin/python benchmarks/load.py [--workers N]
[--layout spread|one|both] [--sizes loguniform|small] [--only-goal]`.

Each run stops the dev site's worker, starts N workers of its own (the
same command as stack/start.sh), uploads ``--count`` files with
``resource_create`` (multipart, as a client does) from several threads at
once, and watches the database until every resource is ``s3_available``.
It prints the upload phase, the time from the last upload's response
until all are in the store, throughput, the p50/p95/max time from each
response to ``s3_available`` and the workers' peak memory; it checks
every recorded ``sha256`` and the stored bytes (all of them for small
files, a sample otherwise). At the end the site's worker runs again, as
start_worker started it, and everything the benchmark made is deleted.
"""
from __future__ import annotations

import argparse
import contextlib
import hashlib
import math
import os
import random
import statistics
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import load_site as site
import run as base  # the shared helpers of benchmarks/run.py

KiB = 2**10
MiB = 2**20
MAX_SIZE = 256 * MiB
GOAL_SECONDS = 120.0
WORK = base.WORK / "load"
#: Objects whose bytes are read back after a run of large files.
SAMPLE = 12


@dataclass
class Upload:
    index: int
    path: Path
    size: int
    sha256: str
    dataset_id: str = ""
    resource_id: str = ""
    s3_url: str = ""
    started: float = 0.0
    responded: float = 0.0
    available: float | None = None

    @property
    def response_seconds(self) -> float:
        return self.responded - self.started

    @property
    def lag(self) -> float:
        """Seconds from the upload's response to ``s3_available``."""
        assert self.available is not None
        return self.available - self.responded


@dataclass(frozen=True)
class RunPlan:
    workers: int
    layout: str
    sizes: str
    count: int
    seed: int
    uploaders: int
    timeout: float

    @property
    def datasets(self) -> int:
        return 20 if self.layout == "spread" else 1

    def describe(self) -> str:
        kind = "1 KiB each" if self.sizes == "small" else \
            f"log-uniform 1 KiB..256 MiB, seed {self.seed}"
        return (f"{self.workers} workers, {self.count} uploads ({kind}) "
                f"into {self.datasets} dataset(s), {self.uploaders} "
                "parallel uploaders")


# ------------------------------------------------------------------ files
def planned_sizes(count: int, sizes: str, seed: int) -> list[int]:
    if sizes == "small":
        return [KiB] * count
    rng = random.Random(seed)
    low, high = math.log(KiB), math.log(MAX_SIZE)
    return [int(math.exp(rng.uniform(low, high))) for _ in range(count)]


def write_files(sizes: list[int]) -> list[tuple[Path, int, str]]:
    """Random files of the given sizes: ``(path, size, sha256)``."""
    folder = WORK / "files"
    folder.mkdir(parents=True, exist_ok=True)
    files = []
    for i, size in enumerate(sizes):
        path = folder / f"load-{i:03d}.bin"
        sha = hashlib.sha256()
        with open(path, "wb") as fd:
            left = size
            while left:
                block = os.urandom(min(left, 16 * MiB))
                sha.update(block)
                fd.write(block)
                left -= len(block)
        files.append((path, size, sha.hexdigest()))
    return files


class MultipartBody:
    """A multipart/form-data body read from the file as it is sent: the
    client's memory does not grow with the file (requests would build the
    whole body in memory)."""

    def __init__(self, fields: dict[str, str], path: Path) -> None:
        self.boundary = uuid.uuid4().hex
        head = b"".join(
            f'--{self.boundary}\r\nContent-Disposition: form-data; '
            f'name="{name}"\r\n\r\n{value}\r\n'.encode()
            for name, value in fields.items())
        head += (f'--{self.boundary}\r\nContent-Disposition: form-data; '
                 f'name="upload"; filename="{path.name}"\r\nContent-Type: '
                 "application/octet-stream\r\n\r\n").encode()
        tail = f"\r\n--{self.boundary}--\r\n".encode()
        self._parts: list[Any] = [head, open(path, "rb"), tail]
        self.length = len(head) + path.stat().st_size + len(tail)

    @property
    def content_type(self) -> str:
        return f"multipart/form-data; boundary={self.boundary}"

    def __len__(self) -> int:
        return self.length

    def read(self, size: int = -1) -> bytes:
        out = b""
        while self._parts and (size < 0 or len(out) < size):
            part = self._parts[0]
            want = -1 if size < 0 else size - len(out)
            if isinstance(part, bytes):
                chunk = part if want < 0 else part[:want]
                rest = b"" if want < 0 else part[want:]
                if rest:
                    self._parts[0] = rest
                else:
                    self._parts.pop(0)
            else:
                chunk = part.read(want)
                if len(chunk) == 0 or want < 0:
                    part.close()
                    self._parts.pop(0)
            out += chunk
        return out

    def close(self) -> None:
        for part in self._parts:
            if not isinstance(part, bytes):
                part.close()


# ----------------------------------------------------------------- burst
def create_datasets(action, count: int) -> list[str]:
    suffix = uuid.uuid4().hex[:8]
    org = action("organization_create", name=f"bench-load-{suffix}")
    return [action("package_create", name=f"bench-load-{suffix}-{i}",
                   owner_org=org["id"], private=True)["id"]
            for i in range(count)]


def upload_burst(uploads: list[Upload], uploaders: int,
                 env: dict[str, str]) -> None:
    """Every upload at once through ``uploaders`` threads, each with its
    own HTTP session (as that many clients)."""
    import requests
    local = threading.local()
    api = f"{env['CKAN_URL']}/api/3/action/resource_create"

    def send(up: Upload) -> None:
        if not hasattr(local, "session"):
            local.session = requests.Session()
            local.session.headers["Authorization"] = env["CKAN_API_TOKEN"]
        body = MultipartBody({"package_id": up.dataset_id,
                              "name": up.path.name}, up.path)
        up.started = time.monotonic()
        try:
            resp = local.session.post(
                api, data=body, timeout=3600,
                headers={"Content-Type": body.content_type,
                         "Content-Length": str(len(body))})
        finally:
            body.close()
        up.responded = time.monotonic()
        answer = resp.json()
        if not answer.get("success"):
            raise RuntimeError(f"upload {up.index}: {answer}")
        up.resource_id = answer["result"]["id"]

    with ThreadPoolExecutor(uploaders) as pool:
        for future in [pool.submit(send, up) for up in uploads]:
            future.result()


# ------------------------------------------------------------------- runs
def run_once(plan: RunPlan, files: list[tuple[Path, int, str]],
             env: dict[str, str], s3) -> dict[str, Any]:
    _, _, action = base.ckan_api(timeout=600)
    dataset_ids = create_datasets(action, plan.datasets)
    uploads = [Upload(i, path, size, sha,
                      dataset_id=dataset_ids[i % len(dataset_ids)])
               for i, (path, size, sha) in enumerate(files)]
    tag = f"{plan.workers}w-{plan.layout}-{plan.sizes}"
    with site.own_workers(env, plan.workers, WORK / f"worker-{tag}") \
            as pids, site.MemorySampler(pids) as memory, \
            site.AvailabilityWatch(dataset_ids, len(uploads)) as watch:
        start = time.monotonic()
        upload_burst(uploads, plan.uploaders, env)
        last_response = max(up.responded for up in uploads)
        all_available = watch.wait(start + plan.timeout)
        drained = site.wait_until_idle(env, time.monotonic() + 600)
    for up in uploads:
        up.available = watch.seen.get(up.resource_id)
    checked = verify(plan, uploads, action, s3)
    return {"plan": plan, "uploads": uploads, "start": start,
            "last_response": last_response, "all_available": all_available,
            "drained": drained, "memory": memory, "checked": checked,
            "logs": sorted(WORK.glob(f"worker-{tag}-*.log"))}


def verify(plan: RunPlan, uploads: list[Upload], action, s3) -> str:
    """Each resource's ``sha256`` as the site shows it (resource_show),
    and the stored bytes of all small files or a sample of large ones."""
    from ckanext.dcor_depot.storage import object_store
    wrong = []
    for up in uploads:
        res = action("resource_show", id=up.resource_id)
        if res.get("sha256") != up.sha256 or not res.get("s3_available"):
            wrong.append(f"{up.index}: sha256 {res.get('sha256')}, "
                         f"s3_available {res.get('s3_available')}")
        up.s3_url = res.get("s3_url") or ""
    if plan.sizes == "small":
        sample = uploads
    else:
        by_size = sorted(uploads, key=lambda up: up.size)
        rest = by_size[1:-1]
        sample = [by_size[0], by_size[-1]] + random.Random(plan.seed).sample(
            rest, min(SAMPLE - 2, len(rest)))

    def stored(up: Upload) -> str | None:
        where = object_store.parse_object_url(up.s3_url)
        if where is None:
            return f"{up.index}: no object URL"
        body = s3.get_object(Bucket=where[0], Key=where[1])["Body"]
        sha, size = hashlib.sha256(), 0
        while chunk := body.read(MiB):
            sha.update(chunk)
            size += len(chunk)
        if (size, sha.hexdigest()) != (up.size, up.sha256):
            return f"{up.index}: object has {size} bytes, {sha.hexdigest()}"
        return None
    with ThreadPoolExecutor(8) as pool:
        wrong += [w for w in pool.map(stored, sample) if w]
    if wrong:
        print(f"  WRONG ({len(wrong)}): " + "; ".join(wrong[:5]), flush=True)
    return (f"{len(uploads) - len(wrong)}/{len(uploads)} sha256 fields and "
            f"{len(sample)} objects (size + SHA256) checked, "
            f"{len(wrong)} wrong")


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


def report(result: dict[str, Any]) -> bool:
    """Print a run's figures; returns whether the run passed (all
    resources in the store, right data, and the goal for small files)."""
    plan: RunPlan = result["plan"]
    uploads: list[Upload] = result["uploads"]
    total = sum(up.size for up in uploads)
    missing = [up for up in uploads if up.available is None]
    upload_phase = result["last_response"] - result["start"]
    responses = [up.response_seconds for up in uploads]
    print(f"run: {plan.describe()}", flush=True)
    print(f"  {len(uploads)} resources, {total} bytes ({total / MiB:.1f} "
          f"MiB); upload phase {upload_phase:.1f} s (response time p50 "
          f"{statistics.median(responses):.2f} s, p95 "
          f"{percentile(responses, 0.95):.2f} s, max {max(responses):.2f} "
          "s)", flush=True)
    ok = not missing and " 0 wrong" in result["checked"]
    if missing:
        print(f"  NOT s3_available before the timeout: {len(missing)} of "
              f"{len(uploads)}", flush=True)
    else:
        end = max(up.available or 0.0 for up in uploads)
        after_last = end - result["last_response"]
        whole = end - result["start"]
        lags = [up.lag for up in uploads]
        print(f"  last upload response -> all s3_available: "
              f"{after_last:.1f} s", flush=True)
        print(f"  throughput {total / 1e6 / whole:.2f} MB/s, "
              f"{len(uploads) / whole:.2f} resources/s (first upload to "
              f"all s3_available, {whole:.1f} s)", flush=True)
        print(f"  upload response -> s3_available: p50 "
              f"{statistics.median(lags):.1f} s, p95 "
              f"{percentile(lags, 0.95):.1f} s, max {max(lags):.1f} s",
              flush=True)
        if plan.sizes == "small":
            passed = after_last <= GOAL_SECONDS
            ok = ok and passed
            verdict = "PASS" if passed else \
                f"FAIL by {after_last - GOAL_SECONDS:.1f} s"
            print(f"  goal (all s3_available within {GOAL_SECONDS:.0f} s "
                  f"of the last response): {verdict}", flush=True)
    if result["drained"] is not None:
        print(f"  queues empty (search index current) "
              f"{result['drained'] - result['last_response']:.1f} s after "
              "the last response", flush=True)
    print(f"  peak memory of the workers: {result['memory'].describe()}",
          flush=True)
    print(f"  verified: {result['checked']}", flush=True)
    for line in site.job_breakdown(result["logs"]):
        print(f"  jobs {line}", flush=True)
    return ok


def cleanup(s3) -> None:
    """Delete the data of every ``bench-load-*`` organization (also those
    of a killed run): block storage (depot file and CKAN's symlink), the
    objects, then the records (as run.py purges them)."""
    import ckan.model as model

    from ckanext.dcor_depot.operations.migrate import delete_local_file
    from ckanext.dcor_depot.storage import layout
    rows = (model.Session.query(model.Resource.id)
            .join(model.Package, model.Package.id == model.Resource.package_id)
            .join(model.Group, model.Group.id == model.Package.owner_org)
            .filter(model.Group.name.like("bench-load-%")).all())
    for (rid,) in rows:
        with contextlib.suppress(FileNotFoundError):
            delete_local_file(layout.ckan_upload_path(rid))
    base.empty_buckets(s3, f"bench-none-{uuid.uuid4().hex[:8]}")
    base.purge_benchmark_records()
    model.Session.remove()
    base.settle()


def plans(args) -> Iterator[RunPlan]:
    if args.only_goal:
        args.workers, args.sizes, args.count = [2], "small", 200
    layouts = ["spread", "one"] if args.layout == "both" else [args.layout]
    timeout = args.timeout or (900 if args.sizes == "small" else 3600)
    for workers in args.workers:
        for layout in layouts:
            yield RunPlan(workers, layout, args.sizes, args.count, args.seed,
                          args.uploaders, timeout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--workers", type=int, action="append",
                        help="workers of a run (repeatable; default 2, 4)")
    parser.add_argument("--layout", choices=["spread", "one", "both"],
                        default="both")
    parser.add_argument("--count", type=int, default=200)
    parser.add_argument("--sizes", choices=["loguniform", "small"],
                        default="loguniform")
    parser.add_argument("--seed", type=int, default=15)
    parser.add_argument("--uploaders", type=int, default=8)
    parser.add_argument("--timeout", type=float, default=0,
                        help="seconds a run waits for s3_available")
    parser.add_argument("--only-goal", action="store_true",
                        help="only the goal: 200 x 1 KiB, 2 workers, "
                             "both layouts")
    args = parser.parse_args()
    args.workers = args.workers or [2, 4]
    env = base.load_env()
    WORK.mkdir(parents=True, exist_ok=True)
    app = base.ckan_app(base.bench_ini(env))
    s3 = base.plain_client()
    all_ok = True
    with app._wsgi_app.test_request_context(), site.stack_worker_paused(env):
        sizes = planned_sizes(args.count if not args.only_goal else 200,
                              "small" if args.only_goal else args.sizes,
                              args.seed)
        print(f"files: {len(sizes)}, {sum(sizes)} bytes in total "
              f"({sum(sizes) / MiB:.1f} MiB), seed {args.seed}", flush=True)
        files = write_files(sizes)
        try:
            for plan in plans(args):
                try:
                    all_ok = report(run_once(plan, files, env, s3)) \
                        and all_ok
                finally:
                    cleanup(s3)
        finally:
            for path, _, _ in files:
                path.unlink(missing_ok=True)
    sys.exit(0 if all_ok else 1)


if __name__ == "__main__":
    main()
