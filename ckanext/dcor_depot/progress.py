"""The one progress mechanism: engines report bytes, commands show bars.

An engine (a transfer, an append, a figshare download) takes a
:data:`ProgressBars` and opens one display per phase::

    with bars("SHA256", size) as update:
        update(len(chunk))

Commands pass :func:`ckanext.dcor_depot.cli.common.progress_bars` (click
progress bars on stderr); jobs and library callers pass nothing and get
:func:`no_bars`.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Any

#: Called with the number of bytes just processed.
Progress = Callable[[int], Any]
#: Opens a progress display for a phase: ``bars(label, total_bytes)``.
ProgressBars = Callable[[str, int], AbstractContextManager[Progress]]


def no_progress(_nbytes: int) -> None:
    """A :data:`Progress` that shows nothing."""


@contextmanager
def no_bars(_label: str, _length: int) -> Iterator[Progress]:
    """A :data:`ProgressBars` that shows nothing."""
    yield no_progress
