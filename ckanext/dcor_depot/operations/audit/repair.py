"""``--fix``: repair what can be repaired without deleting anything.

Each repair is the work of a job or command that exists already, and each
re-reads the database first: a finding is a hint of where to look, never
the ground for a change. Tags are set by :func:`visibility.reconcile`
from the database state of that moment; a missing object is uploaded by
the S3 job's function (verified) or restored from the backup; a missing
``sha256`` is read from the bytes; ``s3_url`` is set to the derived URL
only when that object exists, or the move job is queued. Tags come first:
closing a leak must not wait for uploads.
"""
from __future__ import annotations

import enum
import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from ckanext.dcor_depot.operations import move, visibility
from ckanext.dcor_depot.operations.audit.findings import Finding, Kind
from ckanext.dcor_depot.operations.migrate.run import migrate_resource_to_s3
from ckanext.dcor_depot.records import ckan_data, search_index
from ckanext.dcor_depot.storage import fsops, layout, object_store, transfer

log = logging.getLogger(__name__)

#: Kinds repaired one by one, in this order, after the tags (closing a
#: leak comes first); an upload records ``sha256`` and tags its object,
#: so the checksum comes after it.
ORDER = (Kind.LIFECYCLE_RULE_MISSING, Kind.OBJECT_MISSING,
         Kind.S3_URL_MISMATCH, Kind.SHA256_MISSING)
TAG_KINDS = (Kind.WRONGLY_PUBLIC, Kind.WRONGLY_PRIVATE)

class RepairStatus(str, enum.Enum):
    """What became of a finding; the value is the word printed."""
    FIXED = "fixed"
    #: handed to a background job (a move)
    QUEUED = "queued"
    FAILED = "not fixed"


#: Called after each repair with the finding, its status and why.
OnResult = Callable[[Finding, RepairStatus, str], None]
#: What a repair returns: None when it fixed the finding, else its
#: status (not fixed, or queued) and why.
Result = tuple[RepairStatus, str] | None


@dataclass
class RepairOutcome:
    fixed: list[Finding] = field(default_factory=list)
    #: handed to a background job (a move): the finding stays reported
    queued: list[Finding] = field(default_factory=list)
    #: findings whose repair failed, with why
    failed: list[tuple[Finding, str]] = field(default_factory=list)


def repair(findings: list[Finding], on_result: OnResult | None = None
           ) -> RepairOutcome:
    """Repair the fixable findings; ``on_result`` after each one. A
    failing repair never stops the others."""
    outcome = RepairOutcome()
    fixable = [f for f in findings if f.kind.fixable]
    tags = [f for f in fixable if f.kind in TAG_KINDS]
    if tags:
        _repair_tags(outcome, tags, on_result)
    for kind in ORDER:
        for finding in (f for f in fixable if f.kind is kind):
            _attempt(outcome, finding, _REPAIRS[kind], on_result)
    return outcome


def _attempt(outcome: RepairOutcome, finding: Finding,
             func: Callable[[Finding], Result],
             on_result: OnResult | None) -> None:
    try:
        result = func(finding)
    except Exception as exc:  # one repair's failure must not stop the rest
        log.warning("Repair of %s failed", finding.line(), exc_info=True)
        result = RepairStatus.FAILED, _message(exc)
    if result is None:
        outcome.fixed.append(finding)
        _tell(on_result, finding, RepairStatus.FIXED, "")
        return
    status, why = result
    if status is RepairStatus.QUEUED:
        outcome.queued.append(finding)
    else:
        outcome.failed.append((finding, why))
    _tell(on_result, finding, status, why)


def _not_fixed(finding: Finding, why: str) -> Result:
    """The repair found nothing it may do safely: ``why``."""
    log.warning("Repair of %s failed: %s", finding.line(), why)
    return RepairStatus.FAILED, why


def _message(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__


def _tell(on_result: OnResult | None, finding: Finding,
          status: RepairStatus, why: str) -> None:
    if on_result:
        on_result(finding, status, why)


def object_ref(finding: Finding) -> visibility.ObjectRef:
    """The object a tag finding names (``key`` is ``bucket:key``)."""
    bucket, _, key = finding.key.partition(":")
    artifact, rid = layout.parse_object_key(key)
    return visibility.ObjectRef(
        object_store.bucket_organization(bucket) or "", finding.dataset_id,
        rid, artifact)


def _lifecycle(finding: Finding) -> Result:
    with object_store.leading(f"bucket {finding.key}"):
        if not object_store.ensure_lifecycle_rule(finding.key):
            return _not_fixed(finding, "the store refused the lifecycle rule")
    return None


def _facts(finding: Finding) -> ckan_data.ResourceFacts | None:
    """The resource's facts now; None if it is gone."""
    facts = ckan_data.resource_facts(finding.resource)
    if facts is None or facts.state != "active":
        return None
    return facts


_GONE = "the resource is gone"


def _object_missing(finding: Finding) -> Result:
    facts = _facts(finding)
    if facts is None:
        return _not_fixed(finding, _GONE)
    if layout.owned_file(layout.ckan_upload_path(facts.id)):
        migrate_resource_to_s3(facts.id)
    else:
        why = _restore_from_backup(facts)
        if why:
            return _not_fixed(finding, why)
    facts = _facts(finding)
    if facts is None:
        return _not_fixed(finding, _GONE)
    where = object_store.parse_object_url(facts.extras.get("s3_url") or "")
    if where is None or not object_store.object_exists(*where):
        return _not_fixed(finding, "no object after the upload (a move may "
                          "be pending: see dcor-depot-move-dataset "
                          "--pending)")
    return None


def _restore_from_backup(facts: ckan_data.ResourceFacts) -> str:
    """A direct upload whose object is gone: its backup goes back, checked
    against the recorded ``sha256``, to where the layout puts it in a
    bucket of this site (never where an odd ``s3_url`` points). Returns
    why not ("" when restored)."""
    backup = layout.backup_path(facts.id)
    if backup is None or not backup.exists():
        return "neither an upload file nor a backup to restore"
    org = object_store.url_organization(facts.extras.get("s3_url")) \
        or facts.owner_org
    if not org:
        return "the dataset has no organization"
    ref = visibility.ObjectRef(org, facts.dataset_id, facts.id)
    result = transfer.upload_verified(
        backup, ref.bucket, ref.key,
        expected_sha256=facts.extras.get("sha256") or None,
        label=f"resource {facts.id}")
    visibility.reconcile([ref], assume_closed=[ref] if result.uploaded
                         else ())
    return ""


def _s3_url(finding: Finding) -> Result:
    """``s3_url`` becomes the derived URL if that object exists; data in a
    former organization's bucket are handed to the move job."""
    facts = _facts(finding)
    if facts is None:
        return _not_fixed(finding, _GONE)
    if not facts.owner_org:
        return _not_fixed(finding, "the dataset has no organization")
    bucket = object_store.bucket_name(facts.owner_org)
    key = layout.object_key(facts.id)
    if object_store.object_exists(bucket, key):
        search_index.record_resource_fields(
            facts.dataset_id, facts.id,
            {"s3_url": object_store.object_url(bucket, key),
             "s3_available": True})
        return None
    job = move.request_move_if_needed(facts.dataset_id)
    if job is not None:
        return (RepairStatus.QUEUED,
                f"the move job {job} copies the data to {bucket}")
    return _not_fixed(finding, f"no object at {bucket}:{key}")


def _sha256(finding: Finding) -> Result:
    facts = _facts(finding)
    if facts is None:
        return _not_fixed(finding, _GONE)
    if facts.extras.get("sha256"):
        return None  # recorded meanwhile (by the upload above, a job)
    local = layout.ckan_upload_path(facts.id)
    where = object_store.parse_object_url(facts.extras.get("s3_url") or "")
    if layout.owned_file(local):
        sha256 = fsops.file_sha256(local)
    elif where is not None and object_store.object_exists(*where):
        sha256 = transfer.object_sha256(*where)
    else:
        return _not_fixed(finding, "no bytes to read the SHA256 from")
    search_index.record_resource_fields(facts.dataset_id, facts.id,
                                        {"sha256": sha256})
    return None


_REPAIRS: dict[Kind, Callable[[Finding], Result]] = {
    Kind.LIFECYCLE_RULE_MISSING: _lifecycle,
    Kind.OBJECT_MISSING: _object_missing,
    Kind.S3_URL_MISMATCH: _s3_url,
    Kind.SHA256_MISSING: _sha256,
}


def _repair_tags(outcome: RepairOutcome, tags: list[Finding],
                 on_result: OnResult | None) -> None:
    """All tags at once, decided from the database of this moment."""
    try:
        visibility.reconcile([object_ref(finding) for finding in tags])
    except Exception as exc:  # reported per finding; the rest goes on
        log.warning("Repair of the tags failed", exc_info=True)
        for finding in tags:
            outcome.failed.append((finding, _message(exc)))
            _tell(on_result, finding, RepairStatus.FAILED, _message(exc))
        return
    for finding in tags:
        outcome.fixed.append(finding)
        _tell(on_result, finding, RepairStatus.FIXED, "")
