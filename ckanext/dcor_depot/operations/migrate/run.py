"""Copy resources from block storage into the object store, verified.

:func:`migrate_resource_to_s3` is the background job of one resource;
:func:`migrate_resources` the engine of
``ckan dcor-migrate-resources-to-object-store``: its transfers
(:func:`transfer_resource`) run in threads and touch only files and the
store, what they found is recorded in CKAN by :mod:`.record`.
"""
from __future__ import annotations

import logging
import os
import queue
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import ckan.plugins.toolkit as tk

from ckanext.dcor_depot import errors
from ckanext.dcor_depot.operations import move, visibility
from ckanext.dcor_depot.operations.migrate.plan import (
    BucketListings,
    MigrationOptions,
    ResourcePlan,
    expected_sha256,
    moving,
    no_bucket_error,
    plan_resource,
    skip_reason,
)
from ckanext.dcor_depot.operations.migrate.record import (
    RECORD_BATCH_SIZE,
    ArtifactOutcome,
    Recorder,
    ResourceOutcome,
    s3_state_changes,
)
from ckanext.dcor_depot.records import ckan_data, inventory, search_index
from ckanext.dcor_depot.storage import fsops, layout, object_store, transfer

log = logging.getLogger(__name__)


def migrate_resource_to_s3(resource_id: str,
                           stored: dict[str, Any] | None = transfer.UNKNOWN,
                           listed_in: str | None = None) -> bool:
    """Upload a resource's file to its organization's bucket.

    Skips the upload when an identical object is already there, verifies
    the stored bytes, tags the object as the database says at that moment
    (see :mod:`visibility`), and records ``s3_available``, ``s3_url`` and
    ``sha256``. Returns whether it uploaded.

    ``stored``: size and ETag from a listing of bucket ``listed_in``
    (None: absent; else looked up). A resource recorded in the store
    whose listed object has the file's size is done: nothing is read,
    tagged or recorded (tags are the visibility sync's, checksums the
    deep checks').
    """
    path = layout.ckan_upload_path(resource_id)
    if not path.exists():
        return False
    layout.check_not_foreign(path, f"resource {resource_id}")
    facts = ckan_data.resource_facts(resource_id)
    if facts is None or facts.state != "active":
        return False  # deleted meanwhile: the migrate command skips it too
    if not facts.owner_org:
        raise no_bucket_error(resource_id, facts.dataset_name)
    ref = visibility.ObjectRef(facts.owner_org, facts.dataset_id,
                               resource_id)
    bucket, key = ref.bucket, ref.key
    stored = stored if listed_in == bucket else transfer.UNKNOWN
    recorded = facts.extras
    if moving(recorded.get("s3_url"), bucket, key):
        # In the store already, in a former organization's bucket: the
        # move job copies it (an upload here would orphan the old data).
        move.request_move_if_needed(facts.dataset_id)
        log.info("Resource %s: its data move to s3://%s/%s",
                 resource_id, bucket, key)
        return False
    if _recorded_and_listed(recorded, object_store.object_url(bucket, key),
                            stored, path):
        return False
    result = transfer.upload_verified(
        path, bucket, key, expected_sha256=recorded.get("sha256") or None,
        label=f"resource {resource_id}", stored=stored)
    visibility.reconcile([ref], assume_closed=[ref] if result.uploaded
                         else ())
    changes = s3_state_changes(
        object_store.object_url(bucket, key), result.sha256,
        s3_available=tk.asbool(recorded.get("s3_available")),
        s3_url=recorded.get("s3_url"),
        recorded_sha256=recorded.get("sha256"),
        verified_at=recorded.get(ckan_data.VERIFIED_AT))
    # One statement and a coalesced index job: the cost does not grow
    # with the number of resources in the dataset.
    search_index.record_resource_fields(facts.dataset_id, resource_id,
                                        changes)
    log.info("Resource %s %s s3://%s/%s", resource_id,
             "uploaded to" if result.uploaded else "already at", bucket, key)
    # The dataset may have changed organization during the upload.
    move.request_move_if_needed(facts.dataset_id)
    return result.uploaded


def _recorded_and_listed(recorded: Mapping[str, Any], url: str,
                         stored: dict[str, Any] | None, path: Path) -> bool:
    return (tk.asbool(recorded.get("s3_available"))
            and recorded.get("s3_url") == url and bool(recorded.get("sha256"))
            and stored is not transfer.UNKNOWN and stored is not None
            and stored["ContentLength"] == path.stat().st_size)


# --- artifact transfers (thread-safe: files and the store, never CKAN) ---

def transfer_resource(plan: ResourcePlan,
                      options: MigrationOptions) -> list[ArtifactOutcome]:
    """Upload/verify/delete every artifact of a resource (thread-safe).

    Touches only files and the store, never CKAN. An error of one
    artifact is recorded and the others are still handled. Tags are set
    later, from the database state of that moment (:mod:`.record`).
    """
    outcomes = []
    for artifact in layout.ARTIFACTS:
        outcome = ArtifactOutcome(artifact, plan.keys[artifact])
        try:
            _ArtifactTransfer(plan, artifact, options, outcome).run()
        except (errors.StoreError, errors.LocalFileError, OSError) as exc:
            outcome.error = f"{artifact}: {exc}"
        outcomes.append(outcome)
    return outcomes


class _ArtifactTransfer:
    """Verify, upload and delete one artifact; the result goes to ``out``.

    With a verify option the stored object is looked at first; then a
    local file is uploaded unless an identical object is there, and with
    ``delete_local`` deleted once every stored byte matches it.
    """

    def __init__(self, plan: ResourcePlan, artifact: str,
                 options: MigrationOptions, out: ArtifactOutcome) -> None:
        self.plan, self.artifact = plan, artifact
        self.options, self.out = options, out
        self.path = plan.paths[artifact]
        self.bucket, self.key = plan.bucket, plan.keys[artifact]
        self.expected = expected_sha256(plan, artifact)
        self.local = self.path.is_file()  # a dangling symlink is missing
        # Taken before anything reads the file: deletion later checks that
        # the file is still the one that was read and verified.
        self.verified_file = (fsops.file_identity(self.path)
                              if options.delete_local and self.local
                              else None)
        #: SHA256 of the local file / of the stored object, if read
        self.local_sha: str | None = None
        self.object_sha: str | None = None
        #: what the verification found, reported with the upload
        self.notes: list[str] = []
        #: size/ETag of the object (None: absent) for the upload, if known
        self.stored: dict[str, Any] | None = plan.stored.get(
            artifact, transfer.UNKNOWN)

    @property
    def where(self) -> str:
        return f"s3://{self.bucket}/{self.key}"

    def run(self) -> None:
        # Before anything reads, uploads or deletes behind the path.
        layout.check_not_foreign(
            self.path, f"resource {self.plan.record.id} ({self.artifact})")
        if self.options.verify and self._verify():
            return
        if not self.local:
            self._no_local_file()
        elif self.options.dry_run:
            self._dry_run()
        else:
            result = self._upload()
            if self.options.delete_local:
                self._delete(result)

    def _verify(self) -> bool:
        """Look at the stored object (as the run's bucket listing knows it,
        unless the checksum check needs its metadata); True when nothing
        is left to do."""
        head = self.stored = self.plan.stored.get(self.artifact,
                                                  transfer.UNKNOWN)
        if head is transfer.UNKNOWN or self.options.verify_checksum:
            head = self.stored = object_store.head_object(self.bucket,
                                                          self.key)
        if head is None:
            if not self.local:
                if self.artifact == "resource":
                    raise errors.StoreError(
                        f"{self.where} does not exist and there is no "
                        f"local file {self.path} to upload")
                return True  # no such artifact: fine
            self.notes.append("missing in store")
        elif self.options.verify_checksum:
            if self.local and not self.expected:
                self.local_sha = fsops.file_sha256(self.path)
            self._deep_check(self.expected or self.local_sha
                             or head.get("Metadata", {}).get("sha256"))
        else:
            self.out.in_store = True
            self.out.action = "exists"
        # A local file (or a dangling symlink a dead run left) still to
        # delete means work is left.
        done = self.out.in_store and not (self.options.delete_local and (
            self.local or self.path.is_symlink()))
        if done and not self.local:
            self._read_unrecorded_sha256()
        return done

    def _deep_check(self, reference: str | None) -> None:
        """Compare every stored byte with the SHA256 ``reference``.

        A mismatch is noted (the local file is uploaded again) or, without
        a local file, raised. Without a reference only the existence
        counts.
        """
        out = self.out
        if reference is None:
            # E.g. an object written by other software, its file gone.
            out.in_store = True
            out.action = "exists (no SHA256 to compare with)"
            return
        found = transfer.object_sha256(self.bucket, self.key)
        if found == reference:
            out.in_store = True
            out.action = "verified"
            self.object_sha = found
            return
        if not self.local:
            raise errors.StoreError(
                f"{self.where} does not match the recorded checksum: "
                f"expected SHA256 {reference}, found {found}; no local file "
                "to repair it from", code=errors.MISMATCH)
        self.notes.append(
            f"checksum mismatch (expected {reference}, found {found})")

    def _no_local_file(self) -> None:
        out = self.out
        if (self.options.delete_local and self.path.is_symlink()
                and self._remove_dangling_symlink()):
            self._read_unrecorded_sha256()
            return
        if self.artifact != "resource" or self.plan.record.s3_available:
            return
        if not self.options.verify and object_store.object_exists(
                self.bucket, self.key):
            # Verified and deleted by a run that died before it could
            # record the resource: record it now.
            out.in_store = True
            out.action = "in store, no local file"
            self._read_unrecorded_sha256()
        else:
            out.missing = True
            out.action = f"missing: no local file {self.path}"

    def _read_unrecorded_sha256(self) -> None:
        """The SHA256 of a resource whose local file a dead run deleted
        before it recorded the SHA256 it had computed: from the object,
        which was verified against the file before the deletion (else no
        copy would have a recorded checksum to be checked against)."""
        if (self.artifact == "resource" and self.out.in_store
                and not self.expected and not self.options.dry_run):
            self.out.sha256 = self.object_sha or transfer.object_sha256(
                self.bucket, self.key)

    def _remove_dangling_symlink(self) -> bool:
        """Finish a deletion that was interrupted between target and
        symlink.

        Returns False (symlink kept) when the object is not in the store
        either: then the data are lost and the link is evidence.
        """
        if not object_store.object_exists(self.bucket, self.key):
            return False
        self.out.in_store = True
        if self.options.dry_run:
            self.out.action = "would remove dangling symlink"
            return True
        self.path.unlink()
        self.out.action = "dangling symlink removed"
        return True

    def _dry_run(self) -> None:
        if not self.out.in_store:
            self.out.would_upload = True
            self.out.action = ", ".join(self.notes + ["would upload"])
        elif self.options.delete_local:
            self.out.would_delete = True
            self.out.action = "would delete local file"

    def _upload(self) -> transfer.UploadResult:
        out = self.out
        if not self.expected and self.artifact != "resource":
            # Known in advance, the checksum is stored with the object, so
            # a later --verify-checksum can check it without the local file
            # (the resource's checksum is recorded in CKAN: no extra read).
            self.expected = self.local_sha or fsops.file_sha256(self.path)
        result = transfer.upload_verified(
            self.path, self.bucket, self.key, expected_sha256=self.expected,
            label=f"resource {self.plan.record.id} ({self.artifact})",
            stored=self.stored)
        out.in_store = True
        out.uploaded = result.uploaded
        out.sha256 = result.sha256
        if result.uploaded:
            out.action = ", ".join(self.notes + ["uploaded"])
        elif not out.action:
            out.action = "already in store"
        return result

    def _delete(self, result: transfer.UploadResult) -> None:
        """Delete the local file if every stored byte matches it."""
        object_sha = self.object_sha
        if result.uploaded or object_sha is None:
            # The deep check: every stored byte against the local file.
            object_sha = transfer.object_sha256(self.bucket, self.key)
        if object_sha != result.sha256:
            raise errors.StoreError(
                f"{self.where} does not match the local file {self.path} "
                f"after upload: expected SHA256 {result.sha256}, found "
                f"{object_sha}; local file kept", code=errors.MISMATCH)
        deleted = delete_local_file(self.path, self.verified_file)
        self.out.deleted = True
        self.out.action += ", local file deleted" + (
            "" if deleted else " (symlink only: target outside depots)")


def delete_local_file(path: Path,
                      verified: fsops.FileIdentity | None = None) -> bool:
    """Delete an artifact's file: the real file behind a symlink, then it.

    With ``verified`` (the identity taken before the file was read and
    its object verified), the path is looked at again right before the
    deletion and nothing is deleted (LocalFileError) unless it still leads
    to that file, unchanged: the verification can take minutes, and
    whatever was put at the path meanwhile has no verified copy.

    The target goes first: an interruption leaves a dangling symlink
    (which a rerun reports as missing), never an unreachable orphan in
    the depot. A target outside the depots and the backup location is not
    deleted (returns False): the plugin does not own it.
    """
    if verified is not None:
        try:
            now = fsops.file_identity(path)
        except FileNotFoundError:
            raise errors.LocalFileError(f"{path} disappeared after it was "
                                        "verified; nothing deleted") from None
        if now != verified:
            raise errors.LocalFileError(
                f"{path} changed after it was verified "
                f"({fsops.what_changed(verified, now)}); local file kept",
                code=errors.MISMATCH)
    if not path.is_symlink():
        path.unlink()
        return True
    # The file checked above, not what a new lookup would find.
    real = Path(verified.real if verified is not None
                else os.path.realpath(path))
    owned = any(fsops.is_inside(real, root)
                for root in layout.allowed_link_roots())
    if owned:
        real.unlink(missing_ok=True)
    path.unlink()
    return owned


# --- the bulk engine (dcor-migrate-resources-to-object-store) -----------

def migrate_resources(records: Iterable[inventory.ResourceRecord],
                      options: MigrationOptions,
                      on_result: Callable[[ResourceOutcome], None],
                      jobs: int = 4, hold_index: bool = False
                      ) -> search_index.IndexUpdates:
    """Migrate resources with ``jobs`` transfers at once.

    The transfers run in a thread pool; planning and the CKAN updates
    happen in the calling thread as results come back, and ``on_result``
    is called there once per resource. At most ``2 * jobs`` resources plus
    a recording batch are in flight: enough that the pool keeps busy while
    the calling thread records a batch, few enough that huge sites do not
    fill the memory with futures. An
    interrupt (KeyboardInterrupt) cancels what has not started.

    Each changed dataset's search-index entry is updated once, when its
    last resource is done (see :mod:`search_index`); the returned
    :class:`~search_index.IndexUpdates` says where that happened (with
    ``hold_index``, nothing is sent: the caller finds the datasets in its
    ``ready``).
    """
    if jobs < 1:
        raise ValueError(f"jobs must be at least 1, not {jobs}")
    return _BulkMigration(list(records), options, on_result, jobs,
                          hold_index).run()


Transfer = Future[list[ArtifactOutcome]]


class _BulkMigration:
    """What :func:`migrate_resources` shares between its steps."""

    def __init__(self, records: list[inventory.ResourceRecord],
                 options: MigrationOptions,
                 on_result: Callable[[ResourceOutcome], None],
                 jobs: int, hold_index: bool = False) -> None:
        self.records = records
        self.options = options
        self.in_flight = 2 * jobs + RECORD_BATCH_SIZE
        self.listings = BucketListings(records)
        self.recorder = Recorder(records, on_result, hold_index)
        self.pending: dict[Transfer, ResourcePlan] = {}
        # Transfers put themselves here when done: waiting costs the same
        # for 10 or 100 transfers in flight (concurrent.futures.wait locks
        # them all).
        self.done: queue.SimpleQueue[Transfer] = queue.SimpleQueue()
        self.pool = ThreadPoolExecutor(jobs,
                                       thread_name_prefix="dcor-migrate")

    def run(self) -> search_index.IndexUpdates:
        waiting = iter(self.records)
        try:
            while True:
                self._start_more(waiting)
                if not self.pending:
                    break
                self._collect(self._next_finished())
                if self.recorder.batch_full or not self.pending:
                    self.recorder.flush()
        finally:
            try:
                # Also on an interrupt: what was reported gets recorded (a
                # transfer ending during the shutdown is found by a rerun).
                self.pool.shutdown(wait=True, cancel_futures=True)
                self.recorder.flush()
            finally:
                self.recorder.finish()
        return self.recorder.index

    def _start_more(self, waiting: Iterator[inventory.ResourceRecord]
                    ) -> None:
        while len(self.pending) < self.in_flight:
            record = next(waiting, None)
            if record is None:
                return
            self._start(record)

    def _start(self, record: inventory.ResourceRecord) -> None:
        """Plan a resource and submit its transfer (or report a skip)."""
        outcome = ResourceOutcome(record, dry_run=self.options.dry_run)
        try:
            plan = plan_resource(record, self.options)
        except (errors.StoreError, ValueError) as exc:
            outcome.errors.append(str(exc))
            self.recorder.finished(outcome)
            return
        if plan is None:
            outcome.skipped_reason = skip_reason(record, self.options)
            self.recorder.finished(outcome)
            return
        if not self.options.verify_checksum:
            self.listings.fill(plan)
        future = self.pool.submit(transfer_resource, plan, self.options)
        self.pending[future] = plan
        future.add_done_callback(self.done.put)

    def _next_finished(self) -> list[Transfer]:
        """Wait for a finished transfer; return it and all others
        finished."""
        finished = [self.done.get()]
        while True:
            try:
                finished.append(self.done.get_nowait())
            except queue.Empty:
                return finished

    def _collect(self, finished: list[Transfer]) -> None:
        # Finished transfers are recorded before an interrupt (or other
        # exception) of a transfer that ended at the same time.
        for future in sorted(finished,
                             key=lambda f: f.exception() is not None):
            plan = self.pending.pop(future)
            outcome = ResourceOutcome(plan.record, artifacts=future.result(),
                                      dry_run=self.options.dry_run)
            self.recorder.add(plan, outcome)
