"""A large site against the dev stack (issue 25): 100,000 resources.

Run with `make bench-large` or, with the stack running (`make start`,
web server included), `.devstack/venv-2.12.0/bin/python
benchmarks/large_site.py`; try it small: `--resources 2000 --datasets 20`.

The site: ``--organizations`` organizations ``large-bench-*`` (a bucket
each: no bucket index holds more than its share), ``--datasets``
datasets round robin, every other one of each public. The first
dataset, ``...-visibility``, has ``--visibility-resources`` resources
(default 1,000) and starts private; the others share the rest. Every
resource is an ``upload`` resource as a migration with
``--delete-after-migration`` leaves it: a 1 KiB object (tagged
``public=true`` in public datasets), ``s3_available``, ``s3_url``,
``sha256`` and ``size``, no local file. The objects are stored with
parallel PUTs; each dataset is made with ``package_create`` and its
resource rows are inserted in one statement (no job, no tagging). The
datasets and resources are dated 60 days back, as on a site whose data
are older than a rolling audit's window.

Measured, each figure printed with its goal and PASS or MISS:

- ``audit``: ``ckan dcor-depot-audit --json --grace-hours 0`` of the
  whole site in a child process: wall time and the child's peak RSS;
- ``rolling``: ``ckan dcor-depot-audit --json --grace-hours 0 --rolling
  7`` (wall time, peak RSS; "rolling: not available" if the option is
  missing);
- ``page``: GET ``/ckan-admin/dcor-depot`` with the dev site's sysadmin
  token, once and then ``--rounds`` times (the median of those);
- ``list``: ``ckan list-all-resources`` (no goal: the figure only);
- ``verify``: ``ckan dcor-migrate-resources-to-object-store
  --verify-existence`` of the whole site, nothing to do; its start-up is
  the same command with ``--modified-days 0`` (only datasets changed
  today, which excludes the benchmark's), and the time per resource is
  the difference divided by the difference of resources seen;
- ``visibility``: ``package_patch`` of the 1,000-resource dataset over
  HTTP (``private`` toggled, both ways, ``--rounds`` times), from the
  request until every object answers an anonymous GET as it should (the
  plugin tags after the commit, inside the request).

The site (organizations, datasets, activities, objects, buckets) is
removed at the end unless ``--keep``; a later run reuses a kept site of
the same shape, removes any other (one a killed run left). The dev
site's kept audit report is put back.
"""
from __future__ import annotations

import argparse
import datetime
import logging
import os
import re
import statistics
import sys
import time
import uuid
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import audit  # the builder and helpers of benchmarks/audit.py
import run as base  # the shared helpers of benchmarks/run.py

PREFIX = "large-bench-"
KiB = audit.KiB
#: The datasets and resources are dated this far back.
AGE = datetime.timedelta(days=60)
MIGRATE = ("dcor-migrate-resources-to-object-store", "--verify-existence")
PROGRESS = re.compile(r"^\[\d+/\d+\] ")
#: Objects stored at once (two datasets' PUTs of 32 threads each overlap).
PUT_THREADS = 32


@dataclass
class Site:
    org_ids: list[str]
    datasets: int
    resources: int
    visibility_id: str | None


@dataclass
class Bench:
    args: argparse.Namespace
    env: dict[str, str]
    s3: Any
    site: Site | None = None
    results: list[str] = field(default_factory=list)

    @property
    def ini(self) -> str:
        return self.env["CKAN_INI"]

    def result(self, name: str, figure: str, goal: str,
               met: bool | None) -> None:
        verdict = {True: "PASS", False: "MISS", None: "-"}[met]
        line = f"{name}: {figure} (goal: {goal}) {verdict}"
        self.results.append(line)
        print(line, flush=True)


# ------------------------------------------------------------- the site
def dataset_sizes(resources: int, datasets: int, first: int) -> list[int]:
    """Resources per dataset: ``first`` (at most what leaves one for each
    other dataset) in the first one, the rest shared evenly."""
    if datasets == 1:
        return [resources]
    first = max(1, min(first, resources - (datasets - 1)))
    share, extra = divmod(resources - first, datasets - 1)
    return [first] + [share + (n < extra) for n in range(datasets - 1)]


def insert_dataset(org: audit.BenchOrg, name: str, public: bool,
                   bodies: dict[str, bytes], dated: datetime.datetime
                   ) -> None:
    """The dataset through CKAN's action, its resources in one insert (no
    ORM flush: neither the plugin's tagging nor its jobs run)."""
    import ckan.model as model
    dataset = audit.action("package_create", name=name, owner_org=org.id,
                           private=not public)
    rows = []
    for position, (rid, body) in enumerate(bodies.items()):
        res = audit.resource_dict(org, rid, body, "upload")
        rows.append({
            "id": rid, "package_id": dataset["id"], "position": position,
            "name": res["name"], "url": res["url"], "url_type": "upload",
            "format": "RT-DC", "size": res["size"], "state": "active",
            "created": dated, "metadata_modified": dated,
            "extras": {key: res[key]
                       for key in ("s3_available", "s3_url", "sha256")}})
    model.Session.execute(model.resource_table.insert(), rows)
    model.Session.commit()


def backdate(org_ids: list[str], dated: datetime.datetime) -> None:
    import ckan.model as model
    pkg = model.package_table
    model.Session.execute(pkg.update().where(pkg.c.owner_org.in_(org_ids))
                          .values(metadata_created=dated,
                                  metadata_modified=dated))
    model.Session.commit()


def build_site(s3, args: argparse.Namespace) -> None:
    """Objects stored by a pool (the next dataset's rows are written
    meanwhile), progress printed about 20 times."""
    sizes = dataset_sizes(args.resources, args.datasets,
                          args.visibility_resources)
    orgs = [audit.new_org(f"{n:02d}", prefix=PREFIX)
            for n in range(args.organizations)]
    dated = datetime.datetime.utcnow() - AGE
    start, done = time.perf_counter(), 0
    every = max(1, len(sizes) // 20)
    print(f"building {args.resources} resources in {len(sizes)} datasets "
          f"of {len(orgs)} organizations", flush=True)
    with ThreadPoolExecutor(2) as putter:
        pending: list[Future] = []
        for n, size in enumerate(sizes):
            org = orgs[n % len(orgs)]
            # Every other dataset of each organization; the first, the
            # visibility one, private.
            public = (n // len(orgs)) % 2 == 1
            bodies = {str(uuid.uuid4()): os.urandom(KiB)
                      for _ in range(size)}
            pending.append(putter.submit(audit.store_objects, s3, org,
                                         bodies, public, PUT_THREADS))
            name = f"{org.name}-visibility" if n == 0 else \
                f"{org.name}-{n:05d}"
            insert_dataset(org, name, public, bodies, dated)
            while len(pending) > 1:
                pending.pop(0).result()
            done += size
            if (n + 1) % every == 0 or n + 1 == len(sizes):
                seconds = time.perf_counter() - start
                print(f"  {n + 1}/{len(sizes)} datasets, {done} resources "
                      f"in {seconds:.0f} s ({done / seconds:.0f}/s)",
                      flush=True)
        for future in pending:
            future.result()
    backdate([org.id for org in orgs], dated)


def find_site() -> Site | None:
    """The benchmark's site as the database has it (None: none)."""
    import ckan.model as model
    import sqlalchemy as sa
    org_ids = [org_id for org_id, _ in audit.bench_orgs(PREFIX)]
    if not org_ids:
        return None
    pkg, res = model.package_table, model.resource_table
    mine = sa.and_(pkg.c.owner_org.in_(org_ids), pkg.c.state == "active")
    datasets = model.Session.execute(
        sa.select(sa.func.count()).select_from(pkg).where(mine)).scalar()
    resources = model.Session.execute(
        sa.select(sa.func.count()).select_from(
            res.join(pkg, pkg.c.id == res.c.package_id))
        .where(mine, res.c.state == "active")).scalar()
    visibility = model.Session.execute(
        sa.select(pkg.c.id).where(mine, pkg.c.name.endswith(
            "-visibility"))).scalars().first()
    return Site(org_ids, int(datasets or 0), int(resources or 0),
                visibility)


def prepare_site(bench: Bench) -> Site:
    """A kept site of the requested shape, else a new one."""
    args, site = bench.args, find_site()
    wanted = (args.organizations, args.datasets, args.resources)
    if site is not None and site.visibility_id and wanted == (
            len(site.org_ids), site.datasets, site.resources):
        print(f"reusing the kept site: {site.resources} resources in "
              f"{site.datasets} datasets", flush=True)
        return site
    if site is not None:
        print("removing the benchmark's earlier site", flush=True)
        audit.remove_bench_orgs(bench.s3, PREFIX)
    start = time.perf_counter()
    build_site(bench.s3, args)
    site = find_site()
    assert site is not None and site.resources == args.resources, site
    print(f"site built in {time.perf_counter() - start:.0f} s", flush=True)
    return site


# --------------------------------------------------------------- figures
def bench_audit(bench: Bench) -> None:
    startup = audit.audit_command(
        bench.ini, "--organization", f"{PREFIX}none-{uuid.uuid4().hex[:8]}")
    run = audit.audit_command(bench.ini, "--grace-hours", "0")
    goal = "<= 10 min and < 500 MiB peak RSS"
    if run.report is None:
        print("\n".join(run.stderr.splitlines()[-20:]), flush=True)
        bench.result("full shallow audit", run.describe(), goal, False)
        return
    found = run.report["findings"]
    mine = [f for f in found
            if str(f.get("organization", "")).startswith(PREFIX)]
    for finding in mine[:10]:
        print(f"  finding of the benchmark's site: {finding}", flush=True)
    objects = sum(row["total_objects"]
                  for row in run.report["usage"].values())
    complete = run.exit_code != 2
    bench.result(
        f"full shallow audit ({objects} objects; {len(mine)} findings in "
        f"the benchmark's organizations, {len(found) - len(mine)} the dev "
        f"site's own{'' if complete else '; INCOMPLETE'})",
        f"{run.seconds:.0f} s, peak RSS {run.peak_mib:.0f} MiB (CKAN's "
        f"start-up alone {startup.seconds:.1f} s, {startup.peak_mib:.0f} "
        "MiB)", goal,
        complete and run.seconds <= 600 and run.peak_mib < 500)


def bench_rolling(bench: Bench) -> None:
    """As an operator's daily run, but with ``--grace-hours 0`` as the
    full audit: the benchmark's objects are minutes old, a real site's
    are not."""
    run = audit.audit_command(bench.ini, "--grace-hours", "0",
                              "--rolling", "7")
    if run.exit_code == 2 and "no such option" in run.stderr.lower():
        print("rolling: not available", flush=True)
        bench.results.append("rolling: not available")
        return
    if run.report is None:
        print("\n".join(run.stderr.splitlines()[-20:]), flush=True)
    else:
        print(f"  rolling run's options: {run.report['options']}",
              flush=True)
    bench.result("rolling audit (--rolling 7)", run.describe(),
                 "<= 2 min", run.report is not None
                 and run.exit_code != 2 and run.seconds <= 120)


def bench_page(bench: Bench) -> None:
    import requests
    url = f"{bench.env['CKAN_URL']}/ckan-admin/dcor-depot"
    session = requests.Session()
    session.headers["Authorization"] = bench.env["CKAN_API_TOKEN"]
    times = []
    for _ in range(bench.args.rounds + 1):
        start = time.perf_counter()
        response = session.get(url, timeout=300, allow_redirects=False)
        times.append(time.perf_counter() - start)
        if response.status_code != 200:
            bench.result("operator page", f"HTTP {response.status_code}",
                         "< 1 s", False)
            return
    later = times[1:]
    bench.result(
        "operator page /ckan-admin/dcor-depot",
        f"median {statistics.median(later) * 1000:.0f} ms, max "
        f"{max(later) * 1000:.0f} ms over {len(later)} requests (the first "
        f"{times[0] * 1000:.0f} ms)", "< 1 s",
        statistics.median(later) < 1)


def bench_list(bench: Bench) -> None:
    seconds, peak, child = audit.ckan_command(bench.ini,
                                              "list-all-resources")
    said = re.search(r"list-all-resources: (\d+) resources", child.stderr)
    count = int(said.group(1)) if said else len(child.stdout.split())
    if child.returncode:
        print(child.stderr[-2000:], flush=True)
    bench.result("list-all-resources",
                 f"{count} ids in {seconds:.1f} s, peak RSS {peak:.0f} MiB,"
                 f" exit {child.returncode}", "none (figure only)", None)


def migration(ini: str, *options: str) -> tuple[float, int, str, int]:
    """``(seconds, resources seen, summary line, exit status)`` of the
    no-op migration run."""
    seconds, _, child = audit.ckan_command(ini, *MIGRATE, *options)
    lines = child.stdout.splitlines()
    seen = sum(1 for line in lines if PROGRESS.match(line))
    summary = next((line for line in reversed(lines)
                    if line.startswith(MIGRATE[0])), "no summary line")
    if child.returncode:
        print("\n".join(child.stderr.splitlines()[-20:]), flush=True)
    return seconds, seen, summary, child.returncode


def bench_verify(bench: Bench) -> None:
    t_start, n_start, _, _ = migration(bench.ini, "--modified-days", "0")
    seconds, seen, summary, code = migration(bench.ini)
    print(f"  {summary}", flush=True)
    goal = "<= 2 ms per resource (start-up aside)"
    if seen <= n_start:
        bench.result("no-op --verify-existence run", f"{seen} resources "
                     f"seen, {n_start} by the start-up run", goal, False)
        return
    per = (seconds - t_start) / (seen - n_start) * 1000
    nothing_done = code == 0 and re.search(r"\b0 uploaded", summary)
    bench.result(
        f"no-op --verify-existence run ({seen} resources"
        f"{'' if nothing_done else '; it DID WORK or failed'})",
        f"{per:.2f} ms per resource ({seconds:.1f} s; start-up, "
        f"--modified-days 0 with {n_start} resources, {t_start:.1f} s)",
        goal, bool(nothing_done) and per <= 2)


def wrong_answers(pool: ThreadPoolExecutor, anonymous, urls: list[str],
                  status: int) -> list[str]:
    """The URLs whose anonymous GET does not answer ``status``."""
    codes = pool.map(lambda url: anonymous.get(url, timeout=60)
                     .status_code, urls)
    return [url for url, code in zip(urls, codes, strict=True)
            if code != status]


def toggle(bench: Bench, pool: ThreadPoolExecutor, anonymous,
           urls: list[str], private: bool) -> float:
    """Seconds from the start of the request until every object answers
    as it should; the response time if the first check after it finds
    them all right (the check is not counted), else until the check
    that does."""
    _, _, action = base.ckan_api(timeout=600)
    assert bench.site is not None
    start = time.perf_counter()
    action("package_patch", id=bench.site.visibility_id, private=private)
    answered = time.perf_counter()
    waiting = wrong_answers(pool, anonymous, urls, 403 if private else 200)
    if not waiting:
        return answered - start
    while waiting:
        if time.perf_counter() - start > 600:
            return float("inf")
        waiting = wrong_answers(pool, anonymous, waiting,
                                403 if private else 200)
    return time.perf_counter() - start


def visibility_urls(dataset_id: str) -> tuple[bool, list[str]]:
    """Whether the dataset is private now, and its objects' URLs."""
    import ckan.model as model

    from ckanext.dcor_depot.storage import layout, object_store
    model.Session.expire_all()
    pkg = model.Package.get(dataset_id)
    bucket = object_store.bucket_name(pkg.owner_org)
    return bool(pkg.private), [
        object_store.object_url(bucket, layout.object_key(res.id))
        for res in pkg.resources]


def sync_job_done(dataset_id: str) -> bool:
    """Making a dataset private queues its sync job before closing (a
    safety net, see logic.transactions): let the site's worker run it
    before the next figure (not timed). False if it stays queued."""
    from rq.job import NoSuchJobError

    from ckanext.dcor_depot.operations import jobs
    job_id = jobs.visibility_sync_job_id(dataset_id)
    try:
        if base.job_outcome(job_id, time.monotonic() + 120, 0.2) is None:
            print("  (the dataset's sync job is still queued: does the "
                  "site's worker run?)", flush=True)
            return False
    except NoSuchJobError:
        pass
    return True


def bench_visibility(bench: Bench) -> None:
    import requests

    assert bench.site is not None and bench.site.visibility_id
    private, urls = visibility_urls(bench.site.visibility_id)
    anonymous = requests.Session()
    adapter = requests.adapters.HTTPAdapter(pool_maxsize=PUT_THREADS)
    for scheme in ("http://", "https://"):
        anonymous.mount(scheme, adapter)
    seconds: dict[bool, list[float]] = {True: [], False: []}
    worker = True
    with ThreadPoolExecutor(PUT_THREADS) as pool:
        for _ in range(bench.args.rounds):
            for target in (not private, private):
                seconds[target].append(toggle(bench, pool, anonymous,
                                              urls, target))
                if target and worker:
                    worker = sync_job_done(bench.site.visibility_id)
            print(f"  round: made {'public' if private else 'private'} "
                  f"{seconds[not private][-1]:.2f} s, back "
                  f"{seconds[private][-1]:.2f} s", flush=True)
    for target, name in ((False, "public"), (True, "private")):
        figures = seconds[target]
        bench.result(
            f"dataset of {len(urls)} resources made {name}",
            f"min {min(figures):.2f} s, median "
            f"{statistics.median(figures):.2f} s, max {max(figures):.2f} s",
            "<= 5 s", max(figures) <= 5)


FIGURES = {"audit": bench_audit, "rolling": bench_rolling,
           "page": bench_page, "list": bench_list, "verify": bench_verify,
           "visibility": bench_visibility}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--resources", type=int, default=100_000)
    parser.add_argument("--datasets", type=int, default=1_000)
    parser.add_argument("--organizations", type=int, default=10)
    parser.add_argument("--visibility-resources", type=int, default=1_000,
                        help="resources of the dataset made public and "
                             "private (default 1000)")
    parser.add_argument("--only", default=",".join(FIGURES),
                        help="comma-separated figures, run in this order: "
                             + ", ".join(FIGURES))
    parser.add_argument("--rounds", type=int, default=3,
                        help="requests of the operator page after the "
                             "first; visibility round trips (default 3)")
    parser.add_argument("--keep", action="store_true",
                        help="keep the site for the next run")
    args = parser.parse_args()
    only = [name.strip() for name in args.only.split(",") if name.strip()]
    unknown = set(only) - FIGURES.keys()
    if unknown:
        parser.error(f"unknown figures: {', '.join(sorted(unknown))}")
    if not 1 <= args.organizations <= args.datasets <= args.resources:
        parser.error("need 1 <= organizations <= datasets <= resources")
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    args.only = [name for name in FIGURES if name in only]
    return args


def main() -> None:
    args = parse_args()
    env = base.load_env()
    bench = Bench(args, env, audit.pooled_client(2 * PUT_THREADS))
    app = base.ckan_app(bench.ini)
    # CKAN logs a line per dataset created (missing view plugins).
    logging.disable(logging.WARNING)
    with app._wsgi_app.test_request_context(), audit.kept_report_restored():
        try:
            bench.site = prepare_site(bench)
            for name in args.only:
                print(f"-- {name}", flush=True)
                FIGURES[name](bench)
        finally:
            if args.keep:
                print("the site is kept (--keep)", flush=True)
            else:
                print("removing the site", flush=True)
                audit.remove_bench_orgs(bench.s3, PREFIX)
                base.settle()
    print("\nlarge site: " + (f"{bench.site.resources} resources in "
          f"{bench.site.datasets} datasets of {len(bench.site.org_ids)} "
          "organizations" if bench.site else "not built"))
    for line in bench.results:
        print(f"  {line}")
    if any(line.endswith("MISS") for line in bench.results):
        sys.exit(1)


if __name__ == "__main__":
    main()
