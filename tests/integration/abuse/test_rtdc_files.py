"""Truncated and oversized ``.rtdc`` files.

A file that claims RT-DC (its name) but does not open as RT-DC is refused
before anything is stored; a real RT-DC file with bytes after its end is
still RT-DC and is stored byte for byte.

Already covered: bytes that are no HDF5 at all (``cli/test_append.test_
corrupt_rtdc_is_refused``,
``operations/figshare/test_importer.test_invalid_rtdc_file_is_refused``),
a figshare download larger than announced
(``test_download_stops_at_the_announced_size``), a direct upload part
larger than its URL allows (``logic/test_upload_urls.test_a_part_url_
takes_exactly_its_parts_size``), and files larger than
``upload_max_size`` (``test_bad_sizes_are_refused``).
"""
from __future__ import annotations

import hashlib
import os

import h5py
import pytest

from ckanext.dcor_depot.sample_data import make_rtdc_file
from ckanext.dcor_depot.storage import layout, rtdc
from tests.support.cli import (
    bucket_keys,
    bucket_of,
    dataset_resources,
    invoke,
    resource_object,
)
from tests.support.figshare import (
    depot_file,
    doi_of,
    files_below,
    name_of,
    show,
)

pytestmark = pytest.mark.usefixtures("with_extended_cli")


@pytest.fixture
def whole(tmp_path) -> bytes:
    return make_rtdc_file(tmp_path / "whole.rtdc", events=300,
                          seed=7).read_bytes()


@pytest.mark.parametrize("keep", [0.5, 0.9, 4096, 8])
def test_truncated_rtdc_is_refused_and_nothing_stored(
        cli, owner, make_dataset, tmp_path, whole, keep):
    cut = int(len(whole) * keep) if keep < 1 else int(keep)
    path = tmp_path / "cut.rtdc"
    path.write_bytes(whole[:cut])
    ds = make_dataset()

    result = invoke(cli, "append-resource", path, ds["id"],
                    "--delete-source")

    assert result.exit_code == 1
    assert "is not a valid RT-DC file" in result.stderr
    assert "Traceback" not in result.output
    assert dataset_resources(ds["id"]) == []
    assert bucket_keys(bucket_of(owner)) == []
    assert path.read_bytes() == whole[:cut]  # the source is kept


def test_hdf5_that_is_not_rtdc_is_refused(cli, owner, make_dataset,
                                          tmp_path):
    path = tmp_path / "other.rtdc"
    with h5py.File(path, "w") as h5:
        h5["numbers"] = list(range(1000))
    ds = make_dataset()

    result = invoke(cli, "append-resource", path, ds["id"])

    assert result.exit_code == 1
    assert "is not a valid RT-DC file" in result.stderr
    assert dataset_resources(ds["id"]) == []


def test_rtdc_with_trailing_bytes_is_stored_byte_for_byte(
        cli, owner, make_dataset, tmp_path, whole):
    path = tmp_path / "padded.rtdc"
    path.write_bytes(whole)
    with open(path, "ab") as fh:  # 24 MiB more, mostly a hole
        fh.write(os.urandom(1024))
        fh.truncate(len(whole) + 24 * 2**20)
    expected = hashlib.sha256(path.read_bytes()).hexdigest()
    assert rtdc.is_rtdc(path)
    ds = make_dataset()

    result = invoke(cli, "append-resource", path, ds["id"])

    assert result.exit_code == 0, result.output
    [res] = dataset_resources(ds["id"])
    assert res["format"] == "RT-DC" and res["sha256"] == expected
    assert res["size"] == path.stat().st_size
    stored = resource_object(owner, res["id"])
    assert hashlib.sha256(stored).hexdigest() == expected
    assert not layout.ckan_upload_path(res["id"]).exists()


def test_a_truncated_rtdc_from_figshare_never_enters_the_depot(
        figshare_site, whole):
    cut = whole[:len(whole) // 2]
    art = figshare_site.fake.add_article([{"name": "cells.rtdc", "data": cut}])
    figshare_site.write_dois(doi_of(art))

    result = figshare_site.run()

    assert result.exit_code == 1
    assert "cells.rtdc" in result.stderr
    assert "not a valid RT-DC file" in result.stderr
    dataset = show(name_of(art))
    assert dataset["state"] == "draft" and dataset["resources"] == []
    assert not depot_file(art, "cells.rtdc").exists()
    assert files_below(figshare_site.tmp_dir) == []
