"""The rolling audit's rotation, kept in CKAN's ``system_info`` table.

One row (key :data:`KEY`) holds a JSON object, so every host running
``dcor-depot-audit --rolling`` shares one rotation and no table of the
plugin's own is needed. What the object means is the audit's business
(``operations/audit/rolling.py``); here it is read, and changed in one
transaction that locks the row, so two hosts finishing at once do not
overwrite each other's record.
"""
from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import ckan.model as model
import sqlalchemy as sa

from ckanext.dcor_depot import errors

#: The ``system_info`` key of the rotation (CKAN reads only its own keys
#: from the table).
KEY = "ckanext.dcor_depot.audit_rotation"

State = dict[str, Any]


def load() -> State | None:
    """The rotation as committed now (None: none kept, or unreadable). A
    database error becomes a :class:`DcorDepotError`."""
    try:
        with model.meta.engine.connect() as fresh:
            value = fresh.execute(sa.text(
                "SELECT value FROM system_info WHERE key = :key"),
                {"key": KEY}).scalar()
    except sa.exc.SQLAlchemyError as exc:
        raise errors.DcorDepotError(
            f"cannot read the rolling audit's rotation: {exc}") from exc
    return _decode(value)


def update(change: Callable[[State | None], State]) -> State:
    """Replace the rotation by ``change(the rotation now)`` in one
    transaction, the row locked while ``change`` decides; returns what
    was written. A database error becomes a :class:`DcorDepotError`
    (nothing was written)."""
    try:
        with model.meta.engine.connect() as fresh, fresh.begin():
            value = fresh.execute(sa.text(
                "SELECT value FROM system_info WHERE key = :key "
                "FOR UPDATE"), {"key": KEY}).scalar()
            state = change(_decode(value))
            fresh.execute(sa.text(
                "INSERT INTO system_info (key, value, state) "
                "VALUES (:key, :value, 'active') "
                "ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value"),
                {"key": KEY, "value": json.dumps(state, sort_keys=True)})
    except sa.exc.SQLAlchemyError as exc:
        raise errors.DcorDepotError(
            f"cannot record the rolling audit's rotation: {exc}") from exc
    return state


def _decode(value: Any) -> State | None:
    if not isinstance(value, str):
        return None
    try:
        found = json.loads(value)
    except ValueError:
        return None
    return found if isinstance(found, dict) else None
