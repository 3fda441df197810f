"""The user depot: move uploads there and leave a symlink behind.

CKAN writes uploads to ``{storage_path}/resources/RES/OUR/CEID``; this job
moves the file to the user depot and replaces it with a symlink, so that
operators see each user's data in one folder while CKAN does not notice.
Every step is safe to repeat and safe against a crash at any point: the
upload path always holds either the original file or a symlink to a
complete, verified copy.
"""
from __future__ import annotations

import errno
import fcntl
import logging
import os
import shutil
import stat
from contextlib import contextmanager
from pathlib import Path

from . import ckan_data, errors, layout, tempfiles
from .checksums import copy_verified, file_sha256
from .durability import fsync_dir

log = logging.getLogger(__name__)


class DepotError(errors.LocalFileError):
    """Moving a file into the depot failed; the upload path is unchanged."""


@contextmanager
def locked_dir(path: Path):
    """Exclusive lock on a folder, shared by all workers on this machine."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def symlink_user_dataset(resource_id: str) -> bool:
    """Move a resource's upload into the user depot and symlink it back.

    Returns whether anything was done (False for symlinks, missing files
    and the hand-managed organizations).
    """
    upload = layout.ckan_upload_path(resource_id)
    if upload.is_symlink() or not upload.is_file():
        return False
    resource = ckan_data.resource_show(resource_id)
    dataset = ckan_data.package_show(resource["package_id"])
    org_name = ckan_data.organization_name(dataset)
    if org_name in ckan_data.HAND_MANAGED_ORGANIZATIONS:
        return False
    target = layout.user_depot_path(
        user_name=ckan_data.user_name(dataset["creator_user_id"]),
        org_name=org_name,
        dataset_id=dataset["id"],
        dataset_name=dataset["name"],
        resource_id=resource_id,
        resource_name=resource.get("name") or "",
    )
    return move_and_link(upload, target)


def move_and_link(source: Path, target: Path) -> bool:
    """Put ``source``'s bytes at ``target`` and make ``source`` a symlink.

    Same filesystem: a hard link, so no bytes are copied. Another
    filesystem: copy, flush, verify, and only then replace the source.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    with locked_dir(source.parent):
        if source.is_symlink() or not source.is_file():
            return False  # another worker was faster
        _remove_stale_temps(source, target)
        if not _holds_same_bytes(source, target):
            _place_copy(source, target)
        _replace_with_symlink(source, target)
    log.info("Moved %s to the depot at %s", source, target)
    return True


def _holds_same_bytes(source: Path, target: Path) -> bool:
    """Whether ``target`` already is a complete copy (crash recovery).

    Only a regular file counts. A symlink never does, whatever it leads
    to: one leading back to the upload would make the upload a link to
    itself (its bytes lost), one leading elsewhere would make the depot
    depend on a file it does not own. It is replaced by a real copy.
    """
    try:
        info = target.lstat()
    except FileNotFoundError:
        return False
    if not stat.S_ISREG(info.st_mode):
        return False
    if os.path.samestat(source.stat(), info):
        return True  # the hard link of a run that died before the symlink
    if source.stat().st_size != info.st_size:
        return False
    return file_sha256(source) == file_sha256(target)


def _remove_stale_temps(source: Path, target: Path) -> None:
    """Delete temporary files that dead runs left behind."""
    # Whoever else works on this resource waits for the lock, so
    # temporary files of it found now are left by runs that died.
    tempfiles.remove_stale(target.parent, name=target.name, max_age=0,
                           owner_gone=False)
    tempfiles.remove_stale(source.parent, name=source.name, max_age=0,
                           owner_gone=False)
    # Those of other resources: when they are old and their runs gone.
    tempfiles.remove_stale(target.parent)
    tempfiles.remove_stale(source.parent)


def _place_copy(source: Path, target: Path) -> None:
    temp = tempfiles.temp_for(target, "part")
    try:
        try:
            os.link(source, temp)
        except OSError as exc:
            if exc.errno not in (errno.EXDEV, errno.EPERM, errno.EMLINK):
                raise
            _copy_verified(source, temp)
        os.replace(temp, target)
        fsync_dir(target.parent)
    except OSError as exc:
        temp.unlink(missing_ok=True)
        raise DepotError(f"could not place {source} at {target}: "
                         f"{exc.strerror or exc}") from exc


def _copy_verified(source: Path, temp: Path) -> None:
    read, written = copy_verified(source, temp)
    shutil.copystat(source, temp)
    if read != written:
        raise DepotError(f"the copy of {source} at {temp} differs from the "
                         "original")


def _replace_with_symlink(source: Path, target: Path) -> None:
    link = tempfiles.temp_for(source, "symlink")
    link.unlink(missing_ok=True)
    os.symlink(target, link)
    # rename() swaps the regular file for the symlink atomically.
    os.replace(link, source)
    fsync_dir(source.parent)
