"""``--modified-days N``: whole UTC dates, with the clock injected."""
from __future__ import annotations

import datetime

import pytest

from ckanext.dcor_depot.records import inventory

UTC = datetime.timezone.utc
NOON = datetime.datetime(2026, 3, 10, 12, 30, tzinfo=UTC)
MIDNIGHT = datetime.datetime(2026, 3, 10)


@pytest.mark.parametrize(("days", "cut_off"), [
    (0, MIDNIGHT),
    (1, datetime.datetime(2026, 3, 9)),
    (7, datetime.datetime(2026, 3, 3)),
    # across a month
    (10, datetime.datetime(2026, 2, 28)),
])
def test_cut_off_is_midnight_utc_n_dates_back(days, cut_off):
    assert inventory.modified_since(days, NOON) == cut_off


def test_all_datasets():
    assert inventory.modified_since(-1, NOON) is None


@pytest.mark.parametrize("now", [
    datetime.datetime(2026, 3, 10, 0, 0),          # naive = UTC
    datetime.datetime(2026, 3, 10, 23, 59, 59, 999999, tzinfo=UTC),
    # 01:30 in UTC+2 is 23:30 of the day before in UTC
    datetime.datetime(2026, 3, 11, 1, 30,
                      tzinfo=datetime.timezone(datetime.timedelta(hours=2))),
])
def test_today_is_the_utc_date(now):
    assert inventory.modified_since(0, now) == MIDNIGHT


def test_the_default_clock_is_utc_now(monkeypatch):
    monkeypatch.setattr(inventory, "utc_now", lambda: NOON)
    assert inventory.modified_since(1) == datetime.datetime(2026, 3, 9)


@pytest.mark.parametrize("days", [-2, -100])
def test_other_negative_values_are_refused(days):
    with pytest.raises(ValueError, match="must be -1"):
        inventory.modified_since(days, NOON)
