"""The user depot: move uploads there and leave a symlink behind.

CKAN writes uploads to ``{storage_path}/resources/RES/OUR/CEID``;
:func:`move_and_link` moves the file to the user depot and replaces it
with a symlink, so that
operators see each user's data in one folder while CKAN does not notice.
Every step is safe to repeat and safe against a crash at any point: the
upload path always holds either the original file or a symlink to a
complete, verified copy.
"""
from __future__ import annotations

import errno
import logging
import os
import shutil
import stat
from pathlib import Path

from ckanext.dcor_depot import errors
from ckanext.dcor_depot.storage import fsops
from ckanext.dcor_depot.storage.fsops import (
    copy_verified,
    file_sha256,
    fsync_dir,
)

log = logging.getLogger(__name__)


def move_and_link(source: Path, target: Path) -> bool:
    """Put ``source``'s bytes at ``target`` and make ``source`` a symlink.

    Same filesystem: a hard link, so no bytes are copied. Another
    filesystem: copy, flush, verify, and only then replace the source.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    with fsops.locked_dir(source.parent):
        if source.is_symlink() or not source.is_file():
            return False  # another worker was faster
        _remove_stale_temps(source, target)
        if not _holds_same_bytes(source, target):
            _place_copy(source, target)
        fsops.replace_with_symlink(source, target)
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
    fsops.remove_stale_temps(target.parent, name=target.name, max_age=0,
                           owner_gone=False)
    fsops.remove_stale_temps(source.parent, name=source.name, max_age=0,
                           owner_gone=False)
    # Those of other resources: when they are old and their runs gone.
    fsops.remove_stale_temps(target.parent)
    fsops.remove_stale_temps(source.parent)


def _place_copy(source: Path, target: Path) -> None:
    temp = fsops.temp_for(target, "part")
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
        raise errors.LocalFileError(f"could not place {source} at "
                                    f"{target}: {exc.strerror or exc}"
                                    ) from exc


def _copy_verified(source: Path, temp: Path) -> None:
    read, written = copy_verified(source, temp)
    shutil.copystat(source, temp)
    if read != written:
        raise errors.LocalFileError(f"the copy of {source} at {temp} "
                                    "differs from the original",
                                    code=errors.MISMATCH)
