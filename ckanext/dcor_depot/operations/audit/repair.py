"""``--fix``: repair what can be repaired without deleting anything.

Each repair is the work of a job or command that exists already, and each
re-reads the database first: a finding is a hint of where to look, never
the ground for a change. Tags are set by :func:`visibility.reconcile`
from the database state of that moment; a missing object is uploaded by
the S3 job's function (verified) or restored from the backup; a missing
``sha256`` is read from the bytes; ``s3_url`` is set to the derived URL
only when that object exists, or the move job is queued.
"""
from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from ckanext.dcor_depot import errors
from ckanext.dcor_depot.operations import move, visibility
from ckanext.dcor_depot.operations.audit.findings import Finding, Kind
from ckanext.dcor_depot.operations.migrate.run import migrate_resource_to_s3
from ckanext.dcor_depot.records import ckan_data, search_index
from ckanext.dcor_depot.storage import (
    fsops,
    layout,
    lifecycle,
    object_store,
    survey,
    transfer,
)

log = logging.getLogger(__name__)

#: Kinds in the order they are repaired: an upload records ``sha256`` and
#: tags its object, so those come after it.
ORDER = (Kind.LIFECYCLE_RULE_MISSING, Kind.OBJECT_MISSING,
         Kind.S3_URL_MISMATCH, Kind.SHA256_MISSING, Kind.WRONGLY_PUBLIC,
         Kind.WRONGLY_PRIVATE)


@dataclass
class RepairOutcome:
    fixed: list[Finding] = field(default_factory=list)
    #: findings whose repair failed, with why
    failed: list[tuple[Finding, str]] = field(default_factory=list)


class NotRepaired(errors.DcorDepotError):
    """The repair found nothing it may do safely; the message says why."""


def repair(findings: list[Finding],
           on_result: Callable[[Finding, str | None], None] | None = None
           ) -> RepairOutcome:
    """Repair the fixable findings; ``on_result(finding, error)`` after
    each one (``error`` None when repaired)."""
    outcome = RepairOutcome()
    fixable = [f for f in findings if f.kind.fixable]
    tags = [f for f in fixable if f.kind in (Kind.WRONGLY_PUBLIC,
                                             Kind.WRONGLY_PRIVATE)]
    for kind in ORDER[:4]:
        for finding in (f for f in fixable if f.kind is kind):
            _attempt(outcome, finding, _REPAIRS[kind], on_result)
    if tags:
        _repair_tags(outcome, tags, on_result)
    return outcome


def _attempt(outcome: RepairOutcome, finding: Finding,
             func: Callable[[Finding], None],
             on_result: Callable[[Finding, str | None], None] | None
             ) -> None:
    try:
        func(finding)
    except (errors.DcorDepotError, OSError, ValueError) as exc:
        outcome.failed.append((finding, str(exc)))
        if on_result:
            on_result(finding, str(exc))
        return
    outcome.fixed.append(finding)
    if on_result:
        on_result(finding, None)


def _object_id(finding: Finding) -> tuple[str, str]:
    bucket, _, key = finding.key.partition(":")
    return bucket, key


def _lifecycle(finding: Finding) -> None:
    s3 = object_store.get_client()
    lifecycle.ensure_rule(s3, finding.key)
    if not survey.has_lifecycle_rule(s3, finding.key):
        raise NotRepaired("the store refused the lifecycle rule")


def _facts(finding: Finding) -> ckan_data.ResourceFacts:
    facts = ckan_data.resource_facts(finding.resource)
    if facts is None or facts.state != "active":
        raise NotRepaired("the resource is gone")
    return facts


def _object_missing(finding: Finding) -> None:
    facts = _facts(finding)
    if layout.ckan_upload_path(facts.id).exists():
        migrate_resource_to_s3(facts.id)
    else:
        _restore_from_backup(facts)
    where = object_store.parse_object_url(
        _facts(finding).extras.get("s3_url") or "")
    if where is None or not object_store.object_exists(*where):
        raise NotRepaired("no object after the upload (a move may be "
                          "pending: see dcor-depot-move-dataset --pending)")


def _restore_from_backup(facts: ckan_data.ResourceFacts) -> None:
    """A direct upload whose object is gone: its backup goes back, checked
    against the recorded ``sha256``."""
    backup = layout.backup_path(facts.id)
    where = object_store.parse_object_url(facts.extras.get("s3_url") or "")
    if backup is None or not backup.exists() or where is None:
        raise NotRepaired("neither an upload file nor a backup to restore")
    ref = visibility.ObjectRef(
        object_store.url_organization(facts.extras["s3_url"]) or "",
        facts.dataset_id, facts.id)
    result = transfer.upload_verified(
        backup, *where, expected_sha256=facts.extras.get("sha256") or None,
        label=f"resource {facts.id}")
    visibility.reconcile([ref], assume_closed=[ref] if result.uploaded
                         else ())


def _s3_url(finding: Finding) -> None:
    facts = _facts(finding)
    if not facts.owner_org:
        raise NotRepaired("the dataset has no organization")
    if move.request_move_if_needed(facts.dataset_id) is not None:
        return  # its data are in a former organization's bucket
    bucket = object_store.bucket_name(facts.owner_org)
    key = layout.object_key(facts.id)
    if not object_store.object_exists(bucket, key):
        raise NotRepaired(f"no object at {bucket}:{key} either")
    search_index.record_resource_fields(
        facts.dataset_id, facts.id,
        {"s3_url": object_store.object_url(bucket, key),
         "s3_available": True})


def _sha256(finding: Finding) -> None:
    facts = _facts(finding)
    if facts.extras.get("sha256"):
        return  # recorded meanwhile (by the upload above, a job)
    local = layout.ckan_upload_path(facts.id)
    where = object_store.parse_object_url(facts.extras.get("s3_url") or "")
    if local.exists():
        sha256 = fsops.file_sha256(local)
    elif where is not None and object_store.object_exists(*where):
        sha256 = transfer.object_sha256(*where)
    else:
        raise NotRepaired("no bytes to read the SHA256 from")
    search_index.record_resource_fields(facts.dataset_id, facts.id,
                                        {"sha256": sha256})


_REPAIRS: dict[Kind, Callable[[Finding], None]] = {
    Kind.LIFECYCLE_RULE_MISSING: _lifecycle,
    Kind.OBJECT_MISSING: _object_missing,
    Kind.S3_URL_MISMATCH: _s3_url,
    Kind.SHA256_MISSING: _sha256,
}


def _repair_tags(outcome: RepairOutcome, tags: list[Finding],
                 on_result: Callable[[Finding, str | None], None] | None
                 ) -> None:
    """All tags at once, decided from the database of this moment."""
    refs = []
    for finding in tags:
        bucket, key = _object_id(finding)
        artifact, rid = layout.parse_object_key(key)
        refs.append(visibility.ObjectRef(
            object_store.bucket_organization(bucket) or "",
            finding.dataset_id, rid, artifact))
    try:
        visibility.reconcile(refs)
    except errors.DcorDepotError as exc:
        for finding in tags:
            outcome.failed.append((finding, str(exc)))
            if on_result:
                on_result(finding, str(exc))
        return
    for finding in tags:
        outcome.fixed.append(finding)
        if on_result:
            on_result(finding, None)
