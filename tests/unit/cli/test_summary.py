"""The summary line every command ends with, and its exit status."""
from __future__ import annotations

import click
import pytest

from ckanext.dcor_depot.cli.common import Tally


def test_counts_in_declared_order_with_failed_last():
    tally = Tally("dcor-x", "uploaded", "skipped")
    tally.add("skipped")
    tally.add("uploaded", 3)
    assert tally.line() == "dcor-x: 3 uploaded, 1 skipped, 0 failed"


def test_optional_counts_appear_only_when_not_zero():
    tally = Tally("dcor-x", "uploaded", "missing")
    assert tally.line("dry run", optional=("missing",)) \
        == "dcor-x (dry run): 0 uploaded, 0 failed"
    tally.add("missing")
    assert tally.line(optional=("missing",)) \
        == "dcor-x: 0 uploaded, 1 missing, 0 failed"


def test_finish_exits_1_only_after_failures(capsys):
    tally = Tally("dcor-x", "done")
    tally.add("done")
    tally.finish()
    assert capsys.readouterr().out == "dcor-x: 1 done, 0 failed\n"
    tally.add("failed")
    with pytest.raises(click.exceptions.Exit) as info:
        tally.finish()
    assert info.value.exit_code == 1
    assert capsys.readouterr().out == "dcor-x: 1 done, 1 failed\n"
