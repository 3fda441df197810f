"""How a direct upload is cut into parts (pure arithmetic)."""
from __future__ import annotations

import pytest

from ckanext.dcor_depot.storage.presigned import PartLayout

MiB = 2**20


@pytest.mark.parametrize("size, count, last", [
    (0, 1, 0),            # an empty file is one empty part
    (1, 1, 1),
    (5 * MiB, 1, 5 * MiB),
    (5 * MiB + 1, 2, 1),
    (12 * MiB, 3, 2 * MiB),
])
def test_parts_of_a_file(size, count, last):
    layout = PartLayout.for_size(size, 5 * MiB)
    assert layout.count == count
    assert layout.part_bytes(count) == last
    assert sum(layout.part_bytes(n) for n in range(1, count + 1)) == size


def test_huge_files_never_need_more_than_10000_parts():
    size = 2 * 2**40  # 2 TiB with 5 MiB parts would be 419,431 parts
    layout = PartLayout.for_size(size, 5 * MiB)
    assert layout.count <= 10000
    assert layout.part_size % MiB == 0
    assert sum(layout.part_bytes(n) for n in (1, layout.count)) \
        == layout.part_size + size - (layout.count - 1) * layout.part_size


@pytest.mark.parametrize("number", [0, 4, -1])
def test_parts_outside_the_layout_do_not_exist(number):
    with pytest.raises(ValueError, match="no part"):
        PartLayout.for_size(12 * MiB, 5 * MiB).part_bytes(number)
