"""Benchmarks of ``dcor-depot-audit`` against the dev site (issue 14).

Run with `make bench` or, with the stack running (`make start`; the web
server and worker need not run), `.devstack/venv-2.12.0/bin/python
benchmarks/audit.py [--only shallow,site,sample,deep]`. The audits run as
an operator runs them, as a child process ``ckan -c INI dcor-depot-audit``
on the dev site's configuration; each figure is measured alternately with
the plain store work of the same objects in the same run and printed
with the target of the audit issue. Everything the benchmark creates
(organizations ``bench-audit-*``, their datasets, objects, buckets and
upload files) is removed at the end, and at the start after a killed run;
the dev site's kept audit report is put back.
"""
from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import logging
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import run as base  # the shared helpers of benchmarks/run.py

PREFIX = "bench-audit-"
KiB = 2**10
#: The child whose peak RSS is measured is started by this small process:
#: a child forked from the benchmark (with 10,000 resources in memory)
#: would report the benchmark's pages as its own peak.
MEASURE = (
    "import os, subprocess, sys\n"
    "child = subprocess.Popen(sys.argv[2:])\n"
    "_, status, usage = os.wait4(child.pid, 0)\n"
    "with open(sys.argv[1], 'w') as out:\n"
    "    out.write(str(usage.ru_maxrss))\n"
    "sys.exit(os.waitstatus_to_exitcode(status))\n")


@dataclass
class BenchOrg:
    name: str
    id: str
    bucket: str
    #: the key of every object, in listing order
    keys: list[str] = field(default_factory=list)


@dataclass
class AuditRun:
    seconds: float
    peak_mib: float
    exit_code: int
    report: dict[str, Any] | None
    stderr: str

    def describe(self) -> str:
        found = "no report" if self.report is None else \
            f"{len(self.report['findings'])} findings"
        return (f"{self.seconds:.1f} s, peak RSS {self.peak_mib:.0f} MiB, "
                f"exit {self.exit_code}, {found}")


# ------------------------------------------------------------- the site
def action(action_name: str, /, **data: Any) -> Any:
    """A CKAN action as the site user (who may set the plugin's fields)."""
    import ckan.plugins.toolkit as tk

    from ckanext.dcor_depot.records.ckan_data import site_context
    return tk.get_action(action_name)(site_context(), data)


@contextlib.contextmanager
def without_resource_jobs() -> Iterator[None]:
    """Create resources as their jobs left them: the jobs would back up
    10,000 objects and stay queued for the dev site's worker."""
    from ckanext.dcor_depot.operations import jobs
    queue = jobs.enqueue_resource_jobs
    jobs.enqueue_resource_jobs = lambda resource: []
    try:
        yield
    finally:
        jobs.enqueue_resource_jobs = queue


def pooled_client(connections: int):
    """A boto3 client as :func:`run.plain_client`, with enough connections
    for ``connections`` threads (the default 10 would make them queue)."""
    import boto3
    import botocore.config
    env = base.load_env()
    return boto3.client(
        "s3", endpoint_url=env["S3_ENDPOINT"], region_name="us-east-1",
        aws_access_key_id=env["S3_ACCESS_KEY_ID"],
        aws_secret_access_key=env["S3_SECRET_ACCESS_KEY"],
        config=botocore.config.Config(
            s3={"addressing_style": "path"},
            max_pool_connections=connections,
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required"))


def new_org(kind: str, prefix: str = PREFIX) -> BenchOrg:
    from ckanext.dcor_depot.storage import object_store
    org = action("organization_create",
                 name=f"{prefix}{kind}-{uuid.uuid4().hex[:8]}")
    bucket = object_store.bucket_name(org["id"])
    object_store.ensure_bucket(bucket)  # with the plugin's rules
    return BenchOrg(org["name"], org["id"], bucket)


def resource_dict(org: BenchOrg, rid: str, body: bytes,
                  url_type: str) -> dict[str, Any]:
    from ckanext.dcor_depot.storage import layout, object_store
    return {"id": rid, "name": f"{rid[:8]}.rtdc", "url": f"{rid[:8]}.rtdc",
            "url_type": url_type, "size": len(body), "s3_available": True,
            "s3_url": object_store.object_url(org.bucket,
                                              layout.object_key(rid)),
            "sha256": hashlib.sha256(body).hexdigest()}


def store_objects(s3, org: BenchOrg, bodies: dict[str, bytes],
                  public: bool, threads: int = 32) -> None:
    from ckanext.dcor_depot.storage import layout

    def put(item: tuple[str, bytes]) -> None:
        extra = {"Tagging": "public=true"} if public else {}
        s3.put_object(Bucket=org.bucket, Key=layout.object_key(item[0]),
                      Body=item[1], **extra)
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(put, bodies.items()))
    org.keys += [layout.object_key(rid) for rid in bodies]


def write_upload_files(bodies: dict[str, bytes]) -> None:
    from ckanext.dcor_depot.storage import layout
    for rid, body in bodies.items():
        path = layout.ckan_upload_path(rid)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(body)


def populate(s3, kind: str, datasets: int, per_dataset: int, size: int,
             url_type: str = "upload") -> BenchOrg:
    """An organization with ``datasets`` x ``per_dataset`` resources of
    ``size`` random bytes each, stored as the plugin stores them: every
    other dataset public (its objects tagged), upload files on block
    storage for ``url_type`` upload."""
    org = new_org(kind)
    start = time.perf_counter()
    with without_resource_jobs():
        for n in range(datasets):
            bodies = {str(uuid.uuid4()): os.urandom(size)
                      for _ in range(per_dataset)}
            public = n % 2 == 0
            store_objects(s3, org, bodies, public)
            if url_type == "upload":
                write_upload_files(bodies)
            action("package_create", name=f"{org.name}-{n}",
                   owner_org=org.id, private=not public,
                   resources=[resource_dict(org, rid, body, url_type)
                              for rid, body in bodies.items()])
    org.keys.sort()
    print(f"  ({org.name}: {datasets} datasets x {per_dataset} resources "
          f"of {size / KiB:.0f} KiB created in "
          f"{time.perf_counter() - start:.0f} s)", flush=True)
    return org


# --------------------------------------------------------------- cleanup
def bench_orgs(prefix: str = PREFIX) -> list[tuple[str, str]]:
    """``(id, name)`` of the benchmark's organizations, in any state."""
    import ckan.model as model
    return [(g.id, g.name) for g in model.Session.query(model.Group).filter(
        model.Group.name.startswith(prefix, autoescape=True))]


def remove_bench_orgs(s3, prefix: str = PREFIX) -> None:
    """Delete the objects, buckets, upload files, datasets (with their
    activities and queued jobs) and organizations of the benchmark
    (organizations named ``prefix...``)."""
    import ckan.model as model

    from ckanext.dcor_depot.storage import object_store
    for org_id, name in bench_orgs(prefix):
        bucket = object_store.bucket_name(org_id)
        empty_bucket(s3, bucket)
        dataset_ids = [p.id for p in model.Session.query(model.Package)
                       .filter(model.Package.owner_org == org_id)]
        rids = [r.id for r in model.Session.query(model.Resource).filter(
            model.Resource.package_id.in_(dataset_ids))]
        remove_upload_files(rids)
        for dataset_id in dataset_ids:
            action("dataset_purge", id=dataset_id)
        action("organization_purge", id=org_id)
        forget(dataset_ids + [org_id])
        empty_bucket(s3, bucket, remove=True)  # in case a tagger made it
        print(f"  (removed {name}: {len(dataset_ids)} datasets, "
              f"{len(rids)} resources)", flush=True)


def empty_bucket(s3, bucket: str, remove: bool = False) -> None:
    try:
        for page in s3.get_paginator("list_objects_v2").paginate(
                Bucket=bucket):
            keys = [{"Key": o["Key"]} for o in page.get("Contents", [])]
            if keys:
                s3.delete_objects(Bucket=bucket,
                                  Delete={"Objects": keys, "Quiet": True})
        if remove:
            s3.delete_bucket(Bucket=bucket)
    except s3.exceptions.NoSuchBucket:
        pass


def remove_upload_files(rids: list[str]) -> None:
    from ckanext.dcor_depot.storage import layout
    for rid in rids:
        path = layout.ckan_upload_path(rid)
        path.unlink(missing_ok=True)
        for folder in (path.parent, path.parent.parent):
            with contextlib.suppress(OSError):
                folder.rmdir()  # only if empty


def forget(object_ids: list[str]) -> None:
    """Drop what CKAN keeps of purged objects: activities (CKAN leaves
    them behind) and the search-index jobs ``--deep`` queued."""
    import ckan.model as model
    import sqlalchemy as sa
    from ckan.lib import jobs as ckan_jobs
    from rq.job import Job, NoSuchJobError
    if sa.inspect(model.meta.engine).has_table("activity"):
        ids = {"ids": tuple(object_ids)}
        model.Session.execute(sa.text(
            "DELETE FROM activity WHERE object_id IN :ids").bindparams(
                sa.bindparam("ids", expanding=True)), ids)
        model.Session.commit()
    redis = ckan_jobs.connect_to_redis()
    for object_id in object_ids:
        for suffix in ("reindex", "reindex-again", "sync-visibility"):
            with contextlib.suppress(NoSuchJobError):
                Job.fetch(f"{object_id}-{suffix}", connection=redis).delete()


@contextlib.contextmanager
def kept_report_restored() -> Iterator[None]:
    """The benchmark's audits replace the dev site's kept report (the
    operator page's): put it back afterwards."""
    from ckanext.dcor_depot.operations.audit.findings import last_report_path
    path = last_report_path()
    before = path.read_bytes() if path.exists() else None
    folder_existed = path.parent.exists()
    try:
        yield
    finally:
        if before is None:
            path.unlink(missing_ok=True)
            if not folder_existed:
                with contextlib.suppress(OSError):
                    path.parent.rmdir()
        else:
            path.write_bytes(before)
            os.chmod(path, 0o600)


# ------------------------------------------------------------ measuring
def ckan_command(ini: str, *arguments: str
                 ) -> tuple[float, float, subprocess.CompletedProcess]:
    """``ckan -c INI ARGUMENTS`` in a child: its wall time, its peak RSS
    in MiB (its own, see MEASURE) and the finished process (output
    captured)."""
    ckan = str(Path(sys.executable).with_name("ckan"))
    with tempfile.NamedTemporaryFile("r") as rss:
        start = time.perf_counter()
        child = subprocess.run(
            [sys.executable, "-c", MEASURE, rss.name, ckan, "-c", ini,
             *arguments], capture_output=True, text=True, check=False)
        seconds = time.perf_counter() - start
        peak = int(rss.read() or 0) / KiB
    return seconds, peak, child


def audit_command(ini: str, *options: str) -> AuditRun:
    """``ckan -c INI dcor-depot-audit --json OPTIONS`` in a child: its wall
    time, its peak RSS (its own, see MEASURE) and its report."""
    seconds, peak, child = ckan_command(ini, "dcor-depot-audit", "--json",
                                        *options)
    try:
        report = json.loads(child.stdout[child.stdout.index("{"):])
    except ValueError:
        report = None
    return AuditRun(seconds, peak, child.returncode, report, child.stderr)


def require_clean(run: AuditRun, what: str) -> None:
    """Exit status 0 and no finding, else show why and stop."""
    if run.exit_code == 0 and run.report and not run.report["findings"]:
        return
    for finding in (run.report or {}).get("findings", [])[:10]:
        print(f"  finding: {finding}", flush=True)
    print("\n".join(run.stderr.splitlines()[-20:]), flush=True)
    sys.exit(f"bench: {what}: {run.describe()}")


def store_baseline(s3, bucket: str, expected: int) -> float:
    """The least store work of a shallow audit: one listing of the bucket
    and one tagging request per object, 32 at once."""
    start = time.perf_counter()
    keys = [o["Key"] for page in s3.get_paginator(
        "list_objects_v2").paginate(Bucket=bucket)
        for o in page.get("Contents", [])]
    with ThreadPoolExecutor(32) as pool:
        list(pool.map(lambda key: s3.get_object_tagging(
            Bucket=bucket, Key=key), keys))
    assert len(keys) == expected, (len(keys), expected)
    return time.perf_counter() - start


class Discard:
    """A writable file that keeps nothing (download_fileobj's target)."""

    def write(self, data: bytes) -> int:
        return len(data)


def plain_parallel_download(s3, bucket: str, keys: list[str],
                            at_once: int) -> None:
    with ThreadPoolExecutor(at_once) as pool:
        list(pool.map(lambda key: s3.download_fileobj(bucket, key,
                                                      Discard()), keys))


# --------------------------------------------------------------- figures
class Bench:
    """What the figures share: the dev site's ini, a client, and the big
    organization (created by the first figure that needs it)."""

    def __init__(self, args: argparse.Namespace, ini: str) -> None:
        self.args, self.ini = args, ini
        self.s3 = pooled_client(32)
        self._big: BenchOrg | None = None

    def big_org(self) -> BenchOrg:
        if self._big is None:
            self._big = populate(self.s3, "shallow", self.args.datasets,
                                 self.args.per_dataset, self.args.size)
        return self._big


def bench_shallow(bench: Bench) -> None:
    org = bench.big_org()
    count = len(org.keys)
    startup = audit_command(bench.ini, "--organization",
                            f"{PREFIX}none-{uuid.uuid4().hex[:8]}")
    assert startup.exit_code == 2, startup.describe()
    times, peaks, ratios = [], [], []
    for _ in range(bench.args.rounds):
        t_base = store_baseline(bench.s3, org.bucket, count)
        run = audit_command(bench.ini, "--grace-hours", "0",
                            "--organization", org.name)
        require_clean(run, "shallow audit of the benchmark organization")
        times.append(run.seconds)
        peaks.append(run.peak_mib)
        ratios.append(run.seconds / t_base)
        print(f"  round: audit {run.describe()}; listing + {count} "
              f"tagging requests {t_base:.1f} s", flush=True)
    print(f"shallow audit of {count} resources: min {min(times):.1f} s, "
          f"median {statistics.median(times):.1f} s (target < 60 s); peak "
          f"RSS max {max(peaks):.0f} MiB (target < 300 MiB); CKAN's start-"
          f"up alone {startup.seconds:.1f} s, {startup.peak_mib:.0f} MiB",
          flush=True)
    base.report("shallow audit / listing + tagging requests (32 threads)",
                ratios, "as low as it goes; the rest is the database, "
                "the disk and CKAN's start-up")


def bench_site(bench: Bench) -> None:
    """The whole dev site, the benchmark's organization included."""
    bench.big_org()
    run = audit_command(bench.ini, "--grace-hours", "0")
    if run.report is None:
        print("\n".join(run.stderr.splitlines()[-20:]), flush=True)
        sys.exit(f"bench: whole-site audit: {run.describe()}")
    summary = ", ".join(f"{n} {kind}"
                        for kind, n in run.report["summary"].items())
    usage = run.report["usage"]
    objects = sum(row["total_objects"] for row in usage.values())
    print(f"whole-site audit of the dev site ({len(usage)} organizations, "
          f"{objects} objects): {run.describe()}"
          + (f" ({summary}; the dev site's own)" if summary else ""),
          flush=True)


def bench_sample(bench: Bench) -> None:
    """``--deep --sample 10`` of the big organization (small objects: the
    figure is the cost per object, not throughput)."""
    org = bench.big_org()
    run = audit_command(bench.ini, "--grace-hours", "0", "--deep",
                        "--sample", "10", "--organization", org.name)
    require_clean(run, "--deep --sample 10")
    assert run.report is not None
    options = run.report["options"]
    print(f"--deep --sample 10 of {len(org.keys)} resources: "
          f"{options['deep_checked']} objects re-hashed "
          f"({options['deep_bytes'] / KiB:.0f} KiB) in {run.seconds:.1f} s,"
          f" peak RSS {run.peak_mib:.0f} MiB", flush=True)


def bench_deep(bench: Bench) -> None:
    """Re-hashing (``--deep``'s check, in this process) vs a plain
    parallel download of the same objects."""
    from ckanext.dcor_depot.operations.audit import deep, scan
    args = bench.args
    org = populate(bench.s3, "deep", 1, args.deep_count, args.deep_size,
                   url_type="s3_upload")
    site = scan.scan_site([org.name])
    records = deep.candidates(site)
    assert len(records) == args.deep_count, len(records)
    # Each of the objects at once with the default TransferConfig's 10
    # threads: as many connections, so the baseline does not queue.
    s3 = pooled_client(deep.OBJECTS_AT_ONCE * 10)
    total = args.deep_count * args.deep_size
    ratios, speeds = [], []
    for _ in range(args.rounds):
        t_plain = base.timed(plain_parallel_download, s3, org.bucket,
                             org.keys, deep.OBJECTS_AT_ONCE)
        start = time.perf_counter()
        result = deep.check_objects(site, records)
        t_deep = time.perf_counter() - start
        assert result.checked == args.deep_count and not result.findings \
            and not result.errors, result
        ratios.append(t_plain / t_deep)
        speeds.append(total / base.MiB / t_deep)
        print(f"  round: plain download {t_plain:.2f} s "
              f"({total / base.MiB / t_plain:.0f} MiB/s), deep check "
              f"{t_deep:.2f} s ({speeds[-1]:.0f} MiB/s)", flush=True)
    base.report(f"deep check speed ({args.deep_count} x "
                f"{args.deep_size / base.MiB:.0f} MiB) / plain parallel "
                f"download_fileobj ({deep.OBJECTS_AT_ONCE} at once)",
                ratios, ">= 0.90",
                f"(deep check median {statistics.median(speeds):.0f} MiB/s)")


FIGURES = {"shallow": bench_shallow, "site": bench_site,
           "sample": bench_sample, "deep": bench_deep}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--only", default=",".join(FIGURES),
                        help="comma-separated figures: " + ", ".join(FIGURES))
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--datasets", type=int, default=100)
    parser.add_argument("--per-dataset", type=int, default=100)
    parser.add_argument("--size", type=int, default=KiB)
    parser.add_argument("--deep-count", type=int, default=20)
    parser.add_argument("--deep-size", type=int, default=32 * base.MiB)
    args = parser.parse_args()
    env = base.load_env()
    bench = Bench(args, env["CKAN_INI"])
    app = base.ckan_app(bench.ini)
    # CKAN logs a line per resource created (missing view plugins).
    logging.disable(logging.WARNING)
    with app._wsgi_app.test_request_context(), kept_report_restored():
        remove_bench_orgs(bench.s3)  # left by a killed run
        try:
            for name in args.only.split(","):
                FIGURES[name.strip()](bench)
        finally:
            remove_bench_orgs(bench.s3)
            base.settle()


if __name__ == "__main__":
    main()
