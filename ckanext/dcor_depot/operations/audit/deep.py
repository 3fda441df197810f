"""``--deep``: read stored objects again and compare them with ``sha256``.

Each object is read with the parallel range GETs of the SHA256 job (the
fast streaming check: nothing is written to disk), a few objects at once.
A match is recorded in the plugin-owned field ``s3_verified_at``; a
mismatch is a finding: silent corruption found before a user finds it.
"""
from __future__ import annotations

import datetime
import math
import random
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from ckanext.dcor_depot import errors
from ckanext.dcor_depot.operations.audit.analysis import recorded_location
from ckanext.dcor_depot.operations.audit.findings import Finding, Kind
from ckanext.dcor_depot.operations.audit.scan import SiteScan
from ckanext.dcor_depot.records import ckan_data, inventory, search_index
from ckanext.dcor_depot.storage import transfer

#: Objects read at once; each with transfer's range threads.
OBJECTS_AT_ONCE = 4
#: A verification is recorded again after this long.
RECORD_AGAIN_AFTER = datetime.timedelta(days=1)


@dataclass
class DeepResult:
    checked: int = 0
    bytes_read: int = 0
    findings: list[Finding] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


def candidates(scan: SiteScan) -> list[inventory.AuditRecord]:
    """Audited resources with a ``sha256`` and an object where their
    ``s3_url`` says."""
    found = []
    for record in scan.records:
        if not (record.has_file and record.sha256
                and scan.audited(record.owner_org)):
            continue
        where = recorded_location(record)
        if where is not None and scan.stored(*where) is not None:
            found.append(record)
    return found


def sample(records: list[inventory.AuditRecord], percent: float,
           rng: random.Random | None = None) -> list[inventory.AuditRecord]:
    """A random ``percent`` of ``records`` (at least one if any)."""
    if percent >= 100 or not records:
        return list(records)
    count = max(1, math.ceil(len(records) * percent / 100))
    return (rng or random.SystemRandom()).sample(records, count)


def check_objects(scan: SiteScan, records: list[inventory.AuditRecord],
                  on_object: Callable[[int], None] | None = None
                  ) -> DeepResult:
    """Hash the objects of ``records``; record matches, report mismatches."""
    result = DeepResult()

    def one(record: inventory.AuditRecord) -> tuple[str | None, str]:
        bucket, key = recorded_location(record) or ("", "")
        try:
            return transfer.object_sha256(bucket, key), f"{bucket}:{key}"
        except errors.StoreError as exc:
            return None, str(exc)

    with ThreadPoolExecutor(OBJECTS_AT_ONCE,
                            thread_name_prefix="dcor-audit-deep") as pool:
        hashed = pool.map(one, records)
        for record, (digest, where) in zip(records, hashed, strict=True):
            size = scan.stored(*(recorded_location(record) or ("", "")))
            if on_object and size is not None:
                on_object(size.size)
            if digest is None:
                result.errors.append(f"resource {record.id}: {where}")
                continue
            result.checked += 1
            result.bytes_read += size.size if size else 0
            if digest == record.sha256:
                if _due(record.verified_at):
                    _record_verified(record)
            else:
                result.findings.append(Finding(
                    Kind.CHECKSUM_MISMATCH, scan.org_label(record.owner_org),
                    record.dataset_name, record.id, where,
                    f"expected SHA256 {record.sha256}, found {digest}",
                    dataset_id=record.dataset_id))
    return result


def _due(verified_at: str | None) -> bool:
    """Record a verification unless one was recorded in the last day:
    each record changes the dataset's ``metadata_modified``."""
    try:
        last = datetime.datetime.fromisoformat(verified_at or "")
    except ValueError:
        return True
    if last.tzinfo is None:
        last = last.replace(tzinfo=datetime.timezone.utc)
    now = datetime.datetime.now(datetime.timezone.utc)
    return now - last >= RECORD_AGAIN_AFTER


def _record_verified(record: inventory.AuditRecord) -> None:
    search_index.record_resource_fields(record.dataset_id, record.id,
                                        ckan_data.verified_now())
