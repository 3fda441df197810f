"""The user depot job: move uploads there, symlink them back.

Everything here runs on real filesystems: CKAN's storage folder, the depot
next to it, and a tmpfs mounted for the test as "another filesystem".
"""
from __future__ import annotations

import os
import subprocess
import sys
import time
from io import BytesIO
from pathlib import Path

import pytest
from ckan.tests import factories, helpers
from werkzeug.datastructures import FileStorage

from ckanext.dcor_depot import config
from ckanext.dcor_depot.operations import symlink
from ckanext.dcor_depot.storage import layout
from tests.support import temp as temp_helpers

MiB = 2**20


def depot_target(owner: dict, dataset: dict, resource: dict) -> Path:
    """Where the resource's file belongs in the user depot:
    ``{users depot}/{USER}-{ORG}/{PK}/{ID}/{PKGNAME}_{RESID}_{RESNAME}``."""
    return layout.user_depot_path(
        user_name=owner["user"]["name"], org_name=owner["org"]["name"],
        dataset_id=dataset["id"], dataset_name=dataset["name"],
        resource_id=resource["id"], resource_name=resource["name"])


def file_storage(data: bytes, filename: str) -> FileStorage:
    """An upload as CKAN's resource_create receives it from a form."""
    return FileStorage(BytesIO(data), filename=filename)


def hidden_files(folder: Path) -> list[str]:
    """Temporary files (all start with a dot) left in a folder."""
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def test_same_filesystem_is_a_hard_link(owner, make_dataset, upload):
    data = os.urandom(100_000)
    dataset = make_dataset()
    res = upload(dataset, data, name="cells.rtdc")
    path = layout.ckan_upload_path(res["id"])
    inode = path.stat().st_ino

    assert symlink.symlink_user_dataset(res["id"]) is True

    target = depot_target(owner, dataset, res)
    assert path.is_symlink()
    assert Path(os.readlink(path)) == target
    # No bytes were copied: the depot file is the uploaded file itself.
    assert target.stat().st_ino == inode
    assert target.stat().st_nlink == 1
    assert path.read_bytes() == data
    assert hidden_files(path.parent) == []
    assert hidden_files(target.parent) == []
    # Running the job again does nothing.
    assert symlink.symlink_user_dataset(res["id"]) is False
    assert Path(os.readlink(path)) == target


def test_depot_on_another_filesystem(owner, make_dataset, upload, tmpfs_dir,
                                     ckan_config, monkeypatch):
    monkeypatch.setitem(ckan_config, "ckanext.dcor_depot.depots_path",
                        str(tmpfs_dir))
    data = os.urandom(3 * MiB + 17)
    dataset = make_dataset()
    res = upload(dataset, data)
    path = layout.ckan_upload_path(res["id"])

    assert symlink.symlink_user_dataset(res["id"]) is True

    target = depot_target(owner, dataset, res)
    assert tmpfs_dir in target.parents
    assert path.is_symlink()
    assert Path(os.readlink(path)) == target
    assert target.read_bytes() == data
    assert target.stat().st_dev != path.parent.stat().st_dev
    assert hidden_files(path.parent) == []
    assert hidden_files(target.parent) == []
    # CKAN still serves the resource through the symlink.
    assert helpers.call_action("resource_show", id=res["id"])["size"] \
        == len(data)


@pytest.mark.parametrize("same_fs", [True, False])
def test_rerun_after_crash_between_copy_and_symlink(
        owner, make_dataset, upload, tmpfs_dir, ckan_config, monkeypatch,
        same_fs):
    if not same_fs:
        monkeypatch.setitem(ckan_config, "ckanext.dcor_depot.depots_path",
                            str(tmpfs_dir))
    data = os.urandom(MiB)
    dataset = make_dataset()
    res = upload(dataset, data)
    path = layout.ckan_upload_path(res["id"])
    target = depot_target(owner, dataset, res)
    # The state a worker leaves when it dies after placing the depot file
    # and before replacing the upload with the symlink.
    target.parent.mkdir(parents=True)
    if same_fs:
        os.link(path, target)
    else:
        target.write_bytes(data)

    assert symlink.symlink_user_dataset(res["id"]) is True
    assert Path(os.readlink(path)) == target
    assert target.read_bytes() == data
    assert hidden_files(target.parent) == []


def test_rerun_after_crash_during_copy(owner, make_dataset, upload,
                                       tmpfs_dir, ckan_config, monkeypatch):
    monkeypatch.setitem(ckan_config, "ckanext.dcor_depot.depots_path",
                        str(tmpfs_dir))
    data = os.urandom(MiB)
    dataset = make_dataset()
    res = upload(dataset, data)
    path = layout.ckan_upload_path(res["id"])
    target = depot_target(owner, dataset, res)
    target.parent.mkdir(parents=True)
    # Half-written temporary copies of workers that died while copying;
    # one of them had the pid this process has now (pids are reused).
    for pid in (os.getpid(), 999_999):
        temp = target.with_name(f".{target.name[:200]}.{pid}.part")
        temp.write_bytes(data[:1000])

    assert symlink.symlink_user_dataset(res["id"]) is True
    assert Path(os.readlink(path)) == target
    assert target.read_bytes() == data
    assert hidden_files(target.parent) == []


def test_stale_different_depot_file_is_replaced(owner, make_dataset, upload):
    data = os.urandom(50_000)
    dataset = make_dataset()
    res = upload(dataset, data)
    target = depot_target(owner, dataset, res)
    target.parent.mkdir(parents=True)
    target.write_bytes(b"not the upload")

    assert symlink.symlink_user_dataset(res["id"]) is True
    assert layout.ckan_upload_path(res["id"]).read_bytes() == data
    assert target.read_bytes() == data


@pytest.mark.parametrize("org_name", ["figshare-import", "internal-guck"])
def test_hand_managed_organizations_are_not_moved(pipeline, org_name):
    user = factories.User()
    org = factories.Organization(
        name=org_name, users=[{"name": user["name"], "capacity": "admin"}])
    dataset = factories.Dataset(user=user, owner_org=org["id"])
    data = b"placed by hand"
    res = helpers.call_action(
        "resource_create", context={"user": user["name"]},
        package_id=dataset["id"], url="upload",
        upload=file_storage(data, "hand.rtdc"))
    path = layout.ckan_upload_path(res["id"])

    assert symlink.symlink_user_dataset(res["id"]) is False
    assert not path.is_symlink()
    assert path.read_bytes() == data
    users_depot = config.users_depot_path()
    assert not any(res["id"] in p.name for p in users_depot.rglob("*"))


def test_symlinked_upload_path_is_left_alone(make_dataset, upload, tmp_path):
    dataset = make_dataset()
    res = upload(dataset, b"original upload")
    path = layout.ckan_upload_path(res["id"])
    elsewhere = tmp_path / "managed-by-hand.rtdc"
    elsewhere.write_bytes(b"somewhere else")
    path.unlink()
    path.symlink_to(elsewhere)

    assert symlink.symlink_user_dataset(res["id"]) is False
    assert os.readlink(path) == str(elsewhere)
    assert elsewhere.read_bytes() == b"somewhere else"


def test_missing_upload_does_nothing(owner, make_dataset, upload):
    dataset = make_dataset()
    res = upload(dataset, b"soon gone")
    path = layout.ckan_upload_path(res["id"])
    path.unlink()
    assert symlink.symlink_user_dataset(res["id"]) is False
    assert not os.path.lexists(path)  # no dangling symlink made
    assert not depot_target(owner, dataset, res).parent.exists()


def test_two_concurrent_runs(owner, make_dataset, upload, run_concurrently):
    data = os.urandom(2 * MiB)
    dataset = make_dataset()
    res = upload(dataset, data)
    path = layout.ckan_upload_path(res["id"])

    def job():
        return symlink.symlink_user_dataset(res["id"])

    results, errors = run_concurrently(job, job)

    assert errors == []
    assert sorted(results) == [False, True]
    target = depot_target(owner, dataset, res)
    assert Path(os.readlink(path)) == target
    assert target.read_bytes() == data
    assert hidden_files(path.parent) == []
    assert hidden_files(target.parent) == []
    assert [p.name for p in target.parent.iterdir()] == [target.name]


# Two processes copying across filesystems at the same time. They wait
# for a flag file so that both are inside move_and_link together.
_MOVE_SCRIPT = """
import os, sys, time
from pathlib import Path
from ckanext.dcor_depot.storage.depot import move_and_link
source, target, go = map(Path, sys.argv[1:4])
while not go.exists():
    time.sleep(0.01)
print(move_and_link(source, target))
"""


def test_two_processes_across_filesystems(tmp_path, tmpfs_dir):
    data = os.urandom(40 * MiB)
    source = tmp_path / "storage" / "abc" / "def" / "ghijkl"
    source.parent.mkdir(parents=True)
    source.write_bytes(data)
    target = tmpfs_dir / "user-org" / "ab" / "cd" / "pkg_rid_name.rtdc"
    go = tmp_path / "go"
    procs = [subprocess.Popen(
        [sys.executable, "-c", _MOVE_SCRIPT, str(source), str(target),
         str(go)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(2)]
    time.sleep(0.5)  # let both import
    go.touch()
    outputs = [proc.communicate(timeout=120) for proc in procs]

    assert [proc.returncode for proc in procs] == [0, 0], outputs
    assert sorted(out.strip() for out, _ in outputs) == ["False", "True"]
    assert Path(os.readlink(source)) == target
    assert target.read_bytes() == data
    assert os.listdir(source.parent) == [source.name]
    assert os.listdir(target.parent) == [target.name]


@pytest.mark.parametrize("name", [
    ("../../x\x00y" * 100)[:1000],
    "../" + "数" * 997,  # multi-byte: 255 bytes are only 85 characters
], ids=["ascii", "utf8"])
def test_hostile_resource_name_stays_inside_the_depot(owner, make_dataset,
                                                      upload, name):
    data = b"hostile"
    dataset = make_dataset()
    res = upload(dataset, data, name="upload.rtdc")
    # PostgreSQL refuses NUL in text, so CKAN cannot store such a name;
    # the depot still must cope with whatever a name contains.
    stored_name = name.replace("\x00", "")
    helpers.call_action("resource_patch", id=res["id"], name=stored_name)
    res = helpers.call_action("resource_show", id=res["id"])
    assert res["name"] == stored_name

    assert symlink.symlink_user_dataset(res["id"]) is True

    root = config.users_depot_path().resolve()
    target = Path(os.readlink(layout.ckan_upload_path(res["id"])))
    assert root in target.resolve().parents
    assert len(target.name.encode()) <= 255
    assert res["id"] in target.name
    assert target.read_bytes() == data
    assert hidden_files(target.parent) == []

    # The same holds for the NUL name at the path level.
    path = layout.user_depot_path(
        user_name=owner["user"]["name"], org_name=owner["org"]["name"],
        dataset_id=dataset["id"], dataset_name=dataset["name"],
        resource_id=res["id"], resource_name=name)
    assert root in path.resolve().parents
    assert "\x00" not in str(path)
    assert len(path.name.encode()) <= 255


@pytest.mark.parametrize("leads_to", ["upload", "copy elsewhere"])
def test_symlink_at_the_target_is_never_taken_for_a_copy(
        owner, make_dataset, upload, tmp_path, leads_to):
    data = os.urandom(200_000)
    dataset = make_dataset()
    res = upload(dataset, data)
    path = layout.ckan_upload_path(res["id"])
    target = depot_target(owner, dataset, res)
    target.parent.mkdir(parents=True)
    if leads_to == "upload":
        # Following it reaches the upload itself: "the same file".
        os.symlink(path, target)
    else:
        # The same bytes, but in a file the depot does not own.
        elsewhere = tmp_path / "elsewhere.rtdc"
        elsewhere.write_bytes(data)
        os.symlink(elsewhere, target)

    assert symlink.symlink_user_dataset(res["id"]) is True

    assert path.is_symlink() and Path(os.readlink(path)) == target
    assert not target.is_symlink() and target.is_file()
    assert target.read_bytes() == data
    assert path.read_bytes() == data
    assert hidden_files(target.parent) == []
    if leads_to == "copy elsewhere":
        elsewhere.unlink()
        assert path.read_bytes() == data


def test_stale_temporary_files_are_removed(owner, make_dataset, upload):
    dataset = make_dataset()
    res = upload(dataset, b"new upload")
    target = depot_target(owner, dataset, res)
    # Left by killed runs for other resources in the same folders.
    in_depot = temp_helpers.plant_set(target.parent, "pkg_other_x.rtdc",
                                      "part")
    upload_dir = layout.ckan_upload_path(res["id"]).parent
    in_uploads = temp_helpers.plant_set(upload_dir, "other", "symlink")

    assert symlink.symlink_user_dataset(res["id"]) is True

    temp_helpers.assert_only_dead_removed(in_depot)
    temp_helpers.assert_only_dead_removed(in_uploads)
    assert target.read_bytes() == b"new upload"
