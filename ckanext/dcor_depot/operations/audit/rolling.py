"""``dcor-depot-audit --rolling DAYS``: which objects a run reads the tags
(and, with ``--deep``, the bytes) of, and the rotation that makes any DAYS
consecutive complete runs read them all.

Every resource belongs to one of DAYS shares, a hash of its id: the same
on every host and in every run. A run reads the tags of the objects of

- the resources of its share (the rotation's next share),
- every resource whose dataset or resource changed (``metadata_modified``)
  since the previous rolling run started, less :data:`CHANGE_MARGIN` (a
  transaction that stamped its change before that start but committed
  after that run had read the database is not missed),
- every object no resource owns (a purge leaves nothing that changes).

``--deep`` reads the bytes of the share and of the changed resources not
verified since that cut-off (recording a verification changes the
resource; it must not make the next run read the bytes again).

Everything else (listings, sizes, orphans, multipart uploads, missing
objects and files) is judged on the whole site in every run. Without a
previous rolling run nothing counts as changed: run one full audit before
scheduling the rolling one. The rotation is kept in the database
(``records/audit_rotation.py``) and advances only after a complete run;
an incomplete run leaves it, so the next run checks the same share. A run
with another DAYS than the rotation's starts it again at share 0.
"""
from __future__ import annotations

import datetime
import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import Any

from ckanext.dcor_depot.operations.audit import analysis
from ckanext.dcor_depot.operations.audit.scan import ObjectId, SiteScan
from ckanext.dcor_depot.records import audit_rotation, inventory
from ckanext.dcor_depot.storage import survey

#: Changes stamped this long before the previous run's start still count.
CHANGE_MARGIN = datetime.timedelta(minutes=10)


def share_of(resource_id: str, days: int) -> int:
    """The share (0 … days-1) of a resource: stable across runs, hosts
    and Python processes (not ``hash``, which is salted)."""
    digest = hashlib.sha256(resource_id.encode("utf-8")).hexdigest()
    return int(digest[:8], 16) % days


@dataclass(frozen=True)
class Rotation:
    """The kept rotation (its JSON form is :meth:`as_json`)."""
    days: int
    #: the share the next run checks
    next_share: int = 0
    #: start of the last complete rolling run (ISO 8601; None: none yet)
    last_started: str | None = None
    #: share -> start of the complete run that last checked it
    checked: dict[int, str] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        return {"version": 1, "days": self.days,
                "next_share": self.next_share,
                "last_started": self.last_started,
                "checked": {str(k): v for k, v in
                            sorted(self.checked.items())}}

    @classmethod
    def from_json(cls, data: Any) -> Rotation | None:
        """The rotation kept as ``data`` (None if it is not one)."""
        if not isinstance(data, dict):
            return None
        days, share = data.get("days"), data.get("next_share")
        if not (isinstance(days, int) and days >= 1
                and isinstance(share, int) and 0 <= share < days):
            return None
        started = data.get("last_started")
        checked = data.get("checked")
        return cls(days, share,
                   started if parse_time(started) else None,
                   {int(k): v for k, v in checked.items()
                    if k.isdigit() and int(k) < days and parse_time(v)}
                   if isinstance(checked, dict) else {})


@dataclass(frozen=True)
class Plan:
    """What one rolling run checks."""
    days: int
    share: int
    #: changes since when count (None: nothing counts as changed)
    since: str | None
    #: why the rotation starts again at share 0 ("": it goes on)
    restarted: str = ""


def plan(state: Rotation | None, days: int) -> Plan:
    """The share of the next run, and since when changes count."""
    if state is None:
        return Plan(days, 0, None, "no rolling run recorded yet: share 0 "
                    "and no changes (run a full audit once)")
    if state.days != days:
        return Plan(days, 0, state.last_started,
                    f"DAYS changed from {state.days} to {days}: "
                    f"the rotation starts again at share 0")
    return Plan(days, state.next_share, state.last_started)


def advance(state: Rotation | None, done: Plan, started: str) -> Rotation:
    """The rotation after a complete run of ``done`` that started at
    ``started``. A later run that was recorded meanwhile (another host)
    keeps its place in the rotation; the share's time is recorded."""
    base = state if state is not None and state.days == done.days \
        else Rotation(done.days)
    checked = dict(base.checked)
    checked[done.share] = max(checked.get(done.share, started), started,
                              key=_sort_time)
    if base.last_started is not None and \
            _sort_time(base.last_started) > _sort_time(started):
        return replace(base, checked=checked)
    return Rotation(done.days, (done.share + 1) % done.days, started,
                    checked)


def parse_time(value: Any) -> datetime.datetime | None:
    """An ISO 8601 time (naive means UTC); None if ``value`` is none."""
    if not isinstance(value, str):
        return None
    try:
        when = datetime.datetime.fromisoformat(value)
    except ValueError:
        return None
    return when if when.tzinfo else when.replace(
        tzinfo=datetime.timezone.utc)


def _sort_time(value: str) -> datetime.datetime:
    return parse_time(value) or datetime.datetime.min.replace(
        tzinfo=datetime.timezone.utc)


def changed(record: inventory.AuditRecord,
            since: datetime.datetime) -> bool:
    """The resource or its dataset changed at or after ``since``."""
    cutoff = since.astimezone(datetime.timezone.utc).replace(tzinfo=None)
    return any(when is not None and when >= cutoff for when in
               (record.dataset_modified, record.resource_modified))


@dataclass(frozen=True)
class Selection:
    plan: Plan
    #: resources whose objects' tags (and bytes) are checked
    ids: frozenset[str]
    #: resources that changed since the previous run (any share)
    changed: int
    #: objects whose tags are read
    objects: list[ObjectId]
    #: resources whose bytes ``--deep`` reads: the share, and changed
    #: resources not verified since the cut-off (a verification changes
    #: the resource: it must not make the next run read it again)
    rehash: frozenset[str] = frozenset()


def select(scan: SiteScan, chosen: Plan) -> Selection:
    """The resources and objects of this run (nothing is read)."""
    since = parse_time(chosen.since)
    cutoff = since - CHANGE_MARGIN if since is not None else None
    moved = {record.id: record for record in scan.records
             if cutoff is not None and changed(record, cutoff)}
    share = {record.id for record in scan.records
             if share_of(record.id, chosen.days) == chosen.share}
    ids = frozenset(moved.keys() | share)
    unverified = {rid for rid, record in moved.items()
                  if not _verified_since(record, cutoff)}
    return Selection(chosen, ids, len(moved), list(tag_objects(scan, ids)),
                     rehash=frozenset(share | unverified))


def _verified_since(record: inventory.AuditRecord,
                    cutoff: datetime.datetime | None) -> bool:
    verified = parse_time(record.verified_at)
    return verified is not None and cutoff is not None and \
        verified >= cutoff


def tag_objects(scan: SiteScan, ids: frozenset[str]
                ) -> Iterable[ObjectId]:
    """Objects of the plugin's layout of the resources ``ids``, and those
    no resource owns (orphans: always, there are few)."""
    owners = analysis.owner_buckets(scan)
    for bucket, found in scan.buckets.items():
        for key in found.objects:
            parsed = survey.artifact_of(key)
            if parsed is None:
                continue
            rid = parsed[1]
            if rid in ids or bucket not in owners.get(rid, ()):
                yield bucket, key


def load() -> Rotation | None:
    """The rotation as kept in the database now."""
    return Rotation.from_json(audit_rotation.load())


def record(done: Plan, started: str) -> Rotation:
    """Advance the kept rotation after a complete run (one transaction,
    the rotation's row locked)."""
    def change(data: dict[str, Any] | None) -> dict[str, Any]:
        return advance(Rotation.from_json(data), done, started).as_json()
    kept = Rotation.from_json(audit_rotation.update(change))
    assert kept is not None  # what advance() made reads back
    return kept


def report_entry(chosen: Selection, rotation: Rotation | None,
                 advanced: bool) -> dict[str, Any]:
    """The report's ``rolling`` object: the share covered, what was
    checked, and when each share was last checked."""
    times = rotation.checked if rotation is not None and \
        rotation.days == chosen.plan.days else {}
    return {"days": chosen.plan.days, "share": chosen.plan.share,
            "since": chosen.plan.since, "restarted": chosen.plan.restarted,
            "resources_checked": len(chosen.ids),
            "changed": chosen.changed,
            "objects_tag_checked": len(chosen.objects),
            "advanced": advanced,
            "next_share": rotation.next_share if rotation is not None
            and advanced else chosen.plan.share,
            "shares": {str(k): times.get(k)
                       for k in range(chosen.plan.days)}}
