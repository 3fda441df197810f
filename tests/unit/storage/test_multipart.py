"""Part sizes and ETag arithmetic of multipart transfers (no services).

The expected ETags were computed with md5sum, independently of the code.
"""
from __future__ import annotations

import hashlib

import pytest

from ckanext.dcor_depot.storage import multipart, upload
from ckanext.dcor_depot.storage.multipart import (
    DEFAULT_PART_SIZE,
    MAX_PART_SIZE,
    MAX_PARTS,
    MIN_PART_SIZE,
    MiB,
)

HELLO_MD5 = "5d41402abc4b2a76b9719d911017c592"
WORLD_MD5 = "7d793037a0760186574b0282f2f435e7"
EMPTY_MD5 = "d41d8cd98f00b204e9800998ecf8427e"


@pytest.mark.parametrize("size", [0, 1, 10 * MiB, DEFAULT_PART_SIZE,
                                  DEFAULT_PART_SIZE * MAX_PARTS])
def test_part_size_stays_for_files_that_fit(size):
    assert multipart.part_size_for(size) == DEFAULT_PART_SIZE


def test_part_size_grows_by_a_mib_past_the_part_limit():
    size = DEFAULT_PART_SIZE * MAX_PARTS + 1
    assert multipart.part_size_for(size) == DEFAULT_PART_SIZE + MiB


def test_part_size_grows_for_huge_files():
    # Moved from tests/integration/storage/test_transfer.py.
    assert multipart.part_size_for(10 * MiB) == DEFAULT_PART_SIZE
    huge = 2 * 1024**4 + 1  # 2 TiB + 1 byte
    part = multipart.part_size_for(huge)
    assert part % MiB == 0
    assert -(-huge // part) <= MAX_PARTS
    assert -(-huge // (part - MiB)) > MAX_PARTS


def test_largest_object_fits_the_part_limits():
    largest = 5 * 1024**4  # S3's largest object: 5 TiB
    part = multipart.part_size_for(largest)
    assert part <= MAX_PART_SIZE
    assert multipart.part_count(largest, part) <= MAX_PARTS


def test_a_larger_requested_part_size_is_kept():
    assert multipart.part_size_for(100 * MiB, 64 * MiB) == 64 * MiB


@pytest.mark.parametrize("size, part_size, count", [
    (0, MiB, 0), (1, MiB, 1), (MiB, MiB, 1), (MiB + 1, MiB, 2),
    (10 * MiB, 5 * MiB, 2),
])
def test_part_count(size, part_size, count):
    assert multipart.part_count(size, part_size) == count


@pytest.mark.parametrize("part_size", [MIN_PART_SIZE, DEFAULT_PART_SIZE,
                                       MAX_PART_SIZE])
def test_part_sizes_within_the_limits_are_accepted(part_size):
    multipart.check_tuning(part_size, 1)


@pytest.mark.parametrize("part_size", [0, MIN_PART_SIZE - 1,
                                       MAX_PART_SIZE + 1])
def test_part_sizes_outside_the_limits_are_refused(part_size):
    with pytest.raises(ValueError, match="part size"):
        multipart.check_tuning(part_size, 4)


def test_no_threads_is_refused():
    with pytest.raises(ValueError, match="threads"):
        multipart.check_tuning(DEFAULT_PART_SIZE, 0)


@pytest.mark.parametrize("part_size, threads, window", [
    (16 * MiB, 4, 5),     # one more than threads
    (64 * MiB, 4, 3),     # the memory budget limits
    (256 * MiB, 4, 1),    # never below one
    (16 * MiB, 1, 2),
])
def test_window_of_parts_in_memory(part_size, threads, window):
    assert multipart.window(part_size, threads) == window
    assert (window == 1
            or window * part_size <= multipart.MEMORY_BUDGET)


def test_multipart_etag_of_known_parts():
    md5s = [bytes.fromhex(HELLO_MD5), bytes.fromhex(WORLD_MD5)]
    assert (multipart.multipart_etag(md5s)
            == "065947336a2f2a95ba8899f3675c3be6-2")


def test_multipart_etag_of_one_part_differs_from_its_md5():
    etag = multipart.multipart_etag([bytes.fromhex(HELLO_MD5)])
    assert etag == "62109206880d38a4010a98e11243924a-1"
    assert not etag.startswith(HELLO_MD5)


@pytest.mark.parametrize("etag, multi, count", [
    ("065947336a2f2a95ba8899f3675c3be6-2", True, 2),
    (HELLO_MD5, False, None),
    ("abc-x", True, None),
    ("abc-", True, None),
])
def test_etag_forms(etag, multi, count):
    assert multipart.is_multipart_etag(etag) is multi
    assert multipart.etag_part_count(etag) == count


def test_quotes_are_removed_from_etags():
    assert multipart.clean_etag(f'"{HELLO_MD5}"') == HELLO_MD5
    assert multipart.clean_etag(HELLO_MD5) == HELLO_MD5


def test_file_etag_of_a_single_put(tmp_path):
    path = tmp_path / "hello"
    path.write_bytes(b"hello")
    with open(path, "rb") as fh:
        sha256, etag = upload.hash_file(fh, 5, None)
    assert etag == HELLO_MD5
    assert sha256 == hashlib.sha256(b"hello").hexdigest()


def test_file_etag_of_an_empty_file(tmp_path):
    path = tmp_path / "empty"
    path.write_bytes(b"")
    with open(path, "rb") as fh:
        assert upload.hash_file(fh, 0, None)[1] == EMPTY_MD5


def test_file_etag_of_a_multipart_object(tmp_path):
    # 6 MiB of zeros in parts of 5 MiB and 1 MiB.
    path = tmp_path / "zeros"
    path.write_bytes(bytes(6 * MiB))
    with open(path, "rb") as fh:
        sha256, etag = upload.hash_file(fh, 6 * MiB, 5 * MiB)
    assert etag == "b7992ce8540773fdfcab72bd0e8c4c64-2"
    assert sha256 == ("b69dae56a14d1a8314ed40664c4033ea"
                      "0a550eea2673e04df42a66ac6b9faf2c")
