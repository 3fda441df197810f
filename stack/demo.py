"""The main job of the plugin, as a user of a running devstack sees it.

Creates an organization and a private dataset over CKAN's HTTP API,
uploads a generated RT-DC file, waits for the background jobs, uploads a
second file straight to the store with the plugin's client and downloads
it back through CKAN's download URL, makes the dataset public and prints
a report, ending with the audit of the whole site and the URL of the
operator page. Run by `make demo` (after `make start`).
"""
import configparser
import hashlib
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import boto3
import botocore.config
import requests

from ckanext.dcor_depot import client
from ckanext.dcor_depot.sample_data import make_rtdc_file

ROOT = Path(__file__).resolve().parents[1]
WAIT_SECONDS = 180


def load_env() -> dict:
    env_file = ROOT / ".devstack" / "env"
    if not env_file.exists():
        sys.exit("demo: .devstack/env is missing: run 'make start' first")
    env = {}
    for line in env_file.read_text().splitlines():
        if line.startswith("export "):
            key, _, value = line[len("export "):].partition("=")
            env[key] = value.strip("'")
    return env


class Ckan:
    def __init__(self, url: str, token: str):
        self.url = url
        self.session = requests.Session()
        self.session.headers["Authorization"] = token

    def action(self, action_name: str, files=None, **data):
        url = f"{self.url}/api/3/action/{action_name}"
        if files:
            resp = self.session.post(url, data=data, files=files,
                                     timeout=600)
        else:
            resp = self.session.post(url, json=data, timeout=60)
        body = resp.json()
        if not body.get("success"):
            sys.exit(f"demo: {action_name} failed: {body.get('error')}")
        return body["result"]


def sha256_of(path: Path) -> str:
    hasher = hashlib.sha256()
    with open(path, "rb") as fd:
        while chunk := fd.read(8 << 20):
            hasher.update(chunk)
    return hasher.hexdigest()


def object_sha256(env: dict, url: str) -> str | None:
    bucket, _, key = url[len(env["S3_ENDPOINT"]) + 1:].partition("/")
    s3 = boto3.client(
        "s3", endpoint_url=env["S3_ENDPOINT"], region_name="us-east-1",
        aws_access_key_id=env["S3_ACCESS_KEY_ID"],
        aws_secret_access_key=env["S3_SECRET_ACCESS_KEY"],
        config=botocore.config.Config(
            s3={"addressing_style": "path"},
            response_checksum_validation="when_required"))
    try:
        body = s3.get_object(Bucket=bucket, Key=key)["Body"]
    except Exception:
        return None
    hasher = hashlib.sha256()
    for chunk in body.iter_chunks(8 << 20):
        hasher.update(chunk)
    return hasher.hexdigest()


def main() -> int:
    env = load_env()
    ini = configparser.ConfigParser(interpolation=None, strict=False)
    ini.read(env["CKAN_INI"])
    storage_path = Path(ini["app:main"]["ckan.storage_path"])
    ckan = Ckan(env["CKAN_URL"], env["CKAN_API_TOKEN"])
    suffix = uuid.uuid4().hex[:8]
    print(f"DCOR depot demo: CKAN {env['CKAN_VERSION']} at {env['CKAN_URL']}")

    org = ckan.action("organization_create", name=f"demo-lab-{suffix}",
                      title=f"Demo lab {suffix}")
    dataset = ckan.action("package_create", name=f"demo-cells-{suffix}",
                          title="Demo cells", owner_org=org["id"],
                          private=True)
    print(f"  organization {org['name']}, private dataset {dataset['name']}")

    with tempfile.TemporaryDirectory() as tmp:
        path = make_rtdc_file_of_demo_size(Path(tmp) / "cells.rtdc")
        upload_sha = sha256_of(path)
        size = path.stat().st_size
        started = time.monotonic()
        with open(path, "rb") as fd:
            res = ckan.action("resource_create", package_id=dataset["id"],
                              name="cells.rtdc",
                              files={"upload": ("cells.rtdc", fd)})
    print(f"  uploaded cells.rtdc ({size / 1e6:.1f} MB) as resource "
          f"{res['id']}")

    upload_path = storage_path / "resources" / res["id"][:3] / \
        res["id"][3:6] / res["id"][6:]
    print(f"  waiting up to {WAIT_SECONDS} s for the background jobs ...")
    deadline = time.monotonic() + WAIT_SECONDS
    while time.monotonic() < deadline:
        res = ckan.action("resource_show", id=res["id"])
        if res.get("s3_available") and upload_path.is_symlink():
            break
        time.sleep(0.5)
    elapsed = time.monotonic() - started

    problems = []
    report = []
    if upload_path.is_symlink():
        target = os.readlink(upload_path)
        report += [("upload path", str(upload_path)),
                   ("symlink to", target),
                   ("depot file", "present" if Path(target).is_file()
                    else "MISSING")]
    else:
        report.append(("upload path", f"{upload_path} (not a symlink yet: "
                       "the depot job has not run)"))
        problems.append("no depot symlink")

    direct_report, direct_problems = direct_upload_and_download(
        env, dataset)
    report += direct_report
    problems += direct_problems

    s3_url = res.get("s3_url")
    if res.get("s3_available") and s3_url:
        found = object_sha256(env, s3_url)
        report += [("object URL", s3_url),
                   ("SHA256 upload", upload_sha),
                   ("SHA256 object", found or "object not readable"),
                   ("SHA256 match", "yes" if found == upload_sha else "NO")]
        if found != upload_sha:
            problems.append("object differs from upload")
        private_status = requests.get(s3_url, timeout=30).status_code
        ckan.action("package_patch", id=dataset["id"], private=False)
        public_status = requests.get(s3_url, timeout=30).status_code
        report += [("anonymous GET", f"{private_status} while private "
                    "(expected 403)"),
                   ("anonymous GET", f"{public_status} while public "
                    "(expected 200)")]
        if (private_status, public_status) != (403, 200):
            problems.append("object visibility does not follow the dataset")
    else:
        report.append(("object store", "not there yet: the resource is not "
                       "marked s3_available"))
        problems.append("no object in the store")
        ckan.action("package_patch", id=dataset["id"], private=False)
    report.append(("jobs took", f"{elapsed:.1f} s after the upload"))

    print("\nReport")
    for label, value in report:
        print(f"  {label:<14} {value}")
    problems += audit_site(env)
    print(f"\nOpen CKAN at {env['CKAN_URL']} (user dcor-admin, password "
          "devstack-admin-password); connection details are in "
          ".devstack/env. Stop the stack with 'make stop'.")
    if problems:
        print("\nNot working: " + "; ".join(problems), file=sys.stderr)
        return 1
    return 0


def audit_site(env: dict) -> list[str]:
    """The operator's view: the audit of the whole site, and its page."""
    ckan = Path(sys.executable).with_name("ckan")
    proc = subprocess.run([str(ckan), "-c", env["CKAN_INI"],
                           "dcor-depot-audit"], capture_output=True,
                          text=True, timeout=1800)
    lines = proc.stdout.strip().splitlines()
    print("\nAudit (ckan dcor-depot-audit)")
    for line in lines[-11:]:
        print(f"  {line}")
    print(f"  operator page  {env['CKAN_URL']}/ckan-admin/dcor-depot")
    if proc.returncode == 2 or not lines:
        print(proc.stderr.strip()[-2000:], file=sys.stderr)
        return ["the audit could not look at everything"]
    return []


def direct_upload_and_download(env: dict, dataset: dict
                               ) -> tuple[list, list]:
    """The direct data path: the client sends the parts to the store,
    creates the resource and checks its SHA256; CKAN's download URL
    redirects to the store. The dataset is still private here."""
    report: list = []
    problems: list = []
    with tempfile.TemporaryDirectory() as tmp:
        path = make_rtdc_file(Path(tmp) / "direct.rtdc", events=2000,
                              image_frames=200, sample="direct demo")
        try:
            result = client.upload_file(
                env["CKAN_URL"], env["CKAN_API_TOKEN"], dataset["id"],
                path, sha256_timeout=WAIT_SECONDS, progress=None)
        except client.ClientError as exc:
            return [("direct upload", f"FAILED: {exc}")], \
                ["the client's direct upload failed"]
    report += [("direct upload", f"direct.rtdc as resource "
                f"{result.resource_id}, {len(result.parts_sent)} part(s) "
                "sent straight to the store"),
               ("SHA256 check", "recorded = file" if result.verified
                else "NOT verified")]
    url = result.resource["url"]
    authorized = requests.get(url, allow_redirects=False, timeout=60,
                              headers={"Authorization":
                                       env["CKAN_API_TOKEN"]})
    anonymous = requests.get(url, allow_redirects=False, timeout=60)
    fetched = b""
    if authorized.status_code == 302:
        fetched = requests.get(authorized.headers["Location"],
                               timeout=60).content
    same = hashlib.sha256(fetched).hexdigest() == result.sha256
    report += [("download URL", url),
               ("download", f"{authorized.status_code} to the store for "
                f"the owner, bytes {'identical' if same else 'DIFFER'}; "
                f"{anonymous.status_code} for anonymous (expected 403)")]
    if not (result.verified and authorized.status_code == 302 and same
            and anonymous.status_code == 403):
        problems.append("the direct data path does not work")
    return report, problems


def make_rtdc_file_of_demo_size(path: Path) -> Path:
    return make_rtdc_file(path, events=5000, image_frames=500,
                          sample="demo cells")


if __name__ == "__main__":
    sys.exit(main())
