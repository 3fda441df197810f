"""What is stored, looked at without changing anything: for the audit.

A bucket is read with one listing (sizes, ETags, dates of every object),
its open multipart uploads and whether it carries the lifecycle rule; the
tags of its objects cost one request each and are read in parallel. On
block storage, a resource's upload path is classified and the depots are
walked once.
"""
from __future__ import annotations

import datetime
import enum
import os
import stat
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import botocore.exceptions

from ckanext.dcor_depot.storage import fsops, layout, lifecycle, object_store
from ckanext.dcor_depot.storage.multipart import clean_etag

#: Tag requests in flight at once: a bound, so a big bucket does not
#: flood the store.
TAG_THREADS = 32
#: Objects whose tag requests are handed to the threads at once.
TAG_CHUNK = 2000


@dataclass(frozen=True, slots=True)
class StoredObject:
    key: str
    size: int
    etag: str
    last_modified: datetime.datetime


@dataclass(frozen=True)
class OpenUpload:
    """An incomplete multipart upload and the bytes its parts hold."""
    key: str
    upload_id: str
    initiated: datetime.datetime
    size: int


@dataclass
class BucketSurvey:
    bucket: str
    objects: dict[str, StoredObject] = field(default_factory=dict)
    uploads: list[OpenUpload] = field(default_factory=list)
    #: the plugin's abort-incomplete-uploads rule is present
    has_lifecycle_rule: bool = True
    #: the bucket does not exist (nothing stored yet)
    missing: bool = False


def survey_bucket(bucket: str) -> BucketSurvey:
    """One listing of the bucket, its open uploads and lifecycle rule."""
    found = BucketSurvey(bucket)
    s3 = object_store.get_client()
    with object_store.translated(f"cannot survey bucket {bucket}"):
        try:
            for page in s3.get_paginator("list_objects_v2").paginate(
                    Bucket=bucket):
                for obj in page.get("Contents", []):
                    # UTC as the standard library's singleton: botocore
                    # gives each time a time zone object of its own.
                    found.objects[obj["Key"]] = StoredObject(
                        obj["Key"], int(obj["Size"]),
                        clean_etag(obj["ETag"]),
                        obj["LastModified"].astimezone(
                            datetime.timezone.utc))
        except botocore.exceptions.ClientError as exc:
            if object_store.error_code(exc) != "NoSuchBucket":
                raise
            found.missing = True
            return found
        found.uploads = list(_open_uploads(s3, bucket))
        found.has_lifecycle_rule = lifecycle.has_rule(s3, bucket)
    return found


def open_uploads(s3: Any, bucket: str, prefix: str = ""
                 ) -> Iterator[dict[str, Any]]:
    """Every incomplete multipart upload of a bucket (of keys starting
    with ``prefix``), as the store lists it (``Key``, ``UploadId``,
    ``Initiated``; paginated)."""
    kwargs: dict[str, Any] = {"Bucket": bucket}
    if prefix:
        kwargs["Prefix"] = prefix
    while True:
        resp = s3.list_multipart_uploads(**kwargs)
        yield from resp.get("Uploads", [])
        if not resp.get("IsTruncated") or not resp.get("NextKeyMarker"):
            return  # (a store that says "truncated" without a marker)
        kwargs["KeyMarker"] = resp["NextKeyMarker"]
        kwargs["UploadIdMarker"] = resp.get("NextUploadIdMarker", "")


def bucket_uploads(bucket: str) -> list[dict[str, Any]]:
    """:func:`open_uploads` of the whole bucket, listed now; NotFound
    when the bucket does not exist."""
    s3 = object_store.get_client()
    with object_store.translated(
            f"cannot list the multipart uploads of bucket {bucket}"):
        return list(open_uploads(s3, bucket))


def _open_uploads(s3: Any, bucket: str) -> Iterator[OpenUpload]:
    for item in open_uploads(s3, bucket):
        yield OpenUpload(item["Key"], item["UploadId"], item["Initiated"],
                         _parts_size(s3, bucket, item))


def _parts_size(s3: Any, bucket: str, upload: dict[str, Any]) -> int:
    total = 0
    kwargs: dict[str, Any] = {"Bucket": bucket, "Key": upload["Key"],
                              "UploadId": upload["UploadId"]}
    try:
        while True:
            resp = s3.list_parts(**kwargs)
            total += sum(int(part["Size"]) for part in resp.get("Parts", []))
            if not resp.get("IsTruncated"):
                return total
            kwargs["PartNumberMarker"] = resp["NextPartNumberMarker"]
    except botocore.exceptions.ClientError as exc:
        if object_store.error_code(exc) == "NoSuchUpload":
            return total  # completed or aborted meanwhile
        raise


def public_flags(objects: Iterable[tuple[str, str]],
                 threads: int = TAG_THREADS
                 ) -> dict[tuple[str, str], bool | None]:
    """``{(bucket, key): carries public=true}`` (None: gone meanwhile),
    one tagging request per object, ``threads`` at once."""
    items = list(objects)

    def flag(item: tuple[str, str]) -> bool | None:
        tags = object_store.get_tags(*item)
        return None if tags is None else (
            tags.get(object_store.PUBLIC_TAG) == "true")

    if not items:
        return {}
    flags: dict[tuple[str, str], bool | None] = {}
    with ThreadPoolExecutor(min(threads, len(items)),
                            thread_name_prefix="dcor-audit-tags") as pool:
        # In chunks: Executor.map makes a future of every item at once
        # (100,000 objects: ~100 MiB of futures).
        for start in range(0, len(items), TAG_CHUNK):
            chunk = items[start:start + TAG_CHUNK]
            flags.update(zip(chunk, pool.map(flag, chunk), strict=True))
    return flags


class LocalState(str, enum.Enum):
    """What a resource's upload path is."""
    MISSING = "missing"
    FILE = "file"
    #: a symlink to an existing file
    LINKED = "linked"
    #: a symlink whose target is gone
    DANGLING = "dangling"
    #: leads to a file outside the plugin's places (a planted symlink):
    #: never read, so no file of the resource
    FOREIGN = "foreign"


@dataclass(frozen=True, slots=True)
class LocalFile:
    #: the path looked at (a string: the audit keeps one per resource)
    path: str
    state: LocalState
    #: bytes of the file (0 if there is none)
    size: int = 0
    #: where a symlink points
    target: str | None = None

    @property
    def exists(self) -> bool:
        return self.state in (LocalState.FILE, LocalState.LINKED)


def local_file(path: Path) -> LocalFile:
    """Classify ``path`` (an upload path or a backup file)."""
    where = str(path)
    try:
        link = os.readlink(path)
    except FileNotFoundError:
        return LocalFile(where, LocalState.MISSING)
    except OSError:  # not a symlink
        link = None
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        return LocalFile(where, LocalState.DANGLING, target=link)
    foreign = layout.foreign_file(path)
    if foreign is not None:
        return LocalFile(where, LocalState.FOREIGN, target=foreign)
    state = LocalState.FILE if link is None else LocalState.LINKED
    return LocalFile(where, state, size,
                     None if link is None else os.path.realpath(path))


def depot_files(roots: Iterable[Path],
                skip: Callable[[Path], bool] = lambda _: False
                ) -> dict[str, tuple[int, float]]:
    """``{real path: (size, mtime)}`` of every regular file under ``roots`` but
    the plugin's temporary files and those ``skip`` names."""
    found: dict[str, tuple[int, float]] = {}
    for root in roots:
        for folder, _dirs, files in os.walk(root):
            for name in files:
                path = Path(folder) / name
                if fsops.parse_temp_name(name) is not None or skip(path):
                    continue
                try:
                    info = path.lstat()
                except FileNotFoundError:
                    continue
                if stat.S_ISREG(info.st_mode):
                    found[os.path.realpath(path)] = (info.st_size,
                                                     info.st_mtime)
    return found


def artifact_of(key: str) -> tuple[str, str] | None:
    """``(artifact, resource id)`` of a key of the plugin's layout."""
    try:
        return layout.parse_object_key(key)
    except ValueError:
        return None
