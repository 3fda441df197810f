"""Benchmarks of the direct data path against the running dev site.

Run with `make bench` or, with the whole stack running (`make start`),
`.devstack/venv-2.12.0/bin/python benchmarks/direct.py [--only NAMES]`.
The dev site's own worker runs the jobs, as on a real site. Every figure
compares two things measured in the same run and prints the target of
the direct-upload issue.
"""
from __future__ import annotations

import argparse
import statistics
import time
import uuid
from pathlib import Path
from typing import Any

import run as base  # the shared helpers of benchmarks/run.py

from ckanext.dcor_depot import client


def site() -> tuple[Any, str, Any, dict[str, str]]:
    session, api, action = base.ckan_api(timeout=600)
    return session, api, action, base.load_env()


def new_dataset(action, private: bool = True) -> dict[str, Any]:
    suffix = uuid.uuid4().hex[:8]
    org = action("organization_create", name=f"bench-direct-{suffix}")
    return action("package_create", name=f"bench-direct-{suffix}",
                  owner_org=org["id"], private=private)


def upload(env: dict[str, str], dataset: dict[str, Any], path: Path
           ) -> dict[str, Any]:
    return client.upload_file(env["CKAN_URL"], env["CKAN_API_TOKEN"],
                              dataset["id"], path, verify=False,
                              progress=None).resource


def bench_upload(args, s3, bucket: str) -> None:
    """2 x 1 GiB with the client (first request to resource created) vs
    boto3's upload_file of the same files."""
    _, _, action, env = site()
    files = [base.random_file(base.WORK / f"direct-{i}.bin", args.size)
             for i in range(2)]
    ratios = []
    for _ in range(args.rounds):
        dataset = new_dataset(action)
        t_client = 0.0
        for path in files:
            start = time.perf_counter()
            created = upload(env, dataset, path)
            t_client += time.perf_counter() - start
            # The site's sha256 job reads the object: not while timing.
            base.wait_for_sha256(action, created["id"])
        t_plain = base.timed(lambda: [
            s3.upload_file(str(path), bucket, f"direct/{uuid.uuid4()}")
            for path in files])
        ratios.append(t_client / t_plain)
        print(f"  round: client {t_client:.1f} s, plain upload_file "
              f"{t_plain:.1f} s", flush=True)
        base.empty_buckets(s3, bucket)
    report_size = f"{len(files)} x {args.size / base.GiB:.1f} GiB"
    base.report(f"direct upload with the client, {report_size}, "
                "/ boto3 upload_file", ratios, "<= 1.10")


def bench_sha256(args, s3, bucket: str) -> None:
    """From the resource created to ``sha256`` recorded (the site's
    worker) vs a plain download_file of the object."""
    _, _, action, env = site()
    path = base.random_file(base.WORK / "direct-0.bin", args.size)
    margins = []
    for _ in range(args.rounds):
        dataset = new_dataset(action)
        created = upload(env, dataset, path)
        t_sha = base.wait_for_sha256(action, created["id"])
        t_plain = base.download_seconds(s3, created["s3_url"])
        margins.append(t_sha - t_plain)
        print(f"  round: created -> sha256 {t_sha:.1f} s, plain "
              f"download_file {t_plain:.1f} s", flush=True)
    print(f"sha256 recorded after creation - plain download_file: min "
          f"{min(margins):+.2f} s, median {statistics.median(margins):+.2f}"
          f" s over {len(margins)} rounds (target <= +2 s)", flush=True)


def fetch(session, url: str) -> None:
    session.get(url, timeout=60).raise_for_status()


def bench_redirect(args, s3, bucket: str) -> None:
    """CKAN's download URL -> 302 -> bytes vs the presigned URL fetched
    directly: the latency CKAN adds, per request."""
    import requests
    session, _, action, env = site()
    dataset = new_dataset(action)
    small = base.random_file(base.WORK / "direct-small.bin", 64 * 1024)
    resources = [upload(env, dataset, small) for _ in range(10)]
    from ckanext.dcor_depot.config import direct_upload_settings
    from ckanext.dcor_depot.storage import object_store, presigned
    plain = requests.Session()
    added = []
    for i in range(args.requests):
        res = resources[i % len(resources)]
        url = (f"{env['CKAN_URL']}/dataset/{dataset['id']}/resource/"
               f"{res['id']}/download/direct-small.bin")
        t_ckan = base.timed(fetch, session, url)
        where = object_store.parse_object_url(res["s3_url"])
        assert where is not None
        signed = presigned.download_url(
            *where, filename="direct-small.bin",
            lifetime=direct_upload_settings().download_url_lifetime)
        t_direct = base.timed(fetch, plain, signed)
        added.append((t_ckan - t_direct) * 1000)
    added.sort()
    p95 = added[int(0.95 * (len(added) - 1))]
    print(f"download via CKAN's URL (redirect) - presigned URL directly: "
          f"median {statistics.median(added):.1f} ms, p95 {p95:.1f} ms "
          f"over {len(added)} requests, 10 resources in the dataset "
          "(goal: median < 30 ms)", flush=True)


FIGURES = {"upload": bench_upload, "sha256": bench_sha256,
           "redirect": bench_redirect}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--only", default=",".join(FIGURES),
                        help="comma-separated figures: " + ", ".join(FIGURES))
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--size", type=int, default=base.GiB)
    parser.add_argument("--requests", type=int, default=200)
    args = parser.parse_args()
    base.run_figures(FIGURES, args)


if __name__ == "__main__":
    main()
