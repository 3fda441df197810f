"""``ckan import-figshare`` against a local stand-in of the figshare API.

figshare itself cannot be reached from the tests, so a small HTTP server on
127.0.0.1 (``tests/support/figshare.py``, started by the ``figshare_site``
fixture) answers ``/articles/{id}/versions/{v}`` and serves the files,
which are generated here (real RT-DC files written with dclab). Everything
else is real: CKAN, PostgreSQL, Redis and the Ceph object store.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import uuid
from pathlib import Path

import ckan.plugins.toolkit as tk
import pytest
from ckan.tests import helpers

from ckanext.dcor_depot import config
from ckanext.dcor_depot.operations.figshare import client, metadata
from ckanext.dcor_depot.sample_data import make_rtdc_file
from ckanext.dcor_depot.storage import layout, object_store
from tests.support import temp as temp_helpers
from tests.support.data import upstream_id
from tests.support.figshare import (
    FakeFigshare,
    dataset_missing,
    depot_file,
    doi_of,
    files_below,
    name_of,
    show,
)
from tests.support.stack import anonymous_get, run_jobs, sysadmin_context


@pytest.fixture
def rtdc_data(tmp_path):
    """Two different small RT-DC files."""
    (tmp_path / "gen").mkdir()
    one = make_rtdc_file(tmp_path / "gen" / "a.rtdc", events=150, seed=1)
    two = make_rtdc_file(tmp_path / "gen" / "b.rtdc", events=120, seed=2)
    return one.read_bytes(), two.read_bytes()


# ------------------------------------------------------------------ tests
def test_complete_import(figshare_site, rtdc_data):
    one, two = rtdc_data
    notes = b"plain text notes\n" * 10
    art = figshare_site.fake.add_article([
        {"name": "M1 blood.rtdc", "data": one},
        {"name": "M2_blood.rtdc", "data": two},
        {"name": "README.txt", "data": notes},
        {"name": "Huge raw data", "link_only": True},
    ], license="CC0", title="Blood cells",
        description="<p>Cells in <b>flow</b></p><ul><li>HL60</li></ul>",
        authors=["Ann Alpha", "Bob Beta"],
        references=["10.1234/abc.5", "https://example.org/paper"])
    other = figshare_site.fake.add_article(
        [{"name": "table.csv", "data": b"a,b\n"}], license="CC BY 4.0")
    figshare_site.write_dois("# figshare mirror", "", doi_of(art),
                             doi_of(other))

    result = figshare_site.run()

    assert result.exit_code == 0, result.output
    assert result.output.strip().endswith(
        "import-figshare: 2 imported, 0 skipped, 0 failed")
    assert f"M1 blood.rtdc: downloaded {len(one)} bytes" in result.stdout
    assert "Huge raw data: link-only, skipped" in result.stdout
    assert result.stderr == ""

    org = helpers.call_action("organization_show", id="figshare-import")
    assert org["title"] == "Figshare mirror"
    assert org["description"]

    dataset = show(name_of(art))
    assert dataset["id"] == upstream_id(art["doi"], name_of(art))
    assert dataset["title"] == "Blood cells"
    assert dataset["state"] == "active"
    assert dataset["private"] is False
    assert dataset["owner_org"] == org["id"]
    assert dataset["license_id"] == "CC0-1.0"
    assert "**flow**" in dataset["notes"] and "* HL60" in dataset["notes"]
    assert "<" not in dataset["notes"]
    extras = {e["key"]: e["value"] for e in dataset["extras"]}
    assert extras["doi"] == art["doi"]
    assert extras["authors"] == "Ann Alpha, Bob Beta"
    assert extras["references"] == ("doi:10.1234/abc.5\n"
                                    "https://example.org/paper")
    assert show(name_of(other))["license_id"] == "cc-by"

    resources = {r["name"]: r for r in dataset["resources"]}
    assert sorted(resources) == ["M1 blood.rtdc", "M2_blood.rtdc",
                                 "README.txt"]
    bucket = object_store.bucket_name(org["id"])
    s3 = object_store.get_client()
    for name, data in [("M1 blood.rtdc", one), ("M2_blood.rtdc", two),
                       ("README.txt", notes)]:
        res = resources[name]
        assert res["id"] == upstream_id(dataset["id"],
                                        hashlib.md5(data).hexdigest())
        assert res["url_type"] == "upload"
        assert res["size"] == len(data)
        assert res["sha256"] == hashlib.sha256(data).hexdigest()
        upload = layout.ckan_upload_path(res["id"])
        assert upload.is_symlink()
        assert os.readlink(upload) == str(depot_file(art, name))
        assert depot_file(art, name).read_bytes() == data
        # the CKAN download serves the depot file
        assert upload.read_bytes() == data
        key = layout.object_key(res["id"])
        assert tk.asbool(res["s3_available"])
        assert res["s3_url"] == object_store.object_url(bucket, key)
        assert s3.get_object(Bucket=bucket, Key=key)["Body"].read() == data
        resp = anonymous_get(res["s3_url"])
        assert resp.status_code == 200 and resp.content == data
    for name in ("M1 blood.rtdc", "M2_blood.rtdc"):
        assert resources[name]["format"] == "RT-DC"
        assert resources[name]["mimetype"] == "RT-DC"
    assert resources["README.txt"]["format"] != "RT-DC"
    assert files_below(figshare_site.tmp_dir) == []

    # The jobs queued by after_resource_create leave figshare data where
    # it is (no move into the user depot) and change nothing.
    before = show(name_of(art))
    run_jobs()
    after = show(name_of(art))
    assert after["metadata_modified"] == before["metadata_modified"]
    for res in after["resources"]:
        assert os.readlink(layout.ckan_upload_path(res["id"])) == str(
            depot_file(art, res["name"]))
    assert files_below(config.users_depot_path()) == []


def test_second_run_downloads_and_changes_nothing(figshare_site, rtdc_data):
    art = figshare_site.fake.add_article([
        {"name": "a.rtdc", "data": rtdc_data[0]},
        {"name": "notes.txt", "data": b"notes"},
    ])
    figshare_site.write_dois(doi_of(art))
    assert figshare_site.run().exit_code == 0
    first = show(name_of(art))
    downloads = len(figshare_site.fake.downloads())
    assert downloads == 2

    result = figshare_site.run()

    assert result.exit_code == 0, result.output
    assert "import-figshare: 0 imported, 1 skipped, 0 failed" \
        in result.output
    assert len(figshare_site.fake.downloads()) == downloads
    again = show(name_of(art))
    assert again["metadata_modified"] == first["metadata_modified"]
    assert [(r["id"], r["metadata_modified"]) for r in again["resources"]] \
        == [(r["id"], r["metadata_modified"]) for r in first["resources"]]


def test_md5_mismatch_then_resume(figshare_site, rtdc_data):
    good = rtdc_data[0]
    art = figshare_site.fake.add_article([
        {"name": "good.rtdc", "data": good},
        {"name": "bad.rtdc", "data": rtdc_data[1], "md5": "0" * 32},
    ])
    figshare_site.write_dois(doi_of(art))
    found = hashlib.md5(rtdc_data[1]).hexdigest()

    result = figshare_site.run()

    assert result.exit_code == 1
    assert "import-figshare: 0 imported, 0 skipped, 1 failed" \
        in result.stdout
    assert "bad.rtdc" in result.stderr
    assert "0" * 32 in result.stderr and found in result.stderr
    assert "Traceback" not in result.output
    dataset = show(name_of(art))
    assert dataset["state"] == "draft"
    assert [r["name"] for r in dataset["resources"]] == ["good.rtdc"]
    assert not depot_file(art, "bad.rtdc").exists()
    assert [p.name for p in files_below(config.figshare_depot_path())
            if not p.name.startswith(".")] == ["good.rtdc"]
    assert files_below(figshare_site.tmp_dir) == []

    # figshare fixed its checksum: the next run completes the dataset
    # without fetching the good file again.
    art["files"][1]["computed_md5"] = found
    result = figshare_site.run()
    assert result.exit_code == 0, result.output
    assert "import-figshare: 1 imported, 0 skipped, 0 failed" \
        in result.stdout
    dataset = show(name_of(art))
    assert dataset["state"] == "active"
    assert sorted(r["name"] for r in dataset["resources"]) == [
        "bad.rtdc", "good.rtdc"]
    good_path = art["files"][0]["download_url"].removeprefix(
        figshare_site.fake.url)
    assert figshare_site.fake.downloads().count(good_path) == 1


def test_unknown_license_is_refused(figshare_site):
    bad = figshare_site.fake.add_article([{"name": "x.txt", "data": b"x"}],
                                         license="MIT")
    good = figshare_site.fake.add_article([{"name": "y.txt", "data": b"y"}],
                                          license="CC BY-SA 4.0")
    figshare_site.write_dois(doi_of(bad), doi_of(good))

    result = figshare_site.run()

    assert result.exit_code == 1
    assert "import-figshare: 1 imported, 0 skipped, 1 failed" \
        in result.stdout
    assert bad["doi"] in result.stderr and "'MIT'" in result.stderr
    assert dataset_missing(bad)
    assert show(name_of(good))["license_id"] == "cc-by-sa"
    assert not (config.figshare_depot_path() / str(bad["id"])).exists()
    assert figshare_site.fake.downloads() == [
        good["files"][0]["download_url"].removeprefix(figshare_site.fake.url)]


def test_malformed_doi_line(figshare_site):
    art = figshare_site.fake.add_article([{"name": "x.txt", "data": b"x"}])
    figshare_site.write_dois("# comment", "10.6084/m9.figshare.abc.v1", "",
                             doi_of(art))

    result = figshare_site.run()

    assert result.exit_code == 1
    assert "import-figshare: 1 imported, 0 skipped, 1 failed" \
        in result.stdout
    assert f"{figshare_site.dois_path}:2:" in result.stderr
    assert "10.6084/m9.figshare.abc.v1" in result.stderr
    assert show(name_of(art))["state"] == "active"


def test_server_errors_are_retried(figshare_site):
    art = figshare_site.fake.add_article([{"name": "x.txt", "data": b"data"}])
    file_path = art["files"][0]["download_url"].removeprefix(
        figshare_site.fake.url)
    figshare_site.fake.failures[FakeFigshare.article_path(art)] = [500, 503]
    figshare_site.fake.failures[file_path] = [502]
    figshare_site.write_dois(doi_of(art))

    result = figshare_site.run()

    assert result.exit_code == 0, result.output
    assert "import-figshare: 1 imported, 0 skipped, 0 failed" \
        in result.stdout
    assert figshare_site.fake.requests.count(
        FakeFigshare.article_path(art)) == 3
    assert figshare_site.fake.requests.count(file_path) == 2
    dataset = show(name_of(art))
    assert dataset["state"] == "active"
    assert len(dataset["resources"]) == 1


def test_persistent_server_error_fails_after_retries(figshare_site):
    art = figshare_site.fake.add_article([{"name": "x.txt", "data": b"data"}])
    figshare_site.fake.failures[FakeFigshare.article_path(art)] = [500] * 10
    figshare_site.write_dois(doi_of(art))

    result = figshare_site.run()

    assert result.exit_code == 1
    assert "HTTP 500" in result.stderr
    assert figshare_site.fake.requests.count(FakeFigshare.article_path(art)) \
        == client.ATTEMPTS
    assert dataset_missing(art)


def test_missing_article(figshare_site):
    figshare_site.write_dois("10.6084/m9.figshare.999999999.v1")

    result = figshare_site.run()

    assert result.exit_code == 1
    assert "import-figshare: 0 imported, 0 skipped, 1 failed" \
        in result.stdout
    assert "10.6084/m9.figshare.999999999.v1" in result.stderr
    assert "not found (HTTP 404" in result.stderr
    assert "Traceback" not in result.output
    # a 404 is final: no retries
    assert figshare_site.fake.requests == ["/articles/999999999/versions/1"]


def test_limit(figshare_site):
    first = figshare_site.fake.add_article([{"name": "x.txt", "data": b"x"}])
    second = figshare_site.fake.add_article([{"name": "y.txt", "data": b"y"}])
    figshare_site.write_dois(doi_of(first), doi_of(second))

    result = figshare_site.run("--limit", "1")

    assert result.exit_code == 0, result.output
    assert "import-figshare: 1 imported, 0 skipped, 0 failed" \
        in result.stdout
    assert show(name_of(first))["state"] == "active"
    assert dataset_missing(second)


def test_invalid_rtdc_file_is_refused(figshare_site):
    art = figshare_site.fake.add_article([
        {"name": "fake.rtdc", "data": b"this is not HDF5"}])
    figshare_site.write_dois(doi_of(art))

    result = figshare_site.run()

    assert result.exit_code == 1
    assert "fake.rtdc" in result.stderr
    assert "not a valid RT-DC file" in result.stderr
    dataset = show(name_of(art))
    assert dataset["state"] == "draft" and dataset["resources"] == []
    assert not depot_file(art, "fake.rtdc").exists()
    assert files_below(figshare_site.tmp_dir) == []


def test_tmp_dir_on_another_filesystem(figshare_site, monkeypatch, ckan_config,
                                       rtdc_data):
    shm = Path("/dev/shm")
    if not shm.is_dir() or (os.stat(shm).st_dev
                            == os.stat(figshare_site.tmp_dir.parent).st_dev):
        pytest.skip("no second filesystem for tmp_dir")
    tmp = shm / f"dcor-figshare-test-{uuid.uuid4()}"
    monkeypatch.setitem(ckan_config, "ckanext.dcor_depot.tmp_dir", str(tmp))
    try:
        art = figshare_site.fake.add_article([{"name": "a.rtdc",
                                               "data": rtdc_data[0]}])
        figshare_site.write_dois(doi_of(art))
        result = figshare_site.run()
        assert result.exit_code == 0, result.output
        path = depot_file(art, "a.rtdc")
        assert path.is_file() and not path.is_symlink()
        assert path.read_bytes() == rtdc_data[0]
        assert files_below(tmp) == []
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


@pytest.mark.ckan_config("dcor_object_store.access_key_id", "")
@pytest.mark.ckan_config("dcor_object_store.secret_access_key", "")
def test_without_s3(figshare_site, rtdc_data):
    art = figshare_site.fake.add_article(
        [{"name": "a.rtdc", "data": rtdc_data[0]}])
    figshare_site.write_dois(doi_of(art))

    result = figshare_site.run()

    assert result.exit_code == 0, result.output
    res = show(name_of(art))["resources"][0]
    assert not res.get("s3_available")
    assert res["sha256"] == hashlib.sha256(rtdc_data[0]).hexdigest()
    assert layout.ckan_upload_path(res["id"]).is_symlink()


def test_missing_doi_list(figshare_site, tmp_path, monkeypatch, ckan_config):
    monkeypatch.setitem(ckan_config, "ckanext.dcor_depot.figshare_dois_path",
                        str(tmp_path / "nope.txt"))
    result = figshare_site.run()
    assert result.exit_code == 1
    assert "cannot read the DOI list" in result.stderr
    assert "nope.txt" in result.stderr


def test_files_already_in_the_depot_are_not_downloaded(figshare_site,
                                                       rtdc_data):
    """A run that stopped after placing a file resumes without fetching
    it again; a file of the right size but wrong bytes is replaced."""
    good, other = rtdc_data
    corrupt = bytes(len(other))  # same size, other bytes
    art = figshare_site.fake.add_article([{"name": "a.rtdc", "data": good},
                                          {"name": "b.rtdc", "data": other}])
    for name, data in [("a.rtdc", good), ("b.rtdc", corrupt)]:
        depot_file(art, name).parent.mkdir(parents=True, exist_ok=True)
        depot_file(art, name).write_bytes(data)
    figshare_site.write_dois(doi_of(art))

    result = figshare_site.run()

    assert result.exit_code == 0, result.output
    assert "a.rtdc: already in the depot (MD5 verified)" in result.stdout
    assert figshare_site.fake.downloads() == [
        art["files"][1]["download_url"].removeprefix(figshare_site.fake.url)]
    assert depot_file(art, "b.rtdc").read_bytes() == other
    dataset = show(name_of(art))
    assert dataset["state"] == "active"
    assert sorted(r["name"] for r in dataset["resources"]) == [
        "a.rtdc", "b.rtdc"]


# ------------------------------------------------- integrity (issue 11)
def own_bytes_everywhere(dataset: dict, files: list[tuple[str, bytes]]
                         ) -> list[Path]:
    """Every file's resource reads back its own bytes (depot file, upload
    path, object); returns the depot files."""
    by_id = {r["id"]: r for r in dataset["resources"]}
    bucket = object_store.bucket_name(dataset["owner_org"])
    s3 = object_store.get_client()
    targets = []
    for name, data in files:
        sha = hashlib.sha256(data).hexdigest()
        rid = metadata.resource_id(dataset["id"],
                                   hashlib.md5(data).hexdigest())
        res = by_id[rid]
        assert res["name"] == name
        assert res["sha256"] == sha
        upload = layout.ckan_upload_path(rid)
        target = Path(os.readlink(upload))
        assert config.figshare_depot_path() in target.parents
        assert target.is_file() and not target.is_symlink()
        assert len(target.name.encode()) <= 255
        assert hashlib.sha256(target.read_bytes()).hexdigest() == sha, name
        assert hashlib.sha256(upload.read_bytes()).hexdigest() == sha, name
        stored = s3.get_object(Bucket=bucket,
                               Key=layout.object_key(rid))["Body"].read()
        assert hashlib.sha256(stored).hexdigest() == sha, name
        targets.append(target)
    return targets


def test_look_alike_names_never_share_a_depot_file(figshare_site, rtdc_data,
                                                   tmp_path):
    third = make_rtdc_file(tmp_path / "gen" / "c.rtdc", events=130,
                           seed=3).read_bytes()
    files = [("data.rtdc", rtdc_data[0]), ("_data.rtdc", rtdc_data[1]),
             (" data.rtdc", third),
             # same size, other bytes: a size check cannot tell them apart
             ("a/b", b"first " * 100), ("a_b", b"other " * 100)]
    art = figshare_site.fake.add_article(
        [{"name": n, "data": d} for n, d in files])
    figshare_site.write_dois(doi_of(art))

    result = figshare_site.run()

    assert result.exit_code == 0, result.output
    dataset = show(name_of(art))
    assert dataset["state"] == "active"
    assert len(dataset["resources"]) == len(files)
    targets = own_bytes_everywhere(dataset, files)
    assert len(set(targets)) == len(files)
    # Names that need no change keep their plain depot name.
    assert depot_file(art, "data.rtdc") in targets
    assert depot_file(art, "a_b") in targets
    for target in targets:
        assert layout.safe_component(target.name) == target.name

    # The names are stable: a rerun finds every file where it put it.
    downloads = len(figshare_site.fake.downloads())
    again = figshare_site.run()
    assert again.exit_code == 0, again.output
    assert "complete, skipped" in again.stdout
    assert len(figshare_site.fake.downloads()) == downloads
    assert own_bytes_everywhere(show(name_of(art)), files) == targets


def test_rerun_judges_completeness_by_checksum(figshare_site):
    data = b"measured " * 200
    art = figshare_site.fake.add_article([{"name": "m.txt", "data": data}])
    figshare_site.write_dois(doi_of(art))
    assert figshare_site.run().exit_code == 0
    # Same size, other bytes (e.g. overwritten by hand or by bit rot).
    depot_file(art, "m.txt").write_bytes(b"x" * len(data))

    result = figshare_site.run()

    assert result.exit_code == 0, result.output
    assert "complete, skipped" not in result.stdout
    assert len(figshare_site.fake.downloads()) == 2
    own_bytes_everywhere(show(name_of(art)), [("m.txt", data)])


@pytest.mark.parametrize("other_fs", [False, True],
                         ids=["same-fs", "tmp-on-other-fs"])
def test_long_non_ascii_name(figshare_site, rtdc_data, monkeypatch,
                             ckan_config, other_fs):
    tmp = figshare_site.tmp_dir
    if other_fs:
        shm = Path("/dev/shm")
        parent = figshare_site.tmp_dir.parent
        if not shm.is_dir() or os.stat(shm).st_dev == os.stat(parent).st_dev:
            pytest.skip("no second filesystem for tmp_dir")
        tmp = shm / f"dcor-figshare-test-{uuid.uuid4()}"
        monkeypatch.setitem(ckan_config, "ckanext.dcor_depot.tmp_dir",
                            str(tmp))
    name = "ü" * 200 + ".rtdc"  # 405 bytes of UTF-8
    art = figshare_site.fake.add_article(
        [{"name": name, "data": rtdc_data[0]}])
    figshare_site.write_dois(doi_of(art))
    try:
        result = figshare_site.run()

        assert result.exit_code == 0, result.output
        dataset = show(name_of(art))
        assert dataset["state"] == "active"
        target, = own_bytes_everywhere(dataset, [(name, rtdc_data[0])])
        assert target.name.endswith(".rtdc")  # dclab and users see RT-DC
        assert dataset["resources"][0]["format"] == "RT-DC"
        assert files_below(tmp) == []
    finally:
        if other_fs:
            shutil.rmtree(tmp, ignore_errors=True)


def test_stale_temporary_files_are_removed(figshare_site):
    art = figshare_site.fake.add_article([{"name": "x.txt", "data": b"x"}])
    figshare_site.write_dois(doi_of(art))
    in_tmp = temp_helpers.plant_set(figshare_site.tmp_dir, "x.txt", "figshare")
    in_depot = temp_helpers.plant_set(depot_file(art, "x.txt").parent,
                                      "x.txt", "part")
    foreign = figshare_site.tmp_dir / ".x.txt.1.other"  # not a name of ours
    foreign.write_bytes(b"not ours")
    old = os.stat(in_tmp["old_dead"]).st_mtime
    os.utime(foreign, (old, old))

    result = figshare_site.run()

    assert result.exit_code == 0, result.output
    temp_helpers.assert_only_dead_removed(in_tmp)
    temp_helpers.assert_only_dead_removed(in_depot)
    assert foreign.exists()


@pytest.mark.parametrize("url", ["file:///etc/hostname",
                                 "ftp://127.0.0.1/x.txt",
                                 "gopher://127.0.0.1/x.txt"])
def test_download_url_must_be_http_or_https(figshare_site, url):
    art = figshare_site.fake.add_article([
        {"name": "fine.txt", "data": b"fine"},
        {"name": "elsewhere.txt", "data": b"secret", "download_url": url},
    ])
    figshare_site.write_dois(doi_of(art))

    result = figshare_site.run()

    assert result.exit_code == 1
    assert "elsewhere.txt" in result.stderr and url in result.stderr
    assert "only http and https" in result.stderr
    assert "Traceback" not in result.output
    dataset = show(name_of(art))
    assert dataset["state"] == "draft"
    assert [r["name"] for r in dataset["resources"]] == ["fine.txt"]
    assert not depot_file(art, "elsewhere.txt").exists()
    assert files_below(figshare_site.tmp_dir) == []


def test_redirect_to_another_scheme_is_refused(figshare_site):
    art = figshare_site.fake.add_article([
        {"name": "moved.txt", "data": b"moved"},
        {"name": "fine.txt", "data": b"fine"},
    ])
    moved, fine = (f["download_url"].removeprefix(figshare_site.fake.url)
                   for f in art["files"])
    figshare_site.fake.redirects[moved] = "file:///etc/hostname"
    # A redirect to http(s) is followed as before.
    figshare_site.fake.files["/elsewhere/fine"] = b"fine"
    figshare_site.fake.redirects[fine] = \
        figshare_site.fake.url + "/elsewhere/fine"
    figshare_site.write_dois(doi_of(art))

    result = figshare_site.run()

    assert result.exit_code == 1
    assert "moved.txt" in result.stderr
    assert "file:///etc/hostname" in result.stderr
    assert "only http and https" in result.stderr
    dataset = show(name_of(art))
    assert [r["name"] for r in dataset["resources"]] == ["fine.txt"]
    assert not depot_file(art, "moved.txt").exists()
    assert files_below(figshare_site.tmp_dir) == []


def test_download_stops_at_the_announced_size(figshare_site):
    body = os.urandom(32 * 2**20)
    announced = 1000
    art = figshare_site.fake.add_article([{
        "name": "big.bin", "data": body, "size": announced,
        "md5": hashlib.md5(body[:announced]).hexdigest()}])
    figshare_site.write_dois(doi_of(art))
    path = art["files"][0]["download_url"].removeprefix(figshare_site.fake.url)

    result = figshare_site.run()

    assert result.exit_code == 1
    assert "big.bin" in result.stderr
    assert f"more than the {announced} bytes figshare announced" \
        in result.stderr
    # It hung up early instead of reading all 32 MiB first.
    assert figshare_site.fake.sent[path] < len(body) // 2
    assert not depot_file(art, "big.bin").exists()
    assert files_below(figshare_site.tmp_dir) == []
    assert show(name_of(art))["resources"] == []


def test_differing_supplied_md5_is_reported(figshare_site):
    data = b"payload " * 50
    computed = hashlib.md5(data).hexdigest()
    supplied = "0123456789abcdef" * 2
    art = figshare_site.fake.add_article([{"name": "p.txt", "data": data,
                                           "supplied_md5": supplied}])
    figshare_site.write_dois(doi_of(art))

    result = figshare_site.run()

    assert result.exit_code == 0, result.output
    warnings = [line for line in result.stderr.splitlines()
                if "warning" in line.lower()]
    assert len(warnings) == 1, result.stderr
    assert "p.txt" in warnings[0]
    assert supplied in warnings[0] and computed in warnings[0]
    # The bytes are verified against computed_md5; supplied_md5 names
    # the resource (upstream's ids).
    dataset = show(name_of(art))
    assert [r["id"] for r in dataset["resources"]] == [
        upstream_id(dataset["id"], supplied)]
    assert dataset["resources"][0]["sha256"] == \
        hashlib.sha256(data).hexdigest()



# ------------------------------------- data made by upstream (issue 23)
def store_upstream_resource(dataset: dict, rid: str, name: str,
                            data: bytes) -> None:
    """A resource as upstream 0.14 made it: only in S3 (id, name,
    s3_available), no upload path, no depot file."""
    bucket = object_store.bucket_name(dataset["owner_org"])
    object_store.ensure_bucket(bucket)
    object_store.get_client().put_object(
        Bucket=bucket, Key=layout.object_key(rid), Body=data)
    helpers.call_action("resource_create", context=sysadmin_context(),
                        package_id=dataset["id"], id=rid, name=name,
                        s3_available=True)


def upstream_dataset(figshare_site, art: dict, dataset_id: str,
                     files: list[tuple[str, bytes]]) -> dict:
    """The active dataset upstream's import left for ``art``."""
    org = helpers.call_action("organization_create",
                              context=sysadmin_context(),
                              name="figshare-import", title="Figshare mirror")
    dataset = helpers.call_action(
        "package_create", context=sysadmin_context(), id=dataset_id,
        name=name_of(art), owner_org=org["id"], private=False,
        title=art["title"], license_id="CC0-1.0")
    for (name, data), entry in zip(files, art["files"], strict=True):
        rid = upstream_id(dataset["id"], entry["supplied_md5"])
        store_upstream_resource(dataset, rid, name, data)
    return show(dataset["id"])


@pytest.mark.parametrize("derived", [True, False],
                         ids=["upstream-id", "other-id"])
def test_rerun_over_an_upstream_import_changes_nothing(figshare_site, derived):
    """Upstream's datasets are found by name and continued: no second
    dataset or resource, no refusal; the resource ids are upstream's."""
    files = [("a.txt", b"first " * 30), ("b.txt", b"second " * 30)]
    # upper case, as some uploaders supply it: taken verbatim
    supplied = hashlib.md5(files[1][1]).hexdigest().upper()
    art = figshare_site.fake.add_article([
        {"name": files[0][0], "data": files[0][1]},
        {"name": files[1][0], "data": files[1][1],
         "supplied_md5": supplied}])
    dataset_id = (upstream_id(art["doi"], name_of(art)) if derived
                  else str(uuid.uuid4()))
    before = upstream_dataset(figshare_site, art, dataset_id, files)
    figshare_site.write_dois(doi_of(art))

    result = figshare_site.run()

    assert result.exit_code == 0, result.output
    assert "not touched" not in result.output
    after = show(name_of(art))
    assert after["id"] == dataset_id
    assert after["metadata_modified"] == before["metadata_modified"]
    expected = sorted(upstream_id(dataset_id, f["supplied_md5"])
                      for f in art["files"])
    assert sorted(r["id"] for r in after["resources"]) == expected
    assert [(r["id"], r["metadata_modified"]) for r in after["resources"]] \
        == [(r["id"], r["metadata_modified"]) for r in before["resources"]]
    org_datasets = helpers.call_action(
        "organization_show", id="figshare-import",
        include_datasets=True)["package_count"]
    assert org_datasets == 1
    # The depot now holds the files too; the next run has nothing to do.
    again = figshare_site.run()
    assert again.exit_code == 0, again.output
    assert "complete, skipped" in again.stdout


def test_a_dataset_of_that_name_in_another_organization_is_refused(
        figshare_site, owner):
    art = figshare_site.fake.add_article([{"name": "x.txt", "data": b"x"}])
    other = helpers.call_action(
        "package_create", context=sysadmin_context(), name=name_of(art),
        owner_org=owner["org"]["id"])
    figshare_site.write_dois(doi_of(art))

    result = figshare_site.run()

    assert result.exit_code == 1
    assert "outside figshare-import; not touched" in result.stderr
    assert show(other["id"])["resources"] == []
    assert figshare_site.fake.downloads() == []
