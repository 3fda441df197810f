"""Copy resources from block storage into the object store, verified."""
from __future__ import annotations

import collections
import logging
import os
import queue
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import ckan.plugins.toolkit as tk

from ckanext.dcor_depot.operations import move, visibility
from ckanext.dcor_depot.records import ckan_data, inventory, search_index
from ckanext.dcor_depot.storage import fsops, layout, object_store, transfer
from ckanext.dcor_depot.storage.fsops import file_sha256

log = logging.getLogger(__name__)


def migrate_resource_to_s3(resource_id: str) -> bool:
    """Upload a resource's file to its organization's bucket.

    Skips the upload when an identical object is already there, verifies
    the stored bytes, tags the object as the database says at that moment
    (see :mod:`visibility`), and records ``s3_available``, ``s3_url`` and
    ``sha256``. Returns whether it uploaded.
    """
    path = layout.ckan_upload_path(resource_id)
    if not path.exists():
        return False
    resource = ckan_data.resource_show(resource_id)
    dataset = ckan_data.package_show(resource["package_id"])
    if not dataset.get("owner_org"):
        raise MigrationError(f"resource {resource_id}: its dataset "
                             f"{dataset['name']} has no organization, so it "
                             "has no bucket")
    ref = visibility.ObjectRef(dataset["owner_org"], dataset["id"],
                               resource_id)
    bucket, key = ref.bucket, ref.key
    if _moving(resource.get("s3_url"), bucket, key):
        # In the store already, in a former organization's bucket: the
        # move job copies it (an upload here would orphan the old data).
        move.request_move_if_needed(dataset["id"])
        log.info("Resource %s: its data move to s3://%s/%s",
                 resource_id, bucket, key)
        return False
    result = transfer.upload_verified(
        path, bucket, key, expected_sha256=resource.get("sha256") or None,
        label=f"resource {resource_id}")
    visibility.reconcile([ref], assume_closed=[ref] if result.uploaded
                         else ())
    url = object_store.object_url(bucket, key)
    changes = {}
    if not resource.get("s3_available") or resource.get("s3_url") != url:
        changes.update(s3_available=True, s3_url=url)
    if not resource.get("sha256"):
        changes["sha256"] = result.sha256
    if changes:
        ckan_data.revise_resource(resource["package_id"], resource_id,
                                  changes)
    log.info("Resource %s %s s3://%s/%s", resource_id,
             "uploaded to" if result.uploaded else "already at", bucket, key)
    # The dataset may have changed organization during the upload.
    move.request_move_if_needed(dataset["id"])
    return result.uploaded


# --- artifact-level migration (dcor-migrate-resources-to-object-store) ------

#: Resources whose metadata are written together (per dataset).
RECORD_BATCH_SIZE = 50
#: A bucket is listed (instead of looking up each object) when at least
#: this many resources of it are migrated; each listing page (1000 keys)
#: must save this many lookups.
LISTING_MIN_RESOURCES = 10


class _BucketListings:
    """Bucket listings for migrations touching many objects of a bucket."""

    def __init__(self, records: list[inventory.ResourceRecord]) -> None:
        self.counts: dict[str | None, int] = {}
        for record in records:
            self.counts[record.owner_org] = \
                self.counts.get(record.owner_org, 0) + 1
        self.listings: dict[str, object_store.BucketListing | None] = {}

    def fill(self, plan: ResourcePlan) -> None:
        """Put what the listing knows about the plan's objects into it."""
        if plan.bucket not in self.listings:
            count = self.counts.get(plan.record.owner_org, 0)
            self.listings[plan.bucket] = (
                object_store.BucketListing(
                    plan.bucket, max_pages=count // LISTING_MIN_RESOURCES)
                if count >= LISTING_MIN_RESOURCES else None)
        listing = self.listings[plan.bucket]
        if listing is None:
            return
        for artifact, key in plan.keys.items():
            if listing.knows(key):
                plan.stored[artifact] = listing.get(key)


class MigrationError(object_store.ObjectStoreError):
    """An artifact could not be migrated; the message names it."""


@dataclass(frozen=True)
class MigrationOptions:
    #: head_object every artifact, even of resources marked s3_available
    verify_existence: bool = False
    #: read every stored byte and compare with the SHA256 (implies the above)
    verify_checksum: bool = False
    #: delete local files once their objects are verified byte by byte
    delete_local: bool = False
    #: report only, change nothing
    dry_run: bool = False

    @property
    def verify(self) -> bool:
        return self.verify_existence or self.verify_checksum


@dataclass(frozen=True)
class ResourcePlan:
    """Everything a transfer thread needs: no CKAN calls in threads."""
    record: inventory.ResourceRecord
    bucket: str
    paths: dict[str, Path]
    keys: dict[str, str]
    #: size/ETag (or None: absent) of the artifacts' objects, when known
    #: from a bucket listing
    stored: dict[str, dict[str, Any] | None] = field(default_factory=dict)


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
    #: SHA256 of the local file, when it was read
    sha256: str | None = None
    #: the local file (and a symlink to it) was removed
    deleted: bool = False
    #: the resource file is neither on block storage nor needed from it
    missing: bool = False
    error: str | None = None


@dataclass
class ResourceOutcome:
    record: inventory.ResourceRecord
    artifacts: list[ArtifactOutcome] = field(default_factory=list)
    #: set when the resource was skipped without looking at its files
    skipped_reason: str = ""
    errors: list[str] = field(default_factory=list)
    #: dry run: what would be done
    dry_run: bool = False

    @property
    def status(self) -> str:
        """One of "failed", "missing", "uploaded", "skipped"."""
        if self.errors or any(a.error for a in self.artifacts):
            return "failed"
        if any(a.missing for a in self.artifacts):
            return "missing"  # the resource file is nowhere: say so
        if any(a.uploaded or a.action.endswith("would upload")
               for a in self.artifacts):
            return "uploaded"
        return "skipped"

    @property
    def deleted(self) -> int:
        return sum(a.deleted or a.action == "would delete local file"
                   for a in self.artifacts)

    def describe(self) -> str:
        if self.skipped_reason:
            return self.skipped_reason
        parts = [f"{a.artifact} {a.action}" for a in self.artifacts
                 if a.action and not a.error]
        parts += [a.error for a in self.artifacts if a.error]
        parts += self.errors
        return "; ".join(parts) or "nothing to do"


def _moving(s3_url: str | None, bucket: str, key: str) -> bool:
    """The resource's data are in another bucket (a dataset that changed
    organization, see :mod:`move`)."""
    return bool(s3_url) and s3_url != object_store.object_url(bucket, key)


def skip_reason(record: inventory.ResourceRecord,
                options: MigrationOptions) -> str:
    """Why a resource needs no look at its files ("" if it does).

    Links have no files. A resource marked ``s3_available`` is skipped
    unless the objects are to be verified or local files deleted.
    """
    if record.url_type != "upload":
        return "not an upload (link to elsewhere)"
    if record.owner_org and _moving(
            record.s3_url, object_store.bucket_name(record.owner_org),
            layout.object_key(record.id)):
        return ("its data move to the bucket of its organization "
                "(dcor-depot-move-dataset)")
    if record.s3_available and not (options.verify or options.delete_local):
        return "already in S3 (s3_available)"
    return ""


def plan_resource(record: inventory.ResourceRecord,
                  options: MigrationOptions) -> ResourcePlan | None:
    """The plan for one resource, or None when it is to be skipped."""
    if skip_reason(record, options):
        return None
    if not record.owner_org:
        raise MigrationError(f"resource {record.id}: its dataset "
                             f"{record.dataset_name} has no organization, "
                             "so it has no bucket")
    return ResourcePlan(
        record=record,
        bucket=object_store.bucket_name(record.owner_org),
        paths={a: layout.artifact_local_path(record.id, a)
               for a in layout.ARTIFACTS},
        keys={a: layout.object_key(record.id, a) for a in layout.ARTIFACTS},
    )


def transfer_resource(plan: ResourcePlan,
                      options: MigrationOptions) -> list[ArtifactOutcome]:
    """Upload/verify/delete every artifact of a resource (thread-safe).

    Touches only files and the store, never CKAN. An error of one
    artifact is recorded and the others are still handled. Tags are set
    later, from the database state of that moment (:class:`RevisionBatch`).
    """
    outcomes = []
    for artifact in layout.ARTIFACTS:
        outcome = ArtifactOutcome(artifact, plan.keys[artifact])
        try:
            _transfer_artifact(plan, artifact, options, outcome)
        except (object_store.ObjectStoreError, OSError) as exc:
            outcome.error = f"{artifact}: {exc}"
        outcomes.append(outcome)
    return outcomes


def _transfer_artifact(plan: ResourcePlan, artifact: str,
                       options: MigrationOptions,
                       out: ArtifactOutcome) -> None:
    rid = plan.record.id
    path = plan.paths[artifact]
    bucket, key = plan.bucket, plan.keys[artifact]
    where = f"s3://{bucket}/{key}"
    label = f"resource {rid} ({artifact})"
    # Only the resource itself has a checksum on record.
    expected = plan.record.sha256 if artifact == "resource" else None
    local = path.is_file()  # follows symlinks; a dangling one is missing
    # Taken before anything reads the file: deletion later checks that
    # the file is still the one that was read and verified.
    verified_file = (file_identity(path) if options.delete_local and local
                     else None)
    local_sha: str | None = None  # SHA256 of the local file, if read
    object_sha: str | None = None  # SHA256 of the stored object, if read
    notes = []

    if options.verify:
        head = object_store.head_object(bucket, key)
        if head is None:
            if not local:
                if artifact == "resource":
                    raise MigrationError(
                        f"{where} does not exist and there is no local "
                        f"file {path} to upload")
                return  # no such artifact: fine
            notes.append("missing in store")
        elif options.verify_checksum:
            if local and not expected:
                local_sha = file_sha256(path)
            reference = (expected or local_sha
                         or head.get("Metadata", {}).get("sha256"))
            object_sha = _deep_check(bucket, key, reference, local, out,
                                     notes)
        else:
            out.in_store = True
            out.action = "exists"
        if out.in_store and not (options.delete_local and local):
            return

    if not local:
        if (options.delete_local and path.is_symlink()
                and _remove_dangling_symlink(path, bucket, key, options,
                                             out)):
            return
        if artifact == "resource" and not plan.record.s3_available:
            if not options.verify and object_store.object_exists(bucket,
                                                                 key):
                # Verified and deleted by a run that died before it
                # could record the resource: record it now.
                out.in_store = True
                out.action = "in store, no local file"
            else:
                out.missing = True
                out.action = f"missing: no local file {path}"
        return
    if options.dry_run:
        if not out.in_store:
            out.action = ", ".join(notes + ["would upload"])
        elif options.delete_local:
            out.action = "would delete local file"
        return

    if not expected and artifact != "resource":
        # Known in advance, the checksum is stored with the object, so a
        # later --verify-checksum can check it without the local file (the
        # resource's checksum is recorded in CKAN instead: no extra read).
        expected = local_sha or file_sha256(path)
    if options.verify:
        stored = head  # looked up above
    elif artifact in plan.stored:
        stored = plan.stored[artifact]
    else:
        stored = transfer.UNKNOWN
    result = transfer.upload_verified(path, bucket, key,
                                      expected_sha256=expected, label=label,
                                      stored=stored)
    out.in_store = True
    out.uploaded = result.uploaded
    out.sha256 = result.sha256
    if result.uploaded:
        out.action = ", ".join(notes + ["uploaded"])
    elif not out.action:
        out.action = "already in store"
    if options.delete_local:
        if result.uploaded or object_sha is None:
            # The deep check: every stored byte against the local file.
            object_sha = transfer.object_sha256(bucket, key)
        if object_sha != result.sha256:
            raise MigrationError(
                f"{where} does not match the local file {path} after "
                f"upload: expected SHA256 {result.sha256}, found "
                f"{object_sha}; local file kept")
        deleted = delete_local_file(path, verified_file)
        out.deleted = True
        out.action += ", local file deleted" + (
            "" if deleted else " (symlink only: target outside depots)")


def _deep_check(bucket: str, key: str, reference: str | None, local: bool,
                out: ArtifactOutcome, notes: list[str]) -> str | None:
    """Compare every stored byte with the SHA256 ``reference``.

    Returns the object's SHA256 when it matches. A mismatch is noted
    (the caller re-uploads the local file) or, without a local file,
    raised. Without a reference only the existence counts.
    """
    if reference is None:
        # E.g. an object written by other software, its file gone.
        out.in_store = True
        out.action = "exists (no SHA256 to compare with)"
        return None
    found = transfer.object_sha256(bucket, key)
    if found == reference:
        out.in_store = True
        out.action = "verified"
        return found
    if not local:
        raise MigrationError(
            f"s3://{bucket}/{key} does not match the recorded checksum: "
            f"expected SHA256 {reference}, found {found}; no local file to "
            "repair it from")
    notes.append(f"checksum mismatch (expected {reference}, found {found})")
    return None


def _remove_dangling_symlink(path: Path, bucket: str, key: str,
                             options: MigrationOptions,
                             out: ArtifactOutcome) -> bool:
    """Finish a deletion that was interrupted between target and symlink.

    Returns False (symlink kept) when the object is not in the store
    either: then the data are lost and the link is evidence.
    """
    if not object_store.object_exists(bucket, key):
        return False
    out.in_store = True
    if options.dry_run:
        out.action = "would remove dangling symlink"
        return True
    path.unlink()
    out.action = "dangling symlink removed"
    return True


@dataclass(frozen=True)
class FileIdentity:
    """Which file a path leads to, as far as ``lstat`` can tell."""
    #: the text of the symlink at the path (None: a regular file)
    link: str | None
    #: the path of the file itself (symlinks resolved)
    real: str
    dev: int
    ino: int
    size: int
    mtime_ns: int
    #: changes with every write and cannot be set back (unlike mtime)
    ctime_ns: int


def file_identity(path: Path) -> FileIdentity:
    """The identity of the file at ``path`` (behind a symlink)."""
    try:
        link: str | None = os.readlink(path)
    except OSError:
        link = None  # not a symlink (or gone: lstat below says so)
    real = os.path.realpath(path)
    info = os.lstat(real)
    return FileIdentity(link, real, info.st_dev, info.st_ino,
                        info.st_size, info.st_mtime_ns, info.st_ctime_ns)


def _what_changed(before: FileIdentity, now: FileIdentity) -> str:
    if before.link != now.link or before.real != now.real:
        return f"it now leads to {now.real}"
    if (before.dev, before.ino) != (now.dev, now.ino):
        return "another file was put in its place"
    return "its size, modification or change time differs"


def delete_local_file(path: Path,
                      verified: FileIdentity | None = None) -> bool:
    """Delete an artifact's file: the real file behind a symlink, then it.

    With ``verified`` (the identity taken before the file was read and
    its object verified), the path is looked at again right before the
    deletion and nothing is deleted (MigrationError) unless it still leads
    to that file, unchanged: the verification can take minutes, and
    whatever was put at the path meanwhile has no verified copy.

    The target goes first: an interruption leaves a dangling symlink
    (which a rerun reports as missing), never an unreachable orphan in
    the depot. A target outside the depots and the backup location is not
    deleted (returns False): the plugin does not own it.
    """
    if verified is not None:
        try:
            now = file_identity(path)
        except FileNotFoundError:
            raise MigrationError(f"{path} disappeared after it was "
                                 "verified; nothing deleted") from None
        if now != verified:
            raise MigrationError(
                f"{path} changed after it was verified "
                f"({_what_changed(verified, now)}); local file kept")
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


class RevisionBatch:
    """The S3 state of migrated resources, recorded in batches.

    ``package_revise`` costs 100-200 ms per call on a real site (validation,
    dictization, activity), more than moving a small file. The migration
    command therefore collects its results and, per batch, checks the
    datasets' visibility with one query and merges the new fields into
    the resources with one statement; the caller has the search index
    updated once per dataset.
    """

    def __init__(self) -> None:
        self.changes: dict[str, dict[str, dict[str, Any]]] = {}
        self.tagging: dict[str, list[tuple[ResourcePlan,
                                           list[ArtifactOutcome]]]] = {}

    def add(self, plan: ResourcePlan, outcomes: list[ArtifactOutcome],
            changes: dict[str, Any]) -> None:
        dataset_id = plan.record.dataset_id
        self.tagging.setdefault(dataset_id, []).append((plan, outcomes))
        if changes:
            self.changes.setdefault(dataset_id, {})[plan.record.id] = changes

    def flush(self) -> dict[str, str]:
        """Write everything; returns {resource id: error} for failures."""
        errors: dict[str, str] = {}
        tagging, self.tagging = self.tagging, {}
        changes, self.changes = self.changes, {}
        if not tagging:
            return errors
        # Tagged from the database state of now, checked again after
        # tagging: a visibility change during the transfer is caught here.
        items = [item for group in tagging.values() for item in group]
        try:
            tag_objects(items)
        except object_store.ObjectStoreError as exc:
            for plan, _ in items:
                errors[plan.record.id] = f"tagging failed: {exc}"
        changes = {dataset_id: {rid: fields for rid, fields
                                in resources.items() if rid not in errors}
                   for dataset_id, resources in changes.items()}
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


def tag_objects(items: list[tuple[ResourcePlan, list[ArtifactOutcome]]]
                ) -> None:
    """Tag the stored objects of migrated resources as the database says."""
    refs: list[visibility.ObjectRef] = []
    fresh: list[visibility.ObjectRef] = []
    for plan, outcomes in items:
        for outcome in outcomes:
            if not outcome.in_store or not plan.record.owner_org:
                continue
            ref = visibility.ObjectRef(plan.record.owner_org,
                                       plan.record.dataset_id,
                                       plan.record.id, outcome.artifact)
            refs.append(ref)
            if outcome.uploaded:  # a new object carries no tags
                fresh.append(ref)
    visibility.reconcile(refs, assume_closed=fresh)


def resource_changes(plan: ResourcePlan,
                     outcomes: list[ArtifactOutcome]) -> dict[str, Any]:
    """The fields to record on the resource after its transfer."""
    record = plan.record
    main = next((o for o in outcomes if o.artifact == "resource"), None)
    if main is None or not main.in_store or main.error:
        return {}
    url = object_store.object_url(plan.bucket, main.key)
    changes: dict[str, Any] = {}
    if not record.s3_available or record.s3_url != url:
        changes.update(s3_available=True, s3_url=url)
    if not record.sha256 and main.sha256:
        changes["sha256"] = main.sha256
    return changes


def record_resource(plan: ResourcePlan,
                    outcomes: list[ArtifactOutcome],
                    batch: RevisionBatch | None = None) -> None:
    """Tag the objects like their dataset and record the resource's S3 state.

    Runs in the main thread (CKAN actions). Only objects confirmed in the
    store count; a failed resource artifact is not marked ``s3_available``.
    With ``batch``, both are done when the batch is flushed.
    """
    changes = resource_changes(plan, outcomes)
    if batch is not None:
        batch.add(plan, outcomes, changes)
        return
    tag_objects([(plan, outcomes)])
    if changes:
        ckan_data.revise_resource(plan.record.dataset_id, plan.record.id,
                                  changes)


def migrate_resources(records: Iterable[inventory.ResourceRecord],
                      options: MigrationOptions,
                      on_result: Callable[[ResourceOutcome], None],
                      jobs: int = 4) -> search_index.IndexUpdates:
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
    :class:`~search_index.IndexUpdates` says where that happened.
    """
    if jobs < 1:
        raise ValueError(f"jobs must be at least 1, not {jobs}")
    records = list(records)
    in_flight = 2 * jobs + RECORD_BATCH_SIZE
    listings = _BucketListings(records)
    # Each changed dataset is reindexed once, when its last resource is done.
    unfinished = collections.Counter(r.dataset_id for r in records)
    to_reindex: set[str] = set()
    index = search_index.IndexUpdates()
    records = iter(records)
    pending: dict[Future, ResourcePlan] = {}
    batch = RevisionBatch()
    # Outcomes waiting for their metadata to be written.
    unrecorded: list[ResourceOutcome] = []

    def finished(outcome: ResourceOutcome) -> None:
        on_result(outcome)
        dataset_id = outcome.record.dataset_id
        unfinished[dataset_id] -= 1
        if unfinished[dataset_id] == 0 and dataset_id in to_reindex:
            to_reindex.discard(dataset_id)
            index.add([dataset_id])

    def flush() -> None:
        to_reindex.update(batch.changes)
        try:
            errors = batch.flush()
        except BaseException:
            # E.g. Ctrl-C while recording: these were not recorded.
            for outcome in unrecorded:
                outcome.errors.append("recording the S3 state was "
                                      "interrupted")
                finished(outcome)
            unrecorded.clear()
            raise
        for outcome in unrecorded:
            if outcome.record.id in errors:
                outcome.errors.append(errors[outcome.record.id])
            finished(outcome)
        unrecorded.clear()
        index.send()

    # Transfers put themselves here when done: waiting costs the same for
    # 10 or 100 transfers in flight (concurrent.futures.wait locks them all).
    finished_transfers: queue.SimpleQueue[Future] = queue.SimpleQueue()
    pool = ThreadPoolExecutor(jobs, thread_name_prefix="dcor-migrate")
    try:
        exhausted = False
        while True:
            while not exhausted and len(pending) < in_flight:
                record = next(records, None)
                if record is None:
                    exhausted = True
                    break
                outcome = ResourceOutcome(record, dry_run=options.dry_run)
                try:
                    plan = plan_resource(record, options)
                except (MigrationError, ValueError) as exc:
                    outcome.errors.append(str(exc))
                    finished(outcome)
                    continue
                if plan is None:
                    outcome.skipped_reason = skip_reason(record, options)
                    finished(outcome)
                    continue
                if not options.verify:
                    try:
                        listings.fill(plan)
                    except object_store.ObjectStoreError as exc:
                        log.warning("Listing %s failed (%s); looking up "
                                    "objects one by one", plan.bucket, exc)
                future = pool.submit(transfer_resource, plan, options)
                pending[future] = plan
                future.add_done_callback(finished_transfers.put)
            if not pending:
                break
            done = _next_finished(finished_transfers)
            # Finished transfers are recorded before an interrupt (or other
            # exception) of a transfer that ended at the same time.
            for future in sorted(done, key=lambda f: f.exception()
                                 is not None):
                plan = pending.pop(future)
                outcome = ResourceOutcome(plan.record,
                                          artifacts=future.result(),
                                          dry_run=options.dry_run)
                if not options.dry_run:
                    try:
                        record_resource(plan, outcome.artifacts, batch)
                    except (object_store.ObjectStoreError,
                            tk.ValidationError, tk.ObjectNotFound) as exc:
                        outcome.errors.append(
                            f"recording the S3 state failed: {exc}")
                unrecorded.append(outcome)
            if len(unrecorded) >= RECORD_BATCH_SIZE or not pending:
                flush()
    finally:
        try:
            # Also on an interrupt: what was reported gets recorded (a
            # transfer ending during the shutdown is found by a rerun).
            pool.shutdown(wait=True, cancel_futures=True)
            flush()
        finally:
            # Every dataset recorded so far, even if recording failed.
            index.add(to_reindex)
            index.send(final=True)
    return index


def _next_finished(finished: queue.SimpleQueue[Future]) -> list[Future]:
    """Wait for a finished transfer; return it and all others finished."""
    done = [finished.get()]
    while True:
        try:
            done.append(finished.get_nowait())
        except queue.Empty:
            return done
