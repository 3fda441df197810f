"""The direct-upload client killed mid-upload, then resumed; and an
upload abandoned for good, which the prune command ends (as the
buckets' lifecycle rule does after 5 days).

The client runs as a user runs it (`python -m ckanext.dcor_depot.client
upload`) against a live site of this test: `ckan run` on an ini with
this test's buckets, so that the site, the jobs (run here) and the
closing audit see the same store. Calibration: one upload is timed;
each iteration uploads another file and stops the client at a seeded
moment of the time such an upload takes, alternately with SIGKILL and
SIGINT, then runs the same command again.
"""
from __future__ import annotations

import json
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import ckan.plugins.toolkit as tk
import pytest
from ckan.tests import helpers

from ckanext.dcor_depot import errors
from ckanext.dcor_depot.records import upload_grants
from ckanext.dcor_depot.storage import layout, object_store, presigned
from tests.support import access, faults
from tests.support import live_site as live
from tests.support.cli import invoke
from tests.support.client import client_env, command, run_command
from tests.support.data import data_file, sha256
from tests.support.fault_ini import fault_site_settings
from tests.support.stack import ckan_command, kill_tree, run_jobs, wait_for
from tests.support.store import open_uploads

SCENARIO = "client-killed"
MiB = 2**20
#: The live site's part size (live_site.OVERRIDES).
PART = 5 * MiB
#: Slow enough that a seeded moment falls inside the upload.
RATE = "8M"


@pytest.fixture
def fault_live_site(fault_site, request, tmp_path,
                    ckan_config) -> Iterator[live.LiveSite]:
    """A live site with this test's buckets, depots and backups."""
    workdir = tmp_path / "live"
    workdir.mkdir()
    test_ini = Path(request.config.getoption("--ckan-ini")).resolve()
    yield from live.serve(ckan_command(), test_ini, workdir,
                          extra=fault_site_settings(ckan_config))


@dataclass
class Upload:
    """One file to upload with the command."""
    site: live.LiveSite
    dataset_id: str
    path: Path
    sha256: str
    state_dir: Path

    def args(self, *more: str) -> list[str]:
        return command("upload", "--site", self.site.url, "--dataset",
                       self.dataset_id, "--state-dir", str(self.state_dir),
                       "--max-rate", RATE, "--parallel", "2", "--quiet",
                       *more, str(self.path))

    def saved_resource_id(self) -> str:
        """The resource id in the client's state file ("" if none)."""
        for saved in self.state_dir.glob("*.json"):
            state = json.loads(saved.read_text())
            if state["path"] == str(self.path.resolve()):
                return state["resource_id"]
        return ""

    def resources(self) -> list[dict]:
        dataset = access.fresh_dataset(self.dataset_id)
        return [res for res in dataset["resources"]
                if res["name"] == self.path.name]


def new_upload(site: live.LiveSite, dataset_id: str, folder: Path,
               name: str, size: int) -> Upload:
    path, data = data_file(folder, size, name)
    return Upload(site, dataset_id, path, sha256(data),
                  folder / "state")


def stored_parts(rid: str) -> set[int]:
    grant = upload_grants.load(rid)
    if grant is None:
        return set()
    try:
        return set(presigned.stored_parts(grant.bucket, grant.key,
                                          grant.upload_id))
    except errors.NotFound:
        return set()  # completed meanwhile


def stop(proc: subprocess.Popen, sig: signal.Signals) -> None:
    if sig is signal.SIGKILL:
        kill_tree(proc.pid)
    else:
        proc.send_signal(sig)
    proc.wait(60)


def killed_then_resumed(upload: Upload, env: dict[str, str], after: float,
                        sig: signal.Signals) -> bool:
    """Stop the client after ``after`` seconds and run the same command
    again; returns whether the signal came before the client was done."""
    proc = subprocess.Popen(upload.args("--no-verify"),
                            stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, env=env)
    try:
        proc.wait(after)
    except subprocess.TimeoutExpired:
        stop(proc, sig)
    else:
        assert proc.returncode == 0
        return False
    time.sleep(0.5)  # a part the store was still taking is in by now
    saved = upload.saved_resource_id()
    if not saved and upload.resources():
        return True  # stopped after it created the resource: all done
    before = stored_parts(saved) if saved else set()

    again = run_command(upload.args("--json"), env)
    assert again.returncode == 0, again.stderr
    result = json.loads(again.stdout)
    if saved:
        assert result["resource_id"] == saved and result["resumed"]
        assert not set(result["parts_sent"]) & before  # none sent twice
    assert result["verified"] and result["sha256"] == upload.sha256
    return True


def abandon(upload: Upload, env: dict[str, str], parts: int) -> str:
    """Kill the client once ``parts`` parts are stored, for good."""
    proc = subprocess.Popen(upload.args("--no-verify"),
                            stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, env=env)
    try:
        rid = wait_for(upload.saved_resource_id, timeout=30,
                       what="the state file")
        wait_for(lambda: len(stored_parts(rid)) >= parts, timeout=60,
                 interval=0.05, what=f"{parts} stored part(s)")
    finally:
        stop(proc, signal.SIGKILL)
    return rid


def prune_abandoned(cli, org: access.Org, upload: Upload, rid: str) -> None:
    """The prune command ends the abandoned upload; no trace is left."""
    key = layout.object_key(rid)
    assert key in open_uploads(org.bucket)
    result = invoke(cli, "dcor-prune-stale-multipart-uploads",
                    "--initiated-before-days", 0)
    assert result.exit_code == 0, result.output
    assert f"{org.bucket}:{key} (upload " in result.stdout
    assert open_uploads(org.bucket) == []
    assert upload.resources() == []
    assert object_store.head_object(org.bucket, key) is None
    with pytest.raises(tk.ObjectNotFound):
        helpers.call_action("resource_show", id=rid)


@pytest.mark.fault_sample
def test_killed_client_resumes_abandoned_upload_is_pruned(
        fault_live_site, cli, tmp_path):
    site = fault_live_site
    ledger = faults.Ledger(
        "Direct-upload client killed and resumed; an upload abandoned",
        how="`python -m ckanext.dcor_depot.client upload` stopped at a seeded"
            " moment, alternately SIGKILL and SIGINT, then the same command "
            "again; one upload abandoned for good, then "
            "`dcor-prune-stale-multipart-uploads`",
        guarantee="a resumed upload ends with the uploaded bytes, verified "
                  "and recorded once; an abandoned one leaves no parts after "
                  "the prune")
    rng = faults.rng(SCENARIO)
    org = access.organization()
    dataset_id = access.dataset(site, org,
                                private=rng.random() < 0.5)["id"]
    env = client_env(DCOR_API_TOKEN=org.editor.token)
    calibration = new_upload(site, dataset_id, tmp_path, "calibration.rtdc",
                             4 * PART)
    began = time.monotonic()
    done = run_command(calibration.args("--no-verify", "--json"), env)
    seconds = time.monotonic() - began
    assert done.returncode == 0, done.stderr
    expected = {json.loads(done.stdout)["resource_id"]: calibration.sha256}

    for iteration in range(faults.iterations()):
        size = rng.randint(PART + 1, 5 * PART)
        upload = new_upload(site, dataset_id, tmp_path,
                            f"cells-{iteration}.rtdc", size)
        sig = signal.SIGKILL if iteration % 2 == 0 else signal.SIGINT
        after = rng.uniform(0, seconds * size / (4 * PART))
        hit = killed_then_resumed(upload, env, after, sig)
        [res] = upload.resources()  # one resource, however it ended
        expected[res["id"]] = upload.sha256
        ledger.iterations += 1
        ledger.faults += hit
        ledger.notes.append(f"{sig.name} after {after:.2f} s of {size} "
                            f"bytes: {'hit' if hit else 'finished'}")

    abandoned = new_upload(site, dataset_id, tmp_path, "abandoned.rtdc",
                           4 * PART)
    parts = rng.randint(1, 3)
    prune_abandoned(cli, org, abandoned, abandon(abandoned, env, parts))
    ledger.faults += 1
    ledger.notes.append(f"abandoned after {parts} of 4 parts; pruned")
    run_jobs()  # the SHA256 and backup jobs of uploads done when killed
    faults.check_intact(cli, expected, ledger)
    ledger.write()
