"""Outcomes of a migration and their record in CKAN.

The transfers (:mod:`.run`) touch only files and the store; what they
found is recorded here, in the calling thread: objects tagged as their
datasets say, the resources' S3 state written in batches, and each
changed dataset's search-index entry updated once.
"""
from __future__ import annotations

import collections
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

import ckan.plugins.toolkit as tk

from ckanext.dcor_depot.errors import StoreError
from ckanext.dcor_depot.operations import move, visibility
from ckanext.dcor_depot.operations.migrate.plan import (
    ResourcePlan,
    SkipReason,
)
from ckanext.dcor_depot.records import ckan_data, inventory, search_index
from ckanext.dcor_depot.storage import object_store

log = logging.getLogger(__name__)

#: Resources whose metadata are written together (per dataset).
RECORD_BATCH_SIZE = 50


class Status(str, Enum):
    """What happened to a resource, as a word of the command's summary."""
    FAILED = "failed"
    #: the resource file is nowhere: said so
    MISSING = "missing"
    #: sent to the store (in a dry run: would be)
    UPLOADED = "uploaded"
    SKIPPED = "skipped"


@dataclass
class ArtifactOutcome:
    artifact: str
    key: str
    #: what happened, for the report ("uploaded", "already in store", ...)
    action: str = ""
    #: bytes were sent to the store
    uploaded: bool = False
    #: an object identical to the local file (or verified) is in the store
    in_store: bool = False
    #: SHA256 of the local file, when it was read (of the object when a
    #: dead run left it without its file and without a recorded SHA256)
    sha256: str | None = None
    #: the local file (and a symlink to it) was removed
    deleted: bool = False
    #: the resource file is neither on block storage nor needed from it
    missing: bool = False
    #: dry run: the local file would be uploaded / deleted
    would_upload: bool = False
    would_delete: bool = False
    error: str | None = None


@dataclass
class ResourceOutcome:
    record: inventory.ResourceRecord
    artifacts: list[ArtifactOutcome] = field(default_factory=list)
    #: set when the resource was skipped without looking at its files
    skipped_reason: SkipReason | None = None
    errors: list[str] = field(default_factory=list)
    #: dry run: what would be done
    dry_run: bool = False

    @property
    def status(self) -> Status:
        if self.errors or any(a.error for a in self.artifacts):
            return Status.FAILED
        if any(a.missing for a in self.artifacts):
            return Status.MISSING
        if any(a.uploaded or a.would_upload for a in self.artifacts):
            return Status.UPLOADED
        return Status.SKIPPED

    @property
    def deleted(self) -> int:
        return sum(a.deleted or a.would_delete for a in self.artifacts)

    def describe(self) -> str:
        if self.skipped_reason:
            return self.skipped_reason.value
        parts = [f"{a.artifact} {a.action}" for a in self.artifacts
                 if a.action and not a.error]
        parts += [a.error for a in self.artifacts if a.error]
        parts += self.errors
        return "; ".join(parts) or "nothing to do"


Transferred = tuple[ResourcePlan, list[ArtifactOutcome]]


def _merge(changes: dict[str, dict[str, dict[str, Any]]]
           ) -> dict[str, str]:
    """Merge the fields into the resources; {resource id: error}."""
    errors: dict[str, str] = {}
    try:
        changed = ckan_data.merge_resource_fields(changes)
    except Exception as exc:  # noqa: BLE001 - reported per resource
        # All rolled back: every resource of the batch is unrecorded.
        log.exception("Recording the S3 state of %d datasets failed",
                      len(changes))
        for resources in changes.values():
            for rid in resources:
                errors[rid] = f"recording the S3 state failed: {exc}"
        return errors
    for resources in changes.values():
        for rid in resources.keys() - changed:
            errors[rid] = ("recording the S3 state failed: the resource "
                           "was deleted or moved meanwhile")
    for dataset_id in changes:
        try:  # it may have changed organization during the transfer
            move.request_move_if_needed(dataset_id)
        except Exception:  # noqa: BLE001 - found by --pending
            log.exception("Could not queue the move of dataset %s",
                          dataset_id)
    return errors


def tag_objects(items: list[Transferred]) -> None:
    """Tag the stored objects of migrated resources as the database says.

    The object of a resource already recorded in the store is left
    alone when it was found there: it was tagged before it was recorded,
    and since then its tags are the visibility sync's (and the audit's),
    so a verifying run that finds nothing to do sends no request for
    it. Condensed and preview objects have no record that says they were
    tagged (a run may have died between their upload and the tagging):
    they are tagged again.
    """
    refs: list[visibility.ObjectRef] = []
    fresh: list[visibility.ObjectRef] = []
    for plan, outcomes in items:
        recorded = _recorded_in_store(plan)
        for outcome in outcomes:
            if not outcome.in_store or not plan.record.owner_org:
                continue
            if (recorded and outcome.artifact == "resource"
                    and not outcome.uploaded):
                continue
            ref = visibility.ObjectRef(plan.record.owner_org,
                                       plan.record.dataset_id,
                                       plan.record.id, outcome.artifact)
            refs.append(ref)
            if outcome.uploaded:  # a new object carries no tags
                fresh.append(ref)
    visibility.reconcile(refs, assume_closed=fresh)


def _recorded_in_store(plan: ResourcePlan) -> bool:
    record = plan.record
    return record.s3_available and record.s3_url == object_store.object_url(
        plan.bucket, plan.keys["resource"])


def s3_state_changes(url: str, sha256: str | None, *, s3_available: bool,
                     s3_url: str | None, recorded_sha256: str | None,
                     verified_at: str | None = None) -> dict[str, Any]:
    """The fields to record on a resource whose file is stored at ``url``
    (its SHA256 ``sha256``, read from the verified transfer), given what
    is recorded now. The time of verification is recorded with the first
    record (and when none is): reruns that change nothing write nothing."""
    changes: dict[str, Any] = {}
    if not s3_available or s3_url != url:
        changes.update(s3_available=True, s3_url=url)
    if not recorded_sha256 and sha256:
        changes["sha256"] = sha256
    if sha256 and (changes or not verified_at):
        changes.update(ckan_data.verified_now())
    return changes


def resource_changes(plan: ResourcePlan,
                     outcomes: list[ArtifactOutcome]) -> dict[str, Any]:
    """The fields to record on the resource after its transfer."""
    record = plan.record
    main = next((o for o in outcomes if o.artifact == "resource"), None)
    if main is None or not main.in_store or main.error:
        return {}
    url = object_store.object_url(plan.bucket, main.key)
    return s3_state_changes(url, main.sha256,
                            s3_available=record.s3_available,
                            s3_url=record.s3_url,
                            recorded_sha256=record.sha256,
                            verified_at=record.verified_at)


def record_resource(plan: ResourcePlan, outcomes: list[ArtifactOutcome],
                    recorder: Recorder) -> None:
    """Note what to record of a transferred resource: its objects are
    tagged like their dataset and its S3 state written when the
    recorder's batch is written. Only objects confirmed in the store
    count; a failed resource artifact is not marked ``s3_available``."""
    recorder.note(plan, outcomes, resource_changes(plan, outcomes))


class Recorder:
    """The one recorder of a bulk migration's results.

    ``package_revise`` costs 100-200 ms per call on a real site
    (validation, dictization, activity), more than moving a small file.
    So the outcomes of finished transfers are collected and, per batch,
    the datasets' visibility is checked with one query, the objects are
    tagged and the new fields merged into the resources with one
    statement. Each changed dataset's search-index entry is updated once,
    when its last resource is done. Each outcome is handed to
    ``on_result`` once recorded.
    """

    def __init__(self, records: list[inventory.ResourceRecord],
                 on_result: Callable[[ResourceOutcome], None],
                 hold_index: bool = False) -> None:
        self.on_result = on_result
        #: the search-index updates of the changed datasets
        self.index = search_index.IndexUpdates(hold=hold_index)
        self._unfinished = collections.Counter(r.dataset_id for r in records)
        #: datasets recorded, whose index update waits for their last
        #: resource
        self._changed: set[str] = set()
        #: the batch: fields per resource per dataset, objects to tag
        self._changes: dict[str, dict[str, dict[str, Any]]] = {}
        self._tagging: dict[str, list[Transferred]] = {}
        #: outcomes waiting for their metadata to be written
        self._unrecorded: list[ResourceOutcome] = []

    @property
    def batch_full(self) -> bool:
        return len(self._unrecorded) >= RECORD_BATCH_SIZE

    def finished(self, outcome: ResourceOutcome) -> None:
        """Report an outcome that needs (or got) no more recording."""
        self.on_result(outcome)
        dataset_id = outcome.record.dataset_id
        self._unfinished[dataset_id] -= 1
        if self._unfinished[dataset_id] == 0 and dataset_id in self._changed:
            self._changed.discard(dataset_id)
            self.index.add([dataset_id])

    def add(self, plan: ResourcePlan, outcome: ResourceOutcome) -> None:
        """Put a transferred resource into the batch (unless dry run)."""
        if not outcome.dry_run:
            try:
                record_resource(plan, outcome.artifacts, self)
            except (StoreError,
                    tk.ValidationError, tk.ObjectNotFound) as exc:
                outcome.errors.append(
                    f"recording the S3 state failed: {exc}")
        self._unrecorded.append(outcome)

    def note(self, plan: ResourcePlan, outcomes: list[ArtifactOutcome],
             changes: dict[str, Any]) -> None:
        dataset_id = plan.record.dataset_id
        self._tagging.setdefault(dataset_id, []).append((plan, outcomes))
        if changes:
            self._changes.setdefault(dataset_id, {})[plan.record.id] = changes

    def flush(self) -> None:
        """Write the batch, then report its outcomes."""
        self._changed.update(self._changes)
        try:
            errors = self._write()
        except BaseException:
            # E.g. Ctrl-C while recording: these were not recorded.
            self._report_all("recording the S3 state was interrupted")
            raise
        for outcome in self._unrecorded:
            if outcome.record.id in errors:
                outcome.errors.append(errors[outcome.record.id])
            self.finished(outcome)
        self._unrecorded.clear()
        self.index.send()

    def finish(self) -> None:
        """Update the index of every dataset recorded so far, even if
        recording failed."""
        self.index.add(self._changed)
        self.index.send(final=True)

    def _write(self) -> dict[str, str]:
        """Tag and merge the batch; returns {resource id: error}."""
        errors: dict[str, str] = {}
        tagging, self._tagging = self._tagging, {}
        changes, self._changes = self._changes, {}
        if not tagging:
            return errors
        # Tagged from the database state of now, checked again after
        # tagging: a visibility change during the transfer is caught here.
        items = [item for group in tagging.values() for item in group]
        try:
            tag_objects(items)
        except StoreError as exc:
            for plan, _ in items:
                errors[plan.record.id] = f"tagging failed: {exc}"
        changes = {dataset_id: {rid: fields for rid, fields
                                in resources.items() if rid not in errors}
                   for dataset_id, resources in changes.items()}
        errors.update(_merge(changes))
        return errors

    def _report_all(self, error: str) -> None:
        for outcome in self._unrecorded:
            outcome.errors.append(error)
            self.finished(outcome)
        self._unrecorded.clear()
