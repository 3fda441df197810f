"""File-system primitives every writer of files uses.

- **Names**: :func:`safe_component` turns a user-supplied name into one
  readable path component of bounded UTF-8 length; :func:`ensure_inside`
  and :func:`is_inside` are the one containment check.
- **Temporary files** name their owner:
  ``.{name}.{pid}[-{token}].{kind}.tmp``, hidden, the name of the file it
  becomes (cut to :data:`NAME_BYTES` bytes, so the whole name stays within
  the 255-byte limit whatever the name contains), the id of the process
  writing it, a random token where several threads of one process may
  write the same file, and what it is. A run that is killed cannot remove
  its temporary files; the next run removes those in the folders it works
  in that are stale: not modified for :data:`STALE_AFTER` seconds *and*
  written by a process that no longer exists on this machine. Files of
  other software never match the pattern.
- **Verified copies** (:func:`copy_verified`, :func:`file_sha256`),
  **durable renames** (:func:`fsync_dir`), **atomic symlink swaps**
  (:func:`replace_with_symlink`) and **folder locks** (:func:`locked_dir`).
"""
from __future__ import annotations

import fcntl
import hashlib
import logging
import os
import re
import secrets
import time
import unicodedata
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


# ---------------------------------------------------------------- names

# Longest file name most filesystems accept, in bytes.
NAME_MAX = 255

_UNSAFE_RE = re.compile(r"[/\\\x00-\x1f\x7f]")


def _truncate_utf8(text: str, max_bytes: int) -> str:
    encoded = text.encode("utf-8")
    if len(encoded) <= max_bytes:
        return text
    return encoded[:max_bytes].decode("utf-8", errors="ignore")


def safe_component(name: str, max_bytes: int = NAME_MAX,
                   fallback: str = "unnamed") -> str:
    """A readable single path component made from a user-supplied name.

    Separators, NUL and control characters become ``_``; leading dots,
    underscores and blanks are dropped so that no component is ``.``,
    ``..`` or hidden; the result is at most ``max_bytes`` bytes of UTF-8.
    """
    text = unicodedata.normalize("NFC", str(name))
    text = _UNSAFE_RE.sub("_", text).strip()
    text = text.lstrip("._ ")
    text = _truncate_utf8(text, max_bytes).strip()
    return text or fallback


def _normalize(path: str | os.PathLike[str]) -> str:
    return os.path.normpath(os.path.abspath(path))


def is_inside(path: str | os.PathLike[str],
              root: str | os.PathLike[str]) -> bool:
    """Whether ``path`` lies strictly below ``root`` (lexically: resolve
    symlinks first where they matter)."""
    root_abs = _normalize(root).rstrip(os.sep)
    return _normalize(path).startswith(root_abs + os.sep)


def ensure_inside(root: Path, path: Path) -> Path:
    """Return ``path`` after checking it lies below ``root``."""
    if not is_inside(path, root):
        raise ValueError(f"path {path} would leave {root}")
    return path


# ------------------------------------------------------- temporary files

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
    return safe_component(name, NAME_BYTES)


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


def create_temp(folder: Path, name: str, kind: str) -> Path:
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


def parse_temp_name(file_name: str) -> TempName | None:
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


def remove_stale_temps(folder: Path, *, name: str | None = None,
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
    removed: list[Path] = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed  # no folder, nothing left behind
    now = time.time()
    for entry in entries:
        temp = parse_temp_name(entry.name)
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


# ------------------------------------------- checksums and durable writes

_CHUNK = 8 * 1024 * 1024


def file_sha256(path: str | os.PathLike[str],
                progress: Callable[[int], Any] | None = None) -> str:
    """SHA256 (hex) of a file, read in large chunks."""
    hasher = hashlib.sha256()
    with open(path, "rb") as fd:
        while chunk := fd.read(_CHUNK):
            hasher.update(chunk)
            if progress:
                progress(len(chunk))
    return hasher.hexdigest()


def copy_verified(source: str | os.PathLike[str],
                  dest: str | os.PathLike[str],
                  progress: Callable[[int], Any] | None = None
                  ) -> tuple[str, str]:
    """Copy ``source`` to ``dest`` and flush it to disk.

    Returns the SHA256 of what was read and of what a second read of
    ``dest`` finds; the caller decides what a difference means.
    """
    hasher = hashlib.sha256()
    with open(source, "rb") as src, open(dest, "wb") as dst:
        while chunk := src.read(_CHUNK):
            hasher.update(chunk)
            dst.write(chunk)
            if progress:
                progress(len(chunk))
        dst.flush()
        os.fsync(dst.fileno())
    return hasher.hexdigest(), file_sha256(dest)


def fsync_dir(folder: str | os.PathLike[str] | Path) -> None:
    """Flush a folder's entries, so that a rename or link in it survives a
    crash. Filesystems that cannot do this are skipped silently."""
    try:
        fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextmanager
def locked_dir(path: Path) -> Iterator[None]:
    """Exclusive lock on a folder, shared by all processes on this
    machine (released when the process dies)."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def replace_with_symlink(path: Path, target: Path) -> None:
    """Make ``path`` a symlink to ``target`` in one atomic rename, so that
    ``path`` never is missing (whatever it was before)."""
    link = temp_for(path, "symlink")
    link.unlink(missing_ok=True)
    os.symlink(target, link)
    os.replace(link, path)
    fsync_dir(path.parent)


# ------------------------------------------------------- file identity


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


def what_changed(before: FileIdentity, now: FileIdentity) -> str:
    """How the file at a path differs from the one identified before."""
    if before.link != now.link or before.real != now.real:
        return f"it now leads to {now.real}"
    if (before.dev, before.ino) != (now.dev, now.ino):
        return "another file was put in its place"
    return "its size, modification or change time differs"
