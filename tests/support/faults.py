"""The fault suite's common parts: how many seeded iterations, the
closing check every scenario ends with, and the ledger of what was
checked (for docs/reliability.md).

The closing check asserts what the issue asks of every scenario:
- no byte lost: the recorded SHA256 of each resource equals the SHA256
  of the bytes the test uploaded, and of every copy (local file, backup,
  object) that exists, and at least one copy exists;
- nothing too public: every object of the scenario's buckets answers an
  anonymous GET with 403 unless its dataset is public and active;
- and the plugin's own audit (`dcor-depot-audit --grace-hours 0`) of
  each organization involved finds nothing.
"""
from __future__ import annotations

import json
import os
import random
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import ckan.plugins.toolkit as tk
from ckan.tests import helpers

from ckanext.dcor_depot.storage import layout, object_store
from ckanext.dcor_depot.storage.fsops import file_sha256
from tests.support.access import fresh_resource
from tests.support.cli import invoke
from tests.support.stack import anonymous_get
from tests.support.store import object_sha256

#: Iterations per seeded scenario: `make test-faults` runs 20; run
#: alone (pytest -m faults) a reduced seeded subset.
DEFAULT_ITERATIONS = 3
#: The seed of every scenario's random choices (kill points, sizes).
DEFAULT_SEED = 20261202


def iterations() -> int:
    return int(os.environ.get("DCOR_FAULT_ITERATIONS", DEFAULT_ITERATIONS))


def rng(scenario: str) -> random.Random:
    """A random generator of its own per scenario, from the suite seed."""
    seed = int(os.environ.get("DCOR_FAULT_SEED", DEFAULT_SEED))
    return random.Random(f"{seed}:{scenario}")


@dataclass
class Ledger:
    """What one scenario did; appended as a JSON line to the file named
    by DCOR_FAULT_REPORT (if set) when the scenario passed."""
    scenario: str
    #: how the fault is made, in a few words (for the reliability table)
    how: str = ""
    #: the guarantee the scenario supports
    guarantee: str = ""
    iterations: int = 0
    faults: int = 0
    resources: int = 0
    bytes_checked: int = 0
    notes: list[str] = field(default_factory=list)
    started: float = field(default_factory=time.time)

    def write(self) -> None:
        report = os.environ.get("DCOR_FAULT_REPORT")
        if not report:
            return
        entry = asdict(self)
        entry["seconds"] = round(time.time() - self.started, 1)
        entry["seed"] = int(os.environ.get("DCOR_FAULT_SEED", DEFAULT_SEED))
        with open(report, "a") as fh:
            fh.write(json.dumps(entry) + "\n")


def local_copies(rid: str) -> list[Path]:
    """The resource's files on block storage (upload path, backup)."""
    paths = [layout.ckan_upload_path(rid), layout.backup_path(rid)]
    return [p for p in paths if p is not None and p.is_file()]


def is_public(dataset_id: str) -> bool:
    dataset = helpers.call_action("package_show", id=dataset_id)
    return not dataset["private"] and dataset["state"] == "active"


def check_resource(rid: str, expected_sha256: str) -> int:
    """Assert the resource lost no byte; returns the bytes read."""
    res = fresh_resource(rid)
    assert res.get("sha256") == expected_sha256, (rid, res.get("sha256"))
    checked = 0
    copies = 0
    for path in local_copies(rid):
        assert file_sha256(path) == expected_sha256, (rid, str(path))
        checked += path.stat().st_size
        copies += 1
    if tk.asbool(res.get("s3_available")):
        parsed = object_store.parse_object_url(res.get("s3_url") or "")
        assert parsed is not None, (rid, res.get("s3_url"))
        assert object_sha256(*parsed) == expected_sha256, (rid, parsed)
        checked += int(res.get("size") or 0)
        copies += 1
    assert copies, f"resource {rid}: no copy of its data is left"
    return checked


def check_no_leak(bucket: str, public_resources: set[str]) -> int:
    """Every object of the bucket that does not belong to a resource of a
    public, active dataset refuses anonymous GETs; returns the count."""
    count = 0
    for key in object_store.list_keys(bucket):
        url = object_store.object_url(bucket, key)
        status = anonymous_get(url).status_code
        try:
            _artifact, rid = layout.parse_object_key(key)
        except ValueError:
            rid = ""
        if rid in public_resources:
            assert status == 200, (key, status)
        else:
            assert status == 403, (key, status)
        count += 1
    return count


def organizations_of(resource_ids: Iterable[str]) -> set[str]:
    """Names of the organizations whose datasets hold the resources."""
    names = set()
    for rid in resource_ids:
        pkg = helpers.call_action("package_show",
                                  id=fresh_resource(rid)["package_id"])
        names.add(pkg["organization"]["name"])
    return names


def repair(cli: Any, resource_ids: Iterable[str]) -> None:
    """What an operator runs after losing queued work (Redis restarted
    empty, a crash): run-jobs-dcor-depot, then dcor-depot-audit --fix
    (scoped to the organizations: the tests' store holds the buckets of
    every earlier test)."""
    result = invoke(cli, "run-jobs-dcor-depot")
    assert result.exit_code == 0, result.output
    for org in sorted(organizations_of(resource_ids)):
        result = invoke(cli, "dcor-depot-audit", "--fix", "--grace-hours",
                        "0", "--organization", org)
        assert result.exit_code in (0, 1), result.output


def check_intact(cli: Any, expected: dict[str, str],
                 ledger: Ledger) -> None:
    """The closing check of a scenario (see the module docstring).

    ``expected`` maps resource ids to the SHA256 of the bytes uploaded.
    """
    datasets: dict[str, bool] = {}
    orgs: set[str] = set()
    public: set[str] = set()
    for rid, sha in expected.items():
        ledger.bytes_checked += check_resource(rid, sha)
        res = fresh_resource(rid)
        if res["package_id"] not in datasets:
            datasets[res["package_id"]] = is_public(res["package_id"])
            pkg = helpers.call_action("package_show", id=res["package_id"])
            orgs.add(pkg["organization"]["name"])
        if datasets[res["package_id"]]:
            public.add(rid)
    ledger.resources += len(expected)
    for org in sorted(orgs):
        org_id = helpers.call_action("organization_show", id=org)["id"]
        check_no_leak(object_store.bucket_name(org_id), public)
        result = invoke(cli, "dcor-depot-audit", "--json", "--grace-hours",
                        "0", "--organization", org)
        assert result.exit_code == 0, result.output
