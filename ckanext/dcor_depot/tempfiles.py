"""Temporary files that name their owner, and the removal of stale ones.

Every temporary file the plugin writes (figshare downloads, append-resource
and depot copies, object downloads, symlinks about to replace a file) is
called ``.{name}.{pid}[-{token}].{kind}.tmp``: hidden, the name of the file
it becomes (shortened to :data:`NAME_BYTES` bytes of UTF-8, so the whole
name stays within the 255-byte limit whatever the name contains), the id of
the process writing it, a random token where several threads of one
process may write the same file, and what it is.

A run that is killed cannot remove its temporary files. The next run
removes those in the folders it works in that are stale: not modified for
:data:`STALE_AFTER` seconds *and* written by a process that no longer
exists on this machine. Files of other software never match the pattern.
"""
from __future__ import annotations

import logging
import os
import re
import secrets
import time
from dataclasses import dataclass
from pathlib import Path

from . import layout

log = logging.getLogger(__name__)

#: Seconds without modification before a temporary file of a process that
#: is gone may be removed. Long, so that nothing in use is ever removed
#: (a paused process, a process on another machine sharing the folder).
STALE_AFTER = 24 * 3600
#: Bytes of the target name kept in a temporary name; with the dot, pid,
#: token, kind and ``.tmp`` the name stays far below 255 bytes.
NAME_BYTES = 200
#: What the plugin's temporary files are.
KINDS = frozenset({"part", "symlink", "download", "figshare"})

_TEMP_RE = re.compile(
    r"^\.(?P<name>.+)\.(?P<pid>[1-9][0-9]{0,9})(?:-[0-9a-f]{1,32})?"
    r"\.(?P<kind>[a-z]+)\.tmp$", re.DOTALL)
# Names of earlier versions (depot, append-resource, figshare): no .tmp.
_LEGACY_RE = re.compile(
    r"^\.(?P<name>.+)\.(?P<pid>[1-9][0-9]{0,9})\.(?P<kind>part|symlink)$",
    re.DOTALL)


@dataclass(frozen=True)
class TempName:
    #: the (shortened) name of the file the temporary file is for
    name: str
    pid: int
    kind: str


def short_name(name: str) -> str:
    """``name`` as it appears in temporary names (a safe component, cut
    in bytes)."""
    return layout.safe_component(name, NAME_BYTES)


def temp_path(folder: Path, name: str, kind: str, *,
              unique: bool = False) -> Path:
    """The temporary name in ``folder`` for a file ``name``.

    Without ``unique`` the name is the same for every call of this process
    (for callers that hold a lock or remove it first); with ``unique`` it
    carries a random token (for threads writing the same file at once).
    """
    if kind not in KINDS:
        raise ValueError(f"unknown kind of temporary file {kind!r}")
    owner = str(os.getpid())
    if unique:
        owner += "-" + secrets.token_hex(4)
    return folder / f".{short_name(name)}.{owner}.{kind}.tmp"


def temp_for(dest: Path, kind: str, *, unique: bool = False) -> Path:
    """The temporary name next to ``dest`` for ``dest``."""
    return temp_path(dest.parent, dest.name, kind, unique=unique)


def create(folder: Path, name: str, kind: str) -> Path:
    """Create an empty, new temporary file (``unique`` name, O_EXCL)."""
    while True:
        path = temp_path(folder, name, kind, unique=True)
        try:
            # 0o666: the umask decides the permissions of the final file.
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        except FileExistsError:
            continue  # 32 random bits collided: draw again
        os.close(fd)
        return path


def parse(file_name: str) -> TempName | None:
    """What a file name says if it is one of our temporary names."""
    match = _TEMP_RE.match(file_name)
    if match and match["kind"] in KINDS:
        return TempName(match["name"], int(match["pid"]), match["kind"])
    match = _LEGACY_RE.match(file_name)
    if match:
        return TempName(match["name"], int(match["pid"]), match["kind"])
    return None


def process_exists(pid: int) -> bool:
    """Whether a process with this id runs on this machine."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # it exists, it just belongs to someone else
    except OverflowError:
        return False  # no pid is that large
    return True


def remove_stale(folder: Path, *, name: str | None = None,
                 max_age: float = STALE_AFTER,
                 owner_gone: bool = True,
                 kinds: frozenset[str] | None = None) -> list[Path]:
    """Remove the stale temporary files in ``folder``; returns them.

    ``kinds`` limits the removal to temporary files of those kinds and of
    the current naming (a shared folder such as the system's temporary
    folder, where names of earlier versions never were written).

    Stale means: not modified for ``max_age`` seconds and (with
    ``owner_gone``) its process is gone. ``name`` limits the removal to
    temporary files of that file: a caller holding the lock that every
    writer of that file holds knows that all of them are stale and passes
    ``max_age=0, owner_gone=False`` (pids are reused). Best effort: a file
    that cannot be removed is logged and left.
    """
    wanted = short_name(name) if name is not None else None
    removed = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed  # no folder, nothing left behind
    now = time.time()
    for entry in entries:
        temp = parse(entry.name)
        if temp is None or (wanted is not None and temp.name != wanted):
            continue
        if kinds is not None and (temp.kind not in kinds
                                  or not entry.name.endswith(".tmp")):
            continue
        if (_is_stale(entry, temp, now, max_age, owner_gone)
                and _remove(entry.path)):
            removed.append(Path(entry.path))
    return removed


def _is_stale(entry: os.DirEntry, temp: TempName, now: float,
              max_age: float, owner_gone: bool) -> bool:
    if max_age > 0:
        try:
            info = entry.stat(follow_symlinks=False)
        except OSError:
            return False  # gone already
        # (A hard link or copystat gives a fresh temporary file the old
        # mtime of the file it copies: then the pid check protects it.)
        if now - info.st_mtime < max_age:
            return False
    return not owner_gone or not process_exists(temp.pid)


def _remove(path: str) -> bool:
    try:
        os.unlink(path)
    except FileNotFoundError:
        return False  # another run was faster
    except OSError as exc:
        log.warning("Cannot remove the stale temporary file %s: %s", path,
                    exc.strerror or exc)
        return False
    log.info("Removed the stale temporary file %s", path)
    return True
