"""Background jobs of a resource: which run, on which queue, in which order.

Each resource gets at most one pending job of each kind: job ids are
derived from the resource id and the kind. A job runs after its
predecessor even if the predecessor failed (the S3 copy does not need the
symlink), so no job waits for one that will never finish.
"""
from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import ckan.plugins.toolkit as tk

from ckanext.dcor_depot import config, names
from ckanext.dcor_depot.operations import (
    backup,
    direct_upload,
    symlink,
    visibility,
)
from ckanext.dcor_depot.operations.migrate import migrate_resource_to_s3
from ckanext.dcor_depot.records import job_queue
from ckanext.dcor_depot.storage import layout, object_store

log = logging.getLogger(__name__)

# Bytes per second assumed for a copy to a depot on another filesystem.
_CROSS_FS_COPY_RATE = 50 * 1024 * 1024
# Bytes per second assumed for reading an object from the store (slow
# networks included: a timeout must not end a job that makes progress).
_STORE_READ_RATE = 20 * 1024 * 1024


@dataclass(frozen=True)
class JobKind:
    name: str
    func: Callable[..., Any]
    queue: str
    timeout: int
    title: str


SYMLINK = JobKind("symlink", symlink.symlink_user_dataset,
                  names.QUEUE_SHORT, 60, "Move resource to the user depot")
UPLOAD_S3 = JobKind("s3-upload", migrate_resource_to_s3,
                    names.QUEUE_NORMAL, 3600,
                    "Copy resource to the object store")
BACKUP_S3 = JobKind("s3-backup",
                    backup.backup_resource_from_s3_to_block_storage,
                    names.QUEUE_NORMAL, 3600, "Back up resource from S3")
SHA256_S3 = JobKind("s3-sha256", direct_upload.record_sha256,
                    names.QUEUE_NORMAL, 3600, "Record the SHA256 of resource")
KINDS = (SYMLINK, UPLOAD_S3, BACKUP_S3, SHA256_S3)


def recover_abandoned_jobs() -> None:
    """Re-queue the jobs of workers that died (job_queue.recover_abandoned)."""
    job_queue.recover_abandoned(names.QUEUES)


def before_worker_fork() -> None:
    """A worker is about to fork a work horse for its next job.

    Jobs of dead workers go back to the queue, and the S3 client is made
    here once: building it costs about 0.5 s, which every work horse
    would pay again. The worker never sends a request with it, so no
    connection is shared with the horses (each opens its own).
    """
    recover_abandoned_jobs()
    if config.s3_available():
        try:
            object_store.get_client()
        except Exception as exc:  # noqa: BLE001 - the job will report it
            log.warning("Could not prepare the S3 client: %s", exc)


def job_id(resource_id: str, kind: JobKind) -> str:
    """Deterministic RQ job id of a resource's job."""
    return f"{layout.check_id(resource_id)}-{kind.name}"


def planned_kinds(resource: dict[str, Any]) -> list[JobKind]:
    """The jobs a newly created resource needs: only those that will act.

    A file on block storage goes to its depot and, with an object store,
    into the store; a file that arrived in the store directly (the S3
    route) is backed up to block storage if a backup location is set.
    """
    rid = resource["id"]
    if resource.get("url_type") == names.URL_TYPE_S3_UPLOAD:
        # A direct upload: its object is verified, its SHA256 not read yet.
        return [SHA256_S3] + _backup(rid)
    if resource.get("url_type") != "upload":
        return []
    already_in_s3 = tk.asbool(resource.get("s3_available"))
    if os.path.exists(layout.ckan_upload_path(rid)):
        # A resource created with its object already verified in the store
        # (figshare import, append-resource) needs no second upload.
        if config.s3_available() and not already_in_s3:
            return [SYMLINK, UPLOAD_S3]
        return [SYMLINK]
    if config.s3_available() and already_in_s3:
        return _backup(rid)  # the S3 route: the file is in the store
    return []


def _backup(resource_id: str) -> list[JobKind]:
    return [BACKUP_S3] if layout.backup_path(resource_id) else []


def enqueue_resource_jobs(resource: dict[str, Any]) -> list[str]:
    """Queue the jobs of a new resource, each after the one before it;
    returns the ids of queued jobs."""
    queued: list[str] = []
    previous: str | None = None
    for kind in planned_kinds(resource):
        jid = job_id(resource["id"], kind)
        queued_id = job_queue.enqueue_once(
            kind.func, [resource["id"]], job_id=jid, queue=kind.queue,
            timeout=_timeout(kind, resource),
            title=f"{kind.title} {resource['id']}", after=previous)
        if queued_id is None:
            log.info("Job %s is already pending", jid)
        else:
            queued.append(queued_id)
        previous = queued_id or job_queue.last_pending(jid)
    return queued


def _timeout(kind: JobKind, resource: dict[str, Any]) -> int:
    """The kind's timeout; more for large objects read from the store and
    for copies to another filesystem."""
    if kind in (SHA256_S3, BACKUP_S3):
        size = resource.get("size") or 0
        return max(kind.timeout, 600 + int(size) // _STORE_READ_RATE)
    if kind is not SYMLINK:
        return kind.timeout
    upload = layout.ckan_upload_path(resource["id"])
    depot_root = config.depots_path()
    try:
        same_fs = (upload.stat().st_dev
                   == _existing_parent(depot_root).stat().st_dev)
        size = upload.stat().st_size
    except OSError:
        return kind.timeout
    if same_fs:
        return kind.timeout
    return max(kind.timeout, 60 + size // _CROSS_FS_COPY_RATE)


def _existing_parent(path):
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def visibility_sync_job_id(dataset_id: str) -> str:
    """Fixed id of a dataset's visibility sync job."""
    return f"{layout.check_id(dataset_id)}-sync-visibility"


def enqueue_visibility_sync(dataset_id: str, extra_orgs: list[str],
                            extra_resources: list[str]) -> bool:
    """Queue the job that brings a dataset's tags in line with the
    database (after tagging failed); returns False if a waiting one will
    do it."""
    queued = job_queue.enqueue_once(
        visibility.sync_dataset_job,
        [dataset_id, extra_orgs, extra_resources],
        job_id=visibility_sync_job_id(dataset_id), queue=SYMLINK.queue,
        timeout=3600,
        title=f"Sync object visibility of dataset {dataset_id}")
    if queued is None and (extra_orgs or extra_resources):
        log.warning("Visibility sync of %s is waiting with other objects; "
                    "also run dcor-depot-sync-visibility", dataset_id)
    return queued is not None
