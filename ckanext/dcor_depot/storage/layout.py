"""Every path and object key of the storage layout, computed in one place.

Resource ids are CKAN UUIDs ``rid``; ``RES/OUR/CEID`` stands for
``rid[:3]/rid[3:6]/rid[6:]``. Names that come from users (resource,
dataset, organization and user names) are turned into single, readable
path components that can never leave the depot.
"""
from __future__ import annotations

import os
import re
from pathlib import Path

from ckanext.dcor_depot import config, errors
from ckanext.dcor_depot.storage.fsops import (
    NAME_MAX,
    ensure_inside,
    is_inside,
    safe_component,
)

#: Artifacts stored per resource: the resource itself and two ancillary
#: files other DCOR plugins write next to it (DC data only).
ARTIFACTS = ("resource", "condensed", "preview")
ARTIFACT_SUFFIXES = {
    "resource": "",
    "condensed": "_condensed.rtdc",
    "preview": "_preview.jpg",
}

_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9-]{6,99}$")


def check_id(identifier: str) -> str:
    """Return ``identifier`` if it is a safe CKAN id, else raise ValueError."""
    if not isinstance(identifier, str) or not _ID_RE.fullmatch(identifier):
        raise ValueError(f"not a valid CKAN id: {identifier!r}")
    return identifier


def id_parts(resource_id: str) -> tuple[str, str, str]:
    """``(RES, OUR, CEID)`` of a resource id."""
    rid = check_id(resource_id)
    return rid[:3], rid[3:6], rid[6:]


def ckan_upload_path(resource_id: str) -> Path:
    """Where CKAN's classic uploader keeps (or links) a resource's file."""
    res, our, ceid = id_parts(resource_id)
    return config.storage_path() / "resources" / res / our / ceid


def artifact_local_path(resource_id: str, artifact: str) -> Path:
    """Block-storage path of an artifact (next to the upload path)."""
    path = ckan_upload_path(resource_id)
    return path.with_name(path.name + ARTIFACT_SUFFIXES[artifact])


def object_key(resource_id: str, artifact: str = "resource") -> str:
    """Object key of an artifact: ``{artifact}/RES/OUR/CEID``."""
    if artifact not in ARTIFACTS:
        raise ValueError(f"unknown artifact {artifact!r}")
    return "/".join((artifact,) + id_parts(resource_id))


def object_key_prefix(artifact: str = "resource") -> str:
    """The key prefix of an artifact's objects (for listings)."""
    if artifact not in ARTIFACTS:
        raise ValueError(f"unknown artifact {artifact!r}")
    return f"{artifact}/"


def parse_object_key(key: str) -> tuple[str, str]:
    """``(artifact, resource id)`` of an object key; ValueError if the key
    is not one this layout makes."""
    parts = key.split("/")
    if len(parts) != 4 or parts[0] not in ARTIFACTS:
        raise ValueError(f"not an artifact key: {key!r}")
    rid = check_id("".join(parts[1:]))
    if object_key(rid, parts[0]) != key:
        raise ValueError(f"not an artifact key: {key!r}")
    return parts[0], rid


def user_depot_path(*, user_name: str, org_name: str, dataset_id: str,
                    dataset_name: str, resource_id: str,
                    resource_name: str) -> Path:
    """``{users depot}/{USER}-{ORG}/{PK}/{ID}/{PKGNAME}_{RESID}_{RESNAME}``."""
    check_id(dataset_id)
    check_id(resource_id)
    root = config.users_depot_path()
    owner = safe_component(f"{user_name}-{org_name}")
    # Keep the resource id whole (it makes the name unique) and shorten
    # the human-readable parts to fit the file-name limit.
    budget = NAME_MAX - len(resource_id) - 2
    pkg = safe_component(dataset_name, budget // 2, fallback="dataset")
    res = safe_component(resource_name, budget - len(pkg.encode()),
                         fallback="resource")
    path = (root / owner / dataset_id[:2] / dataset_id[2:4]
            / f"{pkg}_{resource_id}_{res}")
    return ensure_inside(root, path)


def figshare_depot_path(article_id: int, version: int,
                        file_name: str) -> Path:
    """``{depots_path}/figshare/{article_id}/v{version}/{file name}``."""
    root = config.figshare_depot_path()
    path = (root / str(int(article_id)) / f"v{int(version)}"
            / safe_component(file_name, fallback="file"))
    return ensure_inside(root, path)


def backup_path(resource_id: str) -> Path | None:
    """Block-storage backup of an S3-route upload, if backups are on."""
    root = config.local_backup_location()
    if root is None:
        return None
    return root.joinpath(*id_parts(resource_id))


def allowed_link_roots() -> list[str]:
    """Real paths under which the plugin's own files live (the depots and
    the backup location): the only targets an upload-path symlink may
    have, and the only real files the plugin deletes behind one."""
    roots = [os.path.realpath(config.depots_path())]
    backup = config.local_backup_location()
    if backup is not None:
        roots.append(os.path.realpath(backup))
    return roots


def foreign_file(path: Path) -> str | None:
    """Where ``path`` leads if that is an existing file outside the
    places the plugin owns, else None (a file of ours, or nothing).

    Ours are: a symlink into the depots or the backup location
    (:func:`allowed_link_roots`), and a regular file in CKAN's storage
    folder. Anything else (a symlink planted at an upload path, one
    leading to another resource's upload, a folder on the way that is a
    symlink) is never read, uploaded, moved, hashed or served: it may
    be any file the CKAN user can read.
    """
    try:
        real = os.path.realpath(path)
        if not os.path.exists(real):
            # Nothing there (a dangling link is no file), unless it is a
            # link loop: a link where none belongs.
            return real if os.path.lexists(real) else None
        if not os.path.isfile(real):
            return real  # a device, a FIFO, a folder: never ours
        roots = allowed_link_roots()
        if not os.path.islink(path):
            roots.append(os.path.realpath(config.storage_path()
                                          / "resources"))
    except (OSError, ValueError):
        return str(path)  # cannot tell: refuse rather than read
    return None if any(is_inside(real, root) for root in roots) else real


def owned_file(path: Path) -> bool:
    """Whether ``path`` leads to an existing file the plugin owns."""
    return path.exists() and foreign_file(path) is None


def check_not_foreign(path: Path, what: str) -> None:
    """LocalFileError if ``path`` leads to a file the plugin does not
    own (see :func:`foreign_file`)."""
    real = foreign_file(path)
    if real is not None:
        raise errors.LocalFileError(
            f"{what}: {path} leads to {real}, outside the depots, the "
            "backup location and CKAN's storage; not read (remove the "
            "link, or put the file where it belongs)")
