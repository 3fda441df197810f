"""The ``ckan`` commands of this plugin (registered through IClick)."""
from __future__ import annotations

from typing import Any

import click


def get_commands() -> list[Any]:
    return []
