"""DCOR-Aid's direct upload against the running dev site.

Run with `make bench` or, with the whole stack running (`make start`),
`.devstack/venv-2.12.0/bin/python benchmarks/dcoraid_direct.py [--only NAMES]`.
DCOR-Aid's own functions do the work (its single stream: one PUT of the
whole file per part), timed in its three steps: URLs issued, bytes sent,
upload registered by ``package_revise``. The dev site's worker records
the SHA256. Every figure compares two things measured in the same run.
"""
from __future__ import annotations

import argparse
import statistics
import time
import uuid
from pathlib import Path
from typing import Any

import run as base  # the shared helpers of benchmarks/run.py
from boto3.s3.transfer import TransferConfig
from dcoraid.api import CKANAPI
from dcoraid.api.s3_api import upload_s3_presigned

#: boto3 as one stream: no threads, one PUT up to 1 GiB + 1 byte.
SINGLE_STREAM = TransferConfig(use_threads=False,
                               multipart_threshold=base.GiB + 1)


def dcoraid_api(env: dict[str, str]) -> CKANAPI:
    return CKANAPI(server=env["CKAN_URL"], api_key=env["CKAN_API_TOKEN"],
                   ssl_verify=False, caching=False)


def new_dataset(action) -> dict[str, Any]:
    suffix = uuid.uuid4().hex[:8]
    org = action("organization_create", name=f"bench-dcoraid-{suffix}")
    return action("package_create", name=f"bench-dcoraid-{suffix}",
                  owner_org=org["id"], private=True, state="draft")


def dcoraid_upload(api: CKANAPI, dataset: dict[str, Any], path: Path
                   ) -> tuple[dict[str, float], str]:
    """DCOR-Aid's resource_add_upload_direct_s3, step by step: seconds
    of each step and the resource id."""
    times: dict[str, float] = {}
    start = time.perf_counter()
    info = api.get("resource_upload_s3_urls",
                   organization_id=dataset["owner_org"],
                   file_size=path.stat().st_size)
    times["issue"] = time.perf_counter() - start
    start = time.perf_counter()
    upload_s3_presigned(path=path, upload_urls=info["upload_urls"],
                        complete_url=info["complete_url"])
    times["send"] = time.perf_counter() - start
    start = time.perf_counter()
    api.post("package_revise", {
        "match": {"id": dataset["id"]},
        "update__resources__extend": [{"id": info["resource_id"],
                                       "name": path.name,
                                       "s3_available": True}]},
        timeout=500)
    times["register"] = time.perf_counter() - start
    return times, info["resource_id"]


def bench_upload(args, s3, bucket: str) -> None:
    """2 x 1 GiB by DCOR-Aid (issue + send + register) vs boto3's
    upload_file of the same files as one stream."""
    _, _, action = base.ckan_api(timeout=600)
    env = base.load_env()
    api = dcoraid_api(env)
    files = [base.random_file(base.WORK / f"dcoraid-{i}.bin", args.size)
             for i in range(2)]
    ratios, issue, register = [], [], []
    for _ in range(args.rounds):
        dataset = new_dataset(action)
        t_dcoraid = 0.0
        for path in files:
            times, rid = dcoraid_upload(api, dataset, path)
            t_dcoraid += sum(times.values())
            issue.append(times["issue"])
            register.append(times["register"])
            # The site's sha256 job reads the object: not while timing.
            base.wait_for_sha256(action, rid)
        t_plain = base.timed(lambda: [
            s3.upload_file(str(path), bucket, f"dcoraid/{uuid.uuid4()}",
                           Config=SINGLE_STREAM) for path in files])
        ratios.append(t_dcoraid / t_plain)
        print(f"  round: DCOR-Aid {t_dcoraid:.1f} s, boto3 one stream "
              f"{t_plain:.1f} s", flush=True)
        base.empty_buckets(s3, bucket)
    size = f"{len(files)} x {args.size / base.GiB:.1f} GiB"
    base.report(f"DCOR-Aid direct upload, {size}, / boto3 upload_file "
                "(one stream)", ratios, "<= 1.10")
    print(f"  URL issue: median {statistics.median(issue) * 1000:.0f} ms; "
          f"registration: median {statistics.median(register):.2f} s, max "
          f"{max(register):.2f} s (target <= 2 s)", flush=True)


def bench_sha256(args, s3, bucket: str) -> None:
    """From the registration's answer to ``sha256`` recorded (the site's
    worker) vs a plain download_file of the object."""
    _, _, action = base.ckan_api(timeout=600)
    api = dcoraid_api(base.load_env())
    path = base.random_file(base.WORK / "dcoraid-0.bin", args.size)
    margins = []
    for _ in range(args.rounds):
        _, rid = dcoraid_upload(api, new_dataset(action), path)
        t_sha = base.wait_for_sha256(action, rid)
        t_plain = base.download_seconds(
            s3, action("resource_show", id=rid)["s3_url"])
        margins.append(t_sha - t_plain)
        print(f"  round: registered -> sha256 {t_sha:.1f} s, plain "
              f"download_file {t_plain:.1f} s", flush=True)
    print(f"sha256 recorded after registration - plain download_file: min "
          f"{min(margins):+.2f} s, median {statistics.median(margins):+.2f}"
          f" s over {len(margins)} rounds (target <= +2 s)", flush=True)


FIGURES = {"upload": bench_upload, "sha256": bench_sha256}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--only", default=",".join(FIGURES),
                        help="comma-separated figures: " + ", ".join(FIGURES))
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--size", type=int, default=base.GiB)
    args = parser.parse_args()
    base.run_figures(FIGURES, args)


if __name__ == "__main__":
    main()
