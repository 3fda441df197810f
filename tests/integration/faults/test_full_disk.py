"""The depot's filesystem full: during the symlink job and during
`append-resource`.

A small tmpfs is the depot (for the symlink job on another filesystem
than CKAN's uploads, so that the job copies), or holds CKAN's upload
folder and the depot (for `append-resource`, which copies the file
there when S3 is not configured). Before each attempt the tmpfs is
filled so that a seeded number of bytes, fewer than the file has, is
left: the copy runs out of space at a seeded offset. Afterwards the
error must be clear, the original intact, no partial file left and the
metadata unchanged; with space freed, running the work again completes
it.
"""
from __future__ import annotations

import os
import random
from pathlib import Path

import ckan.plugins.toolkit as tk
import pytest

from ckanext.dcor_depot.operations import append, jobs
from ckanext.dcor_depot.storage import fsops, layout
from ckanext.dcor_depot.storage.fsops import file_sha256
from tests.support import faults
from tests.support.access import fresh_resource
from tests.support.cli import dataset_resources, invoke
from tests.support.data import sha256
from tests.support.stack import failed_job_error, run_jobs

KiB, MiB = 2**10, 2**20
PAGE = 4096
NO_SPACE = os.strerror(28)  # ENOSPC: "No space left on device"


def fill(mount: Path, leave: int) -> Path:
    """A file taking all space of ``mount`` but ``leave`` bytes."""
    stats = os.statvfs(mount)
    free = stats.f_bavail * stats.f_frsize
    assert free > leave, (free, leave)
    filler = mount / "filler"
    with open(filler, "wb") as fh:
        os.posix_fallocate(fh.fileno(), 0, free - leave)
    return filler


def files_in(root: Path) -> set[str]:
    """Every file below ``root`` (temporary ones too)."""
    return {str(Path(folder, name)) for folder, _dirs, names in os.walk(root)
            for name in names}


def seeded_data(rng: random.Random) -> tuple[bytes, int]:
    """Bytes of a seeded size, and a seeded room (whole pages) smaller
    than they need."""
    data = rng.randbytes(rng.randint(256 * KiB, 2 * MiB))
    return data, rng.randrange(0, len(data)) // PAGE * PAGE


# ------------------------------------------------------- the symlink job
def check_symlink_job_failed(res: dict, sha: str, depot_files: set[str],
                             depots: Path) -> None:
    rid = res["id"]
    path = layout.ckan_upload_path(rid)
    error = failed_job_error(rid, jobs.SYMLINK)
    assert NO_SPACE in error and str(path) in error, error
    # The upload is untouched, no partial copy is left in the depot.
    assert path.is_file() and not path.is_symlink()
    assert file_sha256(path) == sha
    assert files_in(depots) == depot_files
    # The metadata too; the S3 job (not held up) copied the intact file.
    now = fresh_resource(rid)
    for name in ("url", "url_type", "size", "name", "package_id"):
        assert now[name] == res[name], name
    assert tk.asbool(now["s3_available"]) and now["sha256"] == sha


@pytest.mark.fault_sample
def test_depot_full_during_symlink_job(fault_site, tmpfs_dir, ckan_config,
                                       monkeypatch, make_dataset, upload,
                                       cli):
    ledger = faults.Ledger(
        "Depot filesystem full during the symlink job",
        how="a tmpfs depot filled to leave a seeded number of bytes fewer "
            "than the file, the job run, space freed, the job run again",
        guarantee="a clear error, the upload intact, no partial depot file, "
                  "metadata unchanged; the rerun completes")
    rng = faults.rng("full-disk-symlink")
    depots = tmpfs_dir / "depots"
    depots.mkdir()
    monkeypatch.setitem(ckan_config, "ckanext.dcor_depot.depots_path",
                        str(depots))
    expected = {}
    for iteration in range(faults.iterations()):
        data, room = seeded_data(rng)
        dataset = make_dataset(private=rng.random() < 0.5)
        res = upload(dataset, data, name=f"full-{iteration}.rtdc")
        expected[res["id"]] = sha = sha256(data)
        depot_files = files_in(depots)
        filler = fill(tmpfs_dir, room)
        try:
            run_jobs()  # the symlink job (and its retries), the S3 job
        finally:
            filler.unlink()
        check_symlink_job_failed(res, sha, depot_files, depots)
        ledger.iterations += 1
        ledger.faults += 1
        ledger.notes.append(f"{len(data)} bytes, {room} bytes free")

        # Space again: the job, queued again, completes.
        assert jobs.job_id(res["id"], jobs.SYMLINK) in \
            jobs.enqueue_resource_jobs(fresh_resource(res["id"]))
        run_jobs()
        path = layout.ckan_upload_path(res["id"])
        assert path.is_symlink()
        assert fsops.is_inside(path.resolve(), depots)
        assert file_sha256(path) == sha

    faults.check_intact(cli, expected, ledger)
    ledger.write()


# ---------------------------------------------------- append-resource
def append_on_full_disk(cli, mount: Path, dataset: dict, source: Path,
                        room: int) -> None:
    """append-resource with ``room`` bytes left: refused, nothing made."""
    sha = file_sha256(source)
    rid = append.resource_id_for(dataset["id"], source.name, sha)
    storage_files = files_in(mount)
    resources = dataset_resources(dataset["id"])
    filler = fill(mount, room)
    try:
        result = invoke(cli, "append-resource", source, dataset["id"])
    finally:
        filler.unlink()
    assert result.exit_code == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    line = lines[0]
    assert line.startswith(f"append-resource: cannot copy {source} to "
                           f"{layout.ckan_upload_path(rid)}: "), line
    assert NO_SPACE in line
    assert result.stdout == ""
    assert file_sha256(source) == sha
    assert files_in(mount) == storage_files  # no partial copy
    assert dataset_resources(dataset["id"]) == resources
    with pytest.raises(tk.ObjectNotFound):
        fresh_resource(rid)


def append_again(cli, dataset: dict, source: Path) -> str:
    """With space again, the same command adds the file."""
    result = invoke(cli, "append-resource", source, dataset["id"])
    assert result.exit_code == 0, result.output
    sha = file_sha256(source)
    rid = append.resource_id_for(dataset["id"], source.name, sha)
    assert f"resource {rid}: added to dataset" in result.stdout
    res = fresh_resource(rid)
    assert res["sha256"] == sha and res["size"] == source.stat().st_size
    assert file_sha256(layout.ckan_upload_path(rid)) == sha
    return rid


def test_disk_full_during_append_resource(fault_site, tmpfs_dir,
                                          ckan_config, monkeypatch,
                                          make_dataset, cli, tmp_path):
    ledger = faults.Ledger(
        "Depot filesystem full during append-resource",
        how="a tmpfs holding CKAN's uploads and the depot filled to leave a "
            "seeded number of bytes fewer than the file, `append-resource` "
            "run, space freed, run again",
        guarantee="a clear error and exit code, the original intact, no "
                  "partial file, no resource; the rerun completes")
    rng = faults.rng("full-disk-append")
    for option, folder in (("ckan.storage_path", "storage"),
                           ("ckanext.dcor_depot.depots_path", "depots")):
        (tmpfs_dir / folder).mkdir()
        monkeypatch.setitem(ckan_config, option, str(tmpfs_dir / folder))
    expected = {}
    with monkeypatch.context() as no_s3:
        # Without S3 the command copies the file to the upload folder.
        for key in ("access_key_id", "secret_access_key"):
            no_s3.setitem(ckan_config, f"dcor_object_store.{key}", "")
        for iteration in range(faults.iterations()):
            data, room = seeded_data(rng)
            source = tmp_path / f"M{iteration:03d}_data.bin"
            source.write_bytes(data)
            dataset = make_dataset(private=rng.random() < 0.5)
            append_on_full_disk(cli, tmpfs_dir, dataset, source, room)
            ledger.iterations += 1
            ledger.faults += 1
            ledger.notes.append(f"{len(data)} bytes, {room} bytes free")
            rid = append_again(cli, dataset, source)
            expected[rid] = sha256(data)
            run_jobs()  # the symlink job: into the depot
            assert layout.ckan_upload_path(rid).is_symlink()

    # S3 configured later: the migration puts every file in the store.
    migrated = invoke(cli, "dcor-migrate-resources-to-object-store")
    assert migrated.exit_code == 0, migrated.output
    faults.check_intact(cli, expected, ledger)
    ledger.write()
