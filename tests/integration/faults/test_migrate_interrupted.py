"""`dcor-migrate-resources-to-object-store --jobs 8` interrupted by
SIGINT (Ctrl-C) and by SIGKILL at seeded moments, then run again.

The migration runs as the real `ckan` command, on an ini with this
test's buckets and depots. Calibration: one batch is migrated without a
fault and timed; each iteration then migrates a new batch and is
interrupted at a seeded moment of that measured duration (from just
before the first resource is done to the end), alternately by SIGINT
and SIGKILL, half of them with --delete-after-migration. Right after
the fault no resource's data may be lost; the rerun (the same options)
must complete the work.
"""
from __future__ import annotations

import os
import random
import re
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import ckan.plugins.toolkit as tk
import pytest

from ckanext.dcor_depot.operations import symlink
from ckanext.dcor_depot.storage import layout, object_store
from ckanext.dcor_depot.storage.fsops import file_sha256
from tests.support import faults
from tests.support.access import fresh_resource
from tests.support.cli import invoke, summary
from tests.support.data import sha256
from tests.support.fault_ini import write_fault_ini
from tests.support.stack import ckan_command, kill_tree
from tests.support.store import object_sha256, open_uploads

SCENARIO = "migrate-interrupted"
COMMAND = "dcor-migrate-resources-to-object-store"
KiB, MiB = 2**10, 2**20
#: Small resources per batch, and one larger than a part (multipart).
SMALL_PER_BATCH = 9
PART = 16 * MiB
#: "[3/10] RID: resource uploaded; ..." (the command's result lines)
RESULT_LINE = re.compile(r"^\[\d+/\d+\] (?P<rid>[0-9a-f-]{36}): "
                         r"(?P<what>.*)$", re.MULTILINE)


@dataclass
class Run:
    """A finished run of the command."""
    returncode: int
    stdout: str
    stderr: str
    #: the signal reached the command before it finished on its own
    interrupted: bool
    seconds: float


def start(ini: Path, args: list[str]) -> subprocess.Popen:
    return subprocess.Popen(
        [ckan_command(), "-c", str(ini), COMMAND, "--jobs", "8", *args],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def run_to_the_end(ini: Path, args: list[str]) -> tuple[float, float]:
    """Run the command without a fault; ``(seconds to its first result
    line, seconds in all)``."""
    began = time.monotonic()
    proc = start(ini, args)
    assert proc.stdout is not None
    first = None
    for _line in proc.stdout:
        if first is None:
            first = time.monotonic() - began
    proc.wait(120)
    assert proc.returncode == 0, proc.stderr.read() if proc.stderr else ""
    total = time.monotonic() - began
    return first or total, total


def run_interrupted(ini: Path, args: list[str], after: float,
                    sig: signal.Signals) -> Run:
    """Run the command and send ``sig`` after ``after`` seconds."""
    began = time.monotonic()
    proc = start(ini, args)
    try:
        out, err = proc.communicate(timeout=after)
        return Run(proc.returncode, out, err, False,
                   time.monotonic() - began)
    except subprocess.TimeoutExpired:
        if sig is signal.SIGKILL:
            kill_tree(proc.pid)  # a crash: no handler runs
        else:
            proc.send_signal(sig)
    out, err = proc.communicate(timeout=120)
    return Run(proc.returncode, out, err, True, time.monotonic() - began)


def make_batch(make_dataset, upload, rng: random.Random,
               tag: str) -> dict[str, str]:
    """A dataset whose resources are in the depot, not yet in the store
    (a site before S3): ``{resource id: SHA256}``."""
    dataset = make_dataset(private=rng.random() < 0.5)
    sizes = [rng.randint(64 * KiB, 2 * MiB) for _ in range(SMALL_PER_BATCH)]
    sizes.append(PART + rng.randint(1, 4 * MiB))
    batch = {}
    for number, size in enumerate(sizes):
        data = rng.randbytes(size)
        res = upload(dataset, data, name=f"{tag}-{number}.rtdc")
        assert symlink.symlink_user_dataset(res["id"])
        batch[res["id"]] = sha256(data)
    return batch


def data_still_there(bucket: str, rid: str, sha: str) -> bool:
    """The resource's bytes are in its local file or in its object."""
    path = layout.ckan_upload_path(rid)
    if path.is_file() and file_sha256(path) == sha:
        return True
    return object_sha256(bucket, layout.object_key(rid)) == sha


def check_right_after(run: Run, sig: signal.Signals, bucket: str,
                      batch: dict[str, str]) -> None:
    """What must hold the moment the command was stopped."""
    for rid, sha in batch.items():
        assert data_still_there(bucket, rid, sha), (rid, run.stdout,
                                                    run.stderr)
    if sig is not signal.SIGINT or run.returncode != 130:
        return
    # Ctrl-C during the migration: what was reported is recorded.
    assert re.search(r"interrupted after \d+ of \d+ resources; run it "
                     "again to finish the rest", run.stderr), run.stderr
    assert summary(run).startswith(f"{COMMAND} (interrupted): ")
    for match in RESULT_LINE.finditer(run.stdout):
        if "resource uploaded" in match["what"]:
            res = fresh_resource(match["rid"])
            assert tk.asbool(res.get("s3_available")), match.group(0)


def rerun_completes(cli, args: list[str], batch: dict[str, str]) -> None:
    rerun = invoke(cli, COMMAND, "--jobs", 8, *args)
    assert rerun.exit_code == 0, rerun.output
    assert re.search(r" 0 failed(,|$)", summary(rerun)), rerun.stdout
    for rid, sha in batch.items():
        res = fresh_resource(rid)
        assert tk.asbool(res.get("s3_available")), (rid, rerun.stdout)
        assert res["sha256"] == sha
        local = layout.ckan_upload_path(rid)
        assert os.path.lexists(local) != ("--delete-after-migration"
                                          in args), (rid, rerun.stdout)


def open_uploads_in(buckets: set[str]) -> list[str]:
    """``bucket:key`` of every multipart upload open in ``buckets``."""
    return [f"{bucket}:{key}" for bucket in sorted(buckets)
            for key in open_uploads(bucket)]


def prune_killed_uploads(cli, buckets: set[str],
                         expected: dict[str, str]) -> int:
    """A SIGKILLed transfer leaves its multipart upload in the store;
    only keys of this test's resources may be among them, and the prune
    command (the lifecycle rule, days later) ends them."""
    left = open_uploads_in(buckets)
    keys = {layout.object_key(rid) for rid in expected}
    assert {entry.split(":", 1)[1] for entry in left} <= keys, left
    result = invoke(cli, "dcor-prune-stale-multipart-uploads",
                    "--initiated-before-days", 0)
    assert result.exit_code == 0, result.output
    assert open_uploads_in(buckets) == []
    return len(left)


@pytest.mark.fault_sample
def test_migration_interrupted_by_sigint_and_sigkill(
        fault_site, make_dataset, upload, owner, cli, request, tmp_path,
        ckan_config):
    ledger = faults.Ledger(
        "Migration --jobs 8 interrupted, then rerun",
        how="`dcor-migrate-resources-to-object-store --jobs 8` stopped at a "
            "seeded moment, alternately SIGINT and SIGKILL, half with "
            "--delete-after-migration, then the same command again",
        guarantee="no resource loses data at any moment; the rerun completes "
                  "the work and aborts the killed uploads' parts")
    rng = faults.rng(SCENARIO)
    ini = write_fault_ini(request.config.getoption("--ckan-ini"),
                          tmp_path / "fault.ini", ckan_config)
    expected = make_batch(make_dataset, upload, rng, "calibration")
    first, total = run_to_the_end(ini, [])
    rerun_completes(cli, [], expected)
    bucket = object_store.bucket_name(owner["org"]["id"])

    for iteration in range(faults.iterations()):
        batch = make_batch(make_dataset, upload, rng, f"run{iteration}")
        expected.update(batch)
        sig = signal.SIGINT if iteration % 2 == 0 else signal.SIGKILL
        args = ["--delete-after-migration"] if rng.random() < 0.5 else []
        after = rng.uniform(0.8 * first, total)
        run = run_interrupted(ini, args, after, sig)
        ledger.iterations += 1
        ledger.faults += run.interrupted
        ledger.notes.append(
            f"{sig.name} after {after:.2f} s {' '.join(args)}: exit "
            f"{run.returncode}, {len(RESULT_LINE.findall(run.stdout))} "
            "result lines")
        check_right_after(run, sig, bucket, batch)
        rerun_completes(cli, args, batch)

    ledger.notes.append(f"{prune_killed_uploads(cli, {bucket}, expected)} "
                        "upload(s) of killed transfers pruned")
    faults.check_intact(cli, expected, ledger)
    ledger.write()
