"""What an interrupted upload needs to resume: a small JSON file per
upload in a state directory.

The file is named by a hash of the site, the dataset, the file's absolute
path, its size and its modification time, so a changed file never resumes
an upload of its old bytes. It is written (atomically) before the first
part is sent and deleted once the resource exists. It holds no secret:
the API token is never stored.
"""
from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import stat
import tempfile
from dataclasses import dataclass
from pathlib import Path

from ckanext.dcor_depot.client.api import ClientError

STATE_VERSION = 1


def default_state_dir() -> Path:
    """``$XDG_CACHE_HOME/dcor-depot-client`` or
    ``~/.cache/dcor-depot-client``."""
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "dcor-depot-client"


@dataclass(frozen=True)
class FileIdentity:
    """Which bytes a path held: a changed file has another identity."""
    path: str
    size: int
    mtime_ns: int

    @classmethod
    def of(cls, path: str | os.PathLike[str]) -> FileIdentity:
        absolute = os.path.abspath(path)
        stat = os.stat(absolute)
        return cls(absolute, stat.st_size, stat.st_mtime_ns)


@dataclass(frozen=True)
class UploadState:
    """One upload in progress: this file to this dataset of this site."""
    site: str
    dataset: str
    path: str
    size: int
    mtime_ns: int
    resource_id: str

    @classmethod
    def for_file(cls, site: str, dataset: str, identity: FileIdentity,
                 resource_id: str = "") -> UploadState:
        return cls(site.rstrip("/"), dataset, identity.path, identity.size,
                   identity.mtime_ns, resource_id)

    def same_upload(self, other: UploadState) -> bool:
        """Everything but the resource id is equal."""
        return dataclasses.replace(other, resource_id=self.resource_id) \
            == self

    @property
    def file_name(self) -> str:
        key = json.dumps([self.site, self.dataset, self.path, self.size,
                          self.mtime_ns])
        return hashlib.sha256(key.encode()).hexdigest()[:32] + ".json"


def state_file(state_dir: Path, wanted: UploadState) -> Path:
    return state_dir / wanted.file_name


def check_folder(state_dir: Path) -> None:
    """Refuse a state folder that another user owns or may write to.

    Whoever can put a state file there chooses which upload the client
    resumes, and which one it may end: such a folder is never read.
    A folder that does not exist yet is fine (:func:`save` creates it
    for its user only).
    """
    try:
        info = state_dir.stat()
    except FileNotFoundError:
        return
    except OSError as exc:
        raise ClientError(f"the state folder {state_dir} cannot be "
                          f"checked: {exc}") from exc
    if not stat.S_ISDIR(info.st_mode):
        raise ClientError(f"the state folder {state_dir} is not a folder: "
                          "choose another with --state-dir")
    if not hasattr(os, "getuid"):
        return  # no POSIX owners and modes (Windows): nothing to compare
    if info.st_uid != os.getuid():
        raise ClientError(f"the state folder {state_dir} belongs to "
                          "another user: choose another with --state-dir")
    if info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise ClientError(f"the state folder {state_dir} may be written by "
                          "other users: make it private (chmod 700) or "
                          "choose another with --state-dir")


def load(state_dir: Path, wanted: UploadState) -> UploadState | None:
    """The saved state of this upload; None if there is none (or it is
    unreadable or of another upload: then it is not trusted).
    ClientError if the folder is not the user's own (:func:`check_folder`).
    """
    check_folder(state_dir)
    try:
        raw = json.loads(state_file(state_dir, wanted).read_text("utf-8"))
        if raw.pop("version", None) != STATE_VERSION:
            return None
        saved = UploadState(**raw)
    except (OSError, ValueError, TypeError):
        return None
    if not saved.same_upload(wanted) or not saved.resource_id:
        return None
    return saved


def save(state_dir: Path, state: UploadState) -> Path:
    """Write the state atomically: a reader (or a resumed run after a
    crash) sees the old file or the new one, never a part."""
    # Only its user may plant or read states there.
    state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    check_folder(state_dir)
    target = state_file(state_dir, state)
    text = json.dumps({"version": STATE_VERSION, **dataclasses.asdict(state)},
                      indent=1)
    fd, temporary = tempfile.mkstemp(dir=state_dir, prefix=".tmp-",
                                     suffix=".json")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(temporary, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise
    return target


def delete(state_dir: Path, state: UploadState) -> None:
    with contextlib.suppress(OSError):
        state_file(state_dir, state).unlink()

