"""The ``ckan`` commands of this plugin, registered through IClick.

One module per topic; each command is a thin layer over the module that
does the work (progress, summary line, exit status).
"""
from __future__ import annotations

from typing import Any

from . import figshare


def get_commands() -> list[Any]:
    return [figshare.import_figshare]
