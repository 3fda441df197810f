"""Benchmarks of verified transfers against the devstack's Ceph gateway.

Run with `make bench` (starts the stack) or, with the stack running,
`.devstack/venv-2.12.0/bin/python benchmarks/run.py [--only NAMES]`.
Every figure is a ratio of two timings measured alternately in one run,
so machine noise hits both sides; each prints min and median over the
rounds, and the target from the performance issue.
"""
from __future__ import annotations

import argparse
import contextlib
import hashlib
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WORK = ROOT / ".devstack" / "bench"
MiB = 2**20
GiB = 2**30


# ------------------------------------------------------------ environment
def load_env() -> dict[str, str]:
    env_file = ROOT / ".devstack" / "env"
    if not env_file.exists():
        sys.exit("bench: .devstack/env is missing: run 'make start' first")
    env = {}
    for line in env_file.read_text().splitlines():
        if line.startswith("export "):
            key, _, value = line[len("export "):].partition("=")
            env[key] = value.strip("'")
    return env


def ckan_app(ini: str):
    """CKAN's app (config and plugins loaded) for the plugin's modules."""
    from ckan.cli import load_config
    from ckan.config.middleware import make_app
    return make_app(load_config(ini))


def plain_client():
    """A boto3 client as a user would make one: defaults, path style."""
    import boto3
    import botocore.config
    env = load_env()
    return boto3.client(
        "s3", endpoint_url=env["S3_ENDPOINT"], region_name="us-east-1",
        aws_access_key_id=env["S3_ACCESS_KEY_ID"],
        aws_secret_access_key=env["S3_SECRET_ACCESS_KEY"],
        config=botocore.config.Config(
            s3={"addressing_style": "path"},
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required"))


def random_file(path: Path, size: int) -> Path:
    if path.exists() and path.stat().st_size == size:
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    block = 16 * MiB
    with open(path, "wb") as fd:
        left = size
        while left:
            n = min(block, left)
            fd.write(os.urandom(n))
            left -= n
    return path


def timed(func, *args, **kwargs) -> float:
    start = time.perf_counter()
    func(*args, **kwargs)
    return time.perf_counter() - start


def report(name: str, ratios: list[float], target: str,
           detail: str = "") -> None:
    print(f"{name}: ratio min {min(ratios):.2f} median "
          f"{statistics.median(ratios):.2f} over {len(ratios)} rounds "
          f"(target {target}){' ' + detail if detail else ''}", flush=True)


def bench_ini(env: dict[str, str]) -> str:
    """The devstack's ckan.ini under another site id, so that the running
    worker does not pick up the jobs of benchmark resources."""
    path = WORK / "bench.ini"
    path.write_text(f"[app:main]\nuse = config:{env['CKAN_INI']}\n"
                    "ckan.site_id = dcor-bench\n")
    return str(path)


@contextlib.contextmanager
def background_worker(ini: str):
    """A worker of the benchmark site, as every DCOR site runs them (the
    migration hands search-index updates to it)."""
    from ckanext.dcor_depot.records import search_index
    ckan = Path(sys.executable).with_name("ckan")
    with open(WORK / "worker.log", "ab") as log:
        proc = subprocess.Popen(
            [str(ckan), "-c", ini, "jobs", "worker", search_index.QUEUE],
            stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 120
        while not search_index.worker_listens():
            if proc.poll() is not None or time.monotonic() > deadline:
                sys.exit(f"bench: the worker did not start, see {log.name}")
            time.sleep(0.2)
        yield
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def job_outcome(job_id: str, deadline: float,
                poll: float = 0.01) -> str | None:
    """Status of a job once it finished or failed; None if it did not
    end before ``deadline`` (``time.monotonic()``). Raises rq's
    NoSuchJobError for an unknown job."""
    from ckan.lib import jobs
    from rq.job import Job, JobStatus
    job = Job.fetch(job_id, connection=jobs.connect_to_redis())
    while (status := job.get_status()) not in (JobStatus.FINISHED,
                                               JobStatus.FAILED):
        if time.monotonic() > deadline:
            return None
        time.sleep(poll)
    return status


def wait_for_jobs(job_ids: list[str], timeout: float = 300) -> None:
    """Wait until the worker has done the jobs."""
    from rq.job import JobStatus
    deadline = time.monotonic() + timeout
    for job_id in job_ids:
        status = job_outcome(job_id, deadline)
        if status != JobStatus.FINISHED:
            sys.exit(f"bench: job {job_id} did not finish ({status})")


def resources_on_block_storage(files: list[Path],
                               per_dataset: int = 30) -> list[str]:
    """Datasets whose resources' files lie on block storage (hard links of
    ``files``), not yet in the object store. Returns the resource ids."""
    import ckan.plugins.toolkit as tk

    from ckanext.dcor_depot.records.ckan_data import site_context
    from ckanext.dcor_depot.storage import layout

    def action(action_name, **data):
        return tk.get_action(action_name)(site_context(), data)
    org = action("organization_create", name=f"bench-{uuid.uuid4().hex}")
    rids = []
    for start in range(0, len(files), per_dataset):
        chunk = files[start:start + per_dataset]
        ds = action("package_create", name=f"bench-{uuid.uuid4().hex}",
                    owner_org=org["id"], private=True, resources=[
                        {"name": p.name, "url": p.name,
                         "url_type": "upload"} for p in chunk])
        for res, path in zip(ds["resources"], chunk, strict=True):
            target = layout.ckan_upload_path(res["id"])
            target.parent.mkdir(parents=True, exist_ok=True)
            os.link(path, target)
            rids.append(res["id"])
    return rids


def remove_local_files(rids: list[str]) -> None:
    """Delete the block-storage files of benchmark resources: hard links
    of the benchmark's files, which would otherwise keep gigabytes."""
    from ckanext.dcor_depot.storage import layout
    for rid in rids:
        layout.ckan_upload_path(rid).unlink(missing_ok=True)


def remove_uploaded_file(rid: str, timeout: float = 120) -> None:
    """Delete the depot file of a resource uploaded through the API, once
    the site's worker has run its last job (the backup job would fetch a
    missing file back from the store)."""
    from rq.job import NoSuchJobError

    from ckanext.dcor_depot.operations import jobs
    from ckanext.dcor_depot.operations.migrate import delete_local_file
    from ckanext.dcor_depot.storage import layout
    backup_job = jobs.job_id(rid, jobs.BACKUP_S3)
    try:
        if job_outcome(backup_job, time.monotonic() + timeout,
                       poll=0.1) is None:
            print(f"  (resource {rid}: its jobs did not finish; its file "
                  "is kept)", flush=True)
            return
    except NoSuchJobError:
        pass  # no backup job: nothing will look for the file
    delete_local_file(layout.ckan_upload_path(rid))


def benchmark_records(rids: list[str]) -> list:
    """The inventory records of the benchmark's resources ``rids``, as
    the migration command lists them (``ResourceRecord``)."""
    import ckan.model as model

    from ckanext.dcor_depot.records import inventory
    wanted = set(rids)
    # The command lists every resource of the site; the benchmark's site
    # collects resources run after run, so list the benchmark's datasets.
    dataset_ids = {row[0] for row in model.Session.query(
        model.Resource.package_id).filter(model.Resource.id.in_(rids))}
    return [r for dataset_id in sorted(dataset_ids)
            for r in inventory.resource_records(dataset_id=dataset_id)
            if r.id in wanted]


def migrate(rids: list[str], jobs: int) -> list[str]:
    """What `dcor-migrate-resources-to-object-store --jobs N` does;
    returns the ids of the search-index jobs it queued."""
    from ckanext.dcor_depot.operations.migrate import (
        MigrationOptions,
        Status,
        migrate_resources,
    )
    records = benchmark_records(rids)
    failed = []

    def on_result(outcome):
        if outcome.status is not Status.UPLOADED:
            failed.append(outcome.describe())
    index = migrate_resources(records, MigrationOptions(), on_result,
                              jobs=jobs)
    if failed or len(records) != len(rids):
        sys.exit(f"bench: migration failed: {failed[:3]}")
    return index.job_ids


# ------------------------------------------------------------- algorithms
def plain_upload(s3, files: list[Path], bucket: str) -> None:
    for path in files:
        s3.upload_file(str(path), bucket, f"plain/{uuid.uuid4()}")


def reference_upload(s3, files: list[Path], bucket: str) -> None:
    """The reference algorithm: hash, upload, download in 1 MiB ranges."""
    for path in files:
        sha = hashlib.sha256()
        with open(path, "rb") as fd:
            while chunk := fd.read(MiB):
                sha.update(chunk)
        key = f"reference/{uuid.uuid4()}"
        s3.upload_file(str(path), bucket, key)
        size = path.stat().st_size
        remote = hashlib.sha256()
        for start in range(0, size, MiB):
            end = min(start + MiB, size) - 1
            body = s3.get_object(Bucket=bucket, Key=key,
                                 Range=f"bytes={start}-{end}")["Body"]
            remote.update(body.read())
        assert remote.hexdigest() == sha.hexdigest()


# ---------------------------------------------------------------- figures
def bench_large(args, s3, bucket: str) -> None:
    files = [random_file(WORK / f"large-{i}.bin", args.large_size)
             for i in range(2)]
    verified_vs_plain, reference_vs_verified = [], []
    for _ in range(args.rounds):
        rids = resources_on_block_storage(files)
        t_plain = timed(plain_upload, s3, files, bucket)
        start = time.perf_counter()
        index_jobs = migrate(rids, args.jobs)
        t_verified = time.perf_counter() - start
        wait_for_jobs(index_jobs)  # not timed: the worker's, not ours
        t_reference = timed(reference_upload, s3, files, bucket)
        verified_vs_plain.append(t_verified / t_plain)
        reference_vs_verified.append(t_reference / t_verified)
        empty_buckets(s3, bucket)
        remove_local_files(rids)
        print(f"  round: plain {t_plain:.1f} s, verified {t_verified:.1f} s,"
              f" reference {t_reference:.1f} s", flush=True)
    size = f"2 x {args.large_size / GiB:.2f} GiB"
    report(f"large files ({size}) verified migration / plain upload_file",
           verified_vs_plain, "<= 1.10")
    report(f"large files ({size}) reference algorithm / verified "
           "migration",
           reference_vs_verified, ">= 2.5")


def bench_deep(args, s3, bucket: str) -> None:
    from ckanext.dcor_depot.storage import transfer
    files = [random_file(WORK / f"large-{i}.bin", args.large_size)
             for i in range(2)]
    keys = [f"deep/{i}" for i in range(2)]
    for path, key in zip(files, keys, strict=True):
        s3.upload_file(str(path), bucket, key)
    ratios = []
    for _ in range(args.rounds):
        with tempfile.TemporaryDirectory(dir=WORK) as tmp:
            t_plain = timed(lambda: [s3.download_file(
                bucket, key, os.path.join(tmp, key.replace("/", "_")))
                for key in keys])
        t_deep = timed(lambda: [transfer.object_sha256(bucket, key)
                                for key in keys])
        ratios.append(t_deep / t_plain)
        print(f"  round: download_file {t_plain:.1f} s, deep check "
              f"{t_deep:.1f} s", flush=True)
    empty_buckets(s3, bucket)
    report(f"deep check ({2 * args.large_size / GiB:.2f} GiB) / plain "
           "download_file", ratios, "<= 1.25")


def bench_small(args, s3, bucket: str) -> None:
    files = [random_file(WORK / "small" / f"{i:03d}.bin", 256 * 1024)
             for i in range(args.small_count)]
    ratios, index_lags = [], []
    for _ in range(args.rounds):
        rids = resources_on_block_storage(files)
        t_plain = timed(plain_upload, s3, files, bucket)
        start = time.perf_counter()
        index_jobs = migrate(rids, args.jobs)
        t_jobs = time.perf_counter() - start
        wait_for_jobs(index_jobs)
        index_lags.append(time.perf_counter() - start - t_jobs)
        ratios.append(t_jobs / t_plain)
        empty_buckets(s3, bucket)
        remove_local_files(rids)
        print(f"  round: sequential upload_file {t_plain:.1f} s, migration "
              f"with --jobs {args.jobs} {t_jobs:.1f} s, search index "
              f"current {index_lags[-1]:.2f} s later", flush=True)
    report(f"{args.small_count} small resources (256 KiB) migration --jobs "
           f"{args.jobs} / sequential plain", ratios, "<= 0.5",
           "(search index current a median "
           f"{statistics.median(index_lags):.2f} s after the command)")


def bench_rss(args, s3, bucket: str) -> None:
    path = random_file(WORK / "rss.bin", args.rss_size)
    # The child reports its own high-water mark: the parent's view of a
    # child's peak also counts the pages it shared before exec().
    child = subprocess.run([sys.executable, __file__, "--rss-child",
                            str(path), "--bucket", bucket], check=True,
                           capture_output=True, text=True)
    peak = int(child.stdout.split("VmHWM_KiB=")[1].split()[0]) / 1024
    path.unlink()
    empty_buckets(s3, bucket)
    size = args.rss_size / GiB
    print(f"peak RSS of a verified migration of {size:.1f} GiB: "
          f"{peak:.0f} MiB (target < 300 MiB, includes CKAN itself)",
          flush=True)


def rss_child(path: str, bucket: str) -> None:
    env = load_env()
    with ckan_app(bench_ini(env))._wsgi_app.test_request_context():
        rids = resources_on_block_storage([Path(path)])
        migrate(rids, jobs=4)
        remove_local_files(rids)
    status = Path("/proc/self/status").read_text()
    hwm = status.split("VmHWM:")[1].split()[0]
    print(f"VmHWM_KiB={hwm}")


def ckan_api(timeout: float):
    """``(session, API URL, action(name, **data) -> result)`` of the dev
    site, as its sysadmin."""
    import requests
    env = load_env()
    session = requests.Session()
    session.headers["Authorization"] = env["CKAN_API_TOKEN"]
    api = f"{env['CKAN_URL']}/api/3/action"

    def action(action_name, **data):
        body = session.post(f"{api}/{action_name}", json=data,
                            timeout=timeout).json()
        assert body["success"], body
        return body["result"]
    return session, api, action


def bench_e2e(args, s3, bucket: str) -> None:
    session, api, action = ckan_api(timeout=60)
    suffix = uuid.uuid4().hex[:8]
    org = action("organization_create", name=f"bench-{suffix}")
    path = random_file(WORK / "e2e.bin", args.e2e_size)
    ratios = []
    for i in range(args.rounds):
        ds = action("package_create", name=f"bench-{suffix}-{i}",
                    owner_org=org["id"], private=True)
        start = time.perf_counter()
        with open(path, "rb") as fd:
            resp = session.post(f"{api}/resource_create",
                                data={"package_id": ds["id"],
                                      "name": "e2e.bin"},
                                files={"upload": ("e2e.bin", fd)},
                                timeout=600).json()
        t_post = time.perf_counter() - start
        rid = resp["result"]["id"]
        while not action("resource_show", id=rid).get("s3_available"):
            if time.perf_counter() - start > 600:
                sys.exit("bench: the resource never became s3_available")
            time.sleep(0.05)
        t_total = time.perf_counter() - start
        t_plain = timed(s3.upload_file, str(path), bucket,
                        f"e2e/{uuid.uuid4()}")
        ratios.append(t_total / (1.5 * t_post + 2))
        empty_buckets(s3, bucket)
        remove_uploaded_file(rid)
        print(f"  round: POST {t_post:.1f} s, until s3_available "
              f"{t_total:.1f} s, plain upload_file {t_plain:.1f} s",
              flush=True)
    report(f"end-to-end {args.e2e_size / MiB:.0f} MiB upload until "
           "s3_available / (1.5 x upload POST + 2 s)", ratios, "<= 1.0")


def bench_job_cost(args, s3, bucket: str) -> None:
    """The S3 upload job of one small resource in a dataset of 3
    resources vs one of ``--job-cost-count``: recording the result must
    not cost more as the dataset grows (atomic merge of the resource's
    fields, search index updated by one coalesced job)."""
    from ckanext.dcor_depot.operations import jobs
    source = random_file(WORK / "job-cost.bin", 64 * 1024)
    sizes = (3, args.job_cost_count)
    seconds: dict[int, list[float]] = {n: [] for n in sizes}
    ratios = []
    for _ in range(args.rounds):
        for n in sizes:
            rids = resources_on_block_storage([source] * n, per_dataset=n)
            # three resources of the dataset, each its own job run
            runs = [timed(jobs.UPLOAD_S3.func, rid) for rid in rids[:3]]
            seconds[n].append(statistics.median(runs))
            remove_local_files(rids)
        ratios.append(seconds[sizes[1]][-1] / seconds[sizes[0]][-1])
    detail = ", ".join(
        f"{n} resources: median {statistics.median(seconds[n]):.2f} s"
        for n in sizes)
    report(f"S3 job in a dataset of {sizes[1]} vs {sizes[0]} resources",
           ratios, "<= 1.3", detail)


def bench_visibility(args, s3, bucket: str) -> None:
    """A click on "public"/"private" of a dataset of many resources: from
    the start of package_patch until every object answers anonymous GETs
    with the new status. The baseline is the least the store needs: one
    tagging request per object, 16 at once, from a plain client."""
    from concurrent.futures import ThreadPoolExecutor

    import requests

    from ckanext.dcor_depot.storage import layout, object_store
    _, _, action = ckan_api(timeout=600)
    suffix = uuid.uuid4().hex[:8]
    org = action("organization_create", name=f"bench-{suffix}")
    org_bucket = object_store.bucket_name(org["id"])
    object_store.ensure_bucket(org_bucket)
    rids = [str(uuid.uuid4()) for _ in range(args.visibility_count)]
    keys = [layout.object_key(rid) for rid in rids]
    pool = ThreadPoolExecutor(16)
    list(pool.map(lambda key: s3.put_object(Bucket=org_bucket, Key=key,
                                            Body=b"bench"), keys))
    ds = action("package_create", name=f"bench-{suffix}-visibility",
                owner_org=org["id"], private=True, resources=[
                    {"id": rid, "name": f"r{i}", "url": "https://x.org/r",
                     "s3_available": True,
                     "s3_url": object_store.object_url(org_bucket, key)}
                    for i, (rid, key)
                    in enumerate(zip(rids, keys, strict=True))])
    urls = [object_store.object_url(org_bucket, key) for key in keys]
    anonymous = requests.Session()
    adapter = requests.adapters.HTTPAdapter(pool_maxsize=16)
    anonymous.mount("http://", adapter)

    def until_all(status: int, start: float, answered: float) -> float:
        """Seconds from ``start`` until every object answers ``status``.

        The plugin tags before the response; if the first check after the
        response finds every object changed, they changed by then (the
        check itself, 300 GETs, is not counted); otherwise the time runs
        until the check that finds the last one changed.
        """
        waiting, first = list(urls), True
        while waiting:
            codes = list(pool.map(
                lambda u: anonymous.get(u, timeout=30).status_code, waiting))
            waiting = [u for u, c in zip(waiting, codes, strict=True)
                       if c != status]
            if first and not waiting:
                return answered - start
            first = False
            if time.perf_counter() - start > 300:
                sys.exit("bench: objects never reached the new status")
        return time.perf_counter() - start

    def baseline() -> float:
        def tag(key: str, public: bool) -> None:
            if public:
                s3.put_object_tagging(Bucket=org_bucket, Key=key, Tagging={
                    "TagSet": [{"Key": "public", "Value": "true"}]})
            else:
                s3.delete_object_tagging(Bucket=org_bucket, Key=key)
        start = time.perf_counter()
        list(pool.map(lambda k: tag(k, True), keys))
        list(pool.map(lambda k: tag(k, False), keys))
        return (time.perf_counter() - start) / 2

    public_s, private_s, ratios = [], [], []
    for i in range(args.rounds):
        base = baseline()
        # The same request without a visibility change: CKAN's own share.
        ckan_only = timed(action, "package_patch", id=ds["id"],
                          title=f"round {i}")
        start = time.perf_counter()
        action("package_patch", id=ds["id"], private=False)
        public_s.append(until_all(200, start, time.perf_counter()))
        start = time.perf_counter()
        action("package_patch", id=ds["id"], private=True)
        private_s.append(until_all(403, start, time.perf_counter()))
        ratios += [public_s[-1] / base, private_s[-1] / base]
        print(f"  round: public {public_s[-1]:.2f} s, private "
              f"{private_s[-1]:.2f} s; plain tagging {base:.2f} s, "
              f"package_patch of the title {ckan_only:.2f} s", flush=True)
    pool.shutdown()
    for name, figures in (("public", public_s), ("private", private_s)):
        print(f"visibility of {len(rids)} resources, made {name}: min "
              f"{min(figures):.2f} s, median {statistics.median(figures):.2f}"
              f" s (target <= 2 s)", flush=True)
    report("visibility click / plain tagging of the same objects", ratios,
           "as low as it goes; the rest is CKAN's own package_patch")


FIGURES = {"large": bench_large, "deep": bench_deep, "small": bench_small,
           "rss": bench_rss, "e2e": bench_e2e,
           "visibility": bench_visibility, "jobcost": bench_job_cost}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--only", default=",".join(FIGURES),
                        help="comma-separated figures: " + ", ".join(FIGURES))
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--large-size", type=int, default=GiB)
    parser.add_argument("--small-count", type=int, default=300)
    parser.add_argument("--jobs", type=int, default=16)
    parser.add_argument("--rss-size", type=int, default=4 * GiB)
    parser.add_argument("--e2e-size", type=int, default=256 * MiB)
    parser.add_argument("--visibility-count", type=int, default=300)
    parser.add_argument("--job-cost-count", type=int, default=300)
    parser.add_argument("--rss-child", help=argparse.SUPPRESS)
    parser.add_argument("--bucket", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.rss_child:
        rss_child(args.rss_child, args.bucket)
        return
    run_figures(FIGURES, args, with_worker=True)


def purge_benchmark_records() -> None:
    """Purge the organizations ``bench-*`` and their datasets (but those
    of benchmarks/audit.py, which cleans up its own): their data are
    deleted above, and resources left without data would be findings of
    every later audit of the dev site (``make demo`` runs one)."""
    import ckan.model as model
    import ckan.plugins.toolkit as tk

    user = tk.get_action("get_site_user")({"ignore_auth": True}, {})
    orgs = (model.Session.query(model.Group.id, model.Group.name)
            .filter(model.Group.is_organization.is_(True))
            .filter(model.Group.name.like("bench-%")).all())
    for org_id, name in orgs:
        if name.startswith("bench-audit-"):
            continue
        datasets = [row.id for row in model.Session.query(model.Package.id)
                    .filter(model.Package.owner_org == org_id)]
        for dataset_id in datasets:
            tk.get_action("dataset_purge")(
                {"user": user["name"], "ignore_auth": True},
                {"id": dataset_id})
        tk.get_action("organization_purge")(
            {"user": user["name"], "ignore_auth": True}, {"id": org_id})


def benchmark_buckets(bench_bucket: str) -> set[str]:
    """The benchmark's own bucket and those of its organizations."""
    import ckan.model as model

    from ckanext.dcor_depot.storage import object_store
    return {bench_bucket} | {
        object_store.bucket_name(org.id) for org in model.Session.query(
            model.Group).filter(model.Group.name.like("bench-%"))}


def empty_buckets(s3, bench_bucket: str, remove: bool = False) -> None:
    """Delete the benchmark's objects: the store's block file never
    shrinks, but the space of deleted objects is reused."""
    for bucket in benchmark_buckets(bench_bucket):
        try:
            pages = s3.get_paginator("list_objects_v2").paginate(
                Bucket=bucket)
            for page in pages:
                keys = [{"Key": o["Key"]} for o in page.get("Contents", [])]
                if keys:
                    s3.delete_objects(Bucket=bucket,
                                      Delete={"Objects": keys})
            if remove:
                s3.delete_bucket(Bucket=bucket)
        except s3.exceptions.NoSuchBucket:
            pass


def settle() -> None:
    """Let the store finish deleting a figure's objects before the next
    figure: the gateway's garbage collector would otherwise free gigabytes
    while the next figure is measured. Needs the devstack's Ceph."""
    conf = ROOT / ".devstack" / "ceph" / "ceph.conf"
    if not conf.exists() or not shutil.which("radosgw-admin"):
        return
    subprocess.run(["radosgw-admin", "-c", str(conf), "gc", "process",
                    "--include-all"], check=False, capture_output=True,
                   timeout=600)
    time.sleep(2)


def delete_benchmark_objects(s3, bench_bucket: str) -> None:
    """Remove the benchmark's buckets and files (not the site's data)."""
    empty_buckets(s3, bench_bucket, remove=True)
    shutil.rmtree(WORK / "small", ignore_errors=True)
    for path in WORK.glob("*.bin"):
        path.unlink()


def run_figures(figures: dict, args, with_worker: bool = False) -> None:
    """Run the named figures (``args.only``) in CKAN's app context, with
    a scratch bucket (and the benchmark site's own worker if asked), and
    clean up after them."""
    env = load_env()
    WORK.mkdir(parents=True, exist_ok=True)
    app = ckan_app(bench_ini(env))
    s3 = plain_client()
    bucket = f"bench-{uuid.uuid4().hex[:12]}"
    with contextlib.ExitStack() as stack:
        stack.enter_context(app._wsgi_app.test_request_context())
        if with_worker:
            stack.enter_context(background_worker(bench_ini(env)))
        from ckanext.dcor_depot.storage import object_store
        object_store.ensure_bucket(bucket)
        try:
            for name in args.only.split(","):
                figures[name.strip()](args, s3, bucket)
                settle()
        finally:
            # The store's block file never shrinks, but freed space is
            # reused: delete what the benchmark stored.
            delete_benchmark_objects(s3, bucket)
            purge_benchmark_records()


def wait_for_sha256(action, resource_id: str) -> float:
    """Seconds until the site's job has recorded the resource's sha256."""
    start = time.perf_counter()
    while not action("resource_show", id=resource_id).get("sha256"):
        if time.perf_counter() - start > 900:
            sys.exit("bench: sha256 was never recorded")
        time.sleep(0.05)
    return time.perf_counter() - start


def download_seconds(s3, s3_url: str) -> float:
    """Seconds a plain ``download_file`` of the object takes."""
    from ckanext.dcor_depot.storage import object_store
    where = object_store.parse_object_url(s3_url)
    assert where is not None
    target = WORK / "plain-download.bin"
    seconds = timed(s3.download_file, where[0], where[1], str(target))
    target.unlink()
    return seconds


if __name__ == "__main__":
    main()
