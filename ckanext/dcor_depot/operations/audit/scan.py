"""Gather what the audit compares: the database, the buckets, the disks.

Everything is read once, before anything is judged: one query for the
resources, one listing per bucket (plus its open uploads and lifecycle
rule), the tags of every object of the plugin's layout (in parallel, with
a bound; a rolling audit reads those of its selection only, see
``rolling.py``), a look at each upload path and backup file, and one walk
of the depots and the backup location.
"""
from __future__ import annotations

import datetime
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from ckanext.dcor_depot import config, errors
from ckanext.dcor_depot.records import ckan_data, inventory
from ckanext.dcor_depot.storage import fsops, layout, object_store, survey

#: Buckets surveyed at once (each is a few sequential requests).
BUCKET_THREADS = 4

ObjectId = tuple[str, str]


@dataclass
class SiteScan:
    now: datetime.datetime
    records: list[inventory.AuditRecord]
    org_names: dict[str, str]
    store: bool
    #: the organizations audited (None: the whole site); ``records`` are
    #: always the whole site's, so that ownership is judged rightly
    org_ids: set[str] | None = None
    #: bucket -> what it holds (only buckets of this site)
    buckets: dict[str, survey.BucketSurvey] = field(default_factory=dict)
    #: (bucket, key) -> carries public=true (None: vanished meanwhile)
    public: dict[ObjectId, bool | None] = field(default_factory=dict)
    #: resource id -> its upload path / its backup file
    uploads: dict[str, survey.LocalFile] = field(default_factory=dict)
    backups: dict[str, survey.LocalFile] = field(default_factory=dict)
    #: real path -> (size, mtime) of every file in the depots and backups
    #: (None: not walked, as when only some organizations are audited)
    local_files: dict[str, tuple[int, float]] | None = None
    errors: list[str] = field(default_factory=list)

    def org_label(self, org_id: str | None) -> str:
        if not org_id:
            return ""
        return self.org_names.get(org_id, org_id)

    def audited(self, org_id: str | None) -> bool:
        return self.org_ids is None or org_id in self.org_ids

    def stored(self, bucket: str, key: str) -> survey.StoredObject | None:
        found = self.buckets.get(bucket)
        return None if found is None else found.objects.get(key)


def scan_site(org_names: Iterable[str] = (), tags: bool = True) -> SiteScan:
    """Read everything the audit needs (of the named organizations, or of
    the whole site). Failures are collected in ``errors``: the audit is
    then incomplete, never wrong about what it did read."""
    names = ckan_data.organization_names()
    wanted = set(org_names)
    by_name = {name: oid for oid, name in names.items()}
    unknown = wanted - by_name.keys()
    if unknown:
        raise ValueError(f"no organization {', '.join(sorted(unknown))}")
    org_ids = {by_name[name] for name in wanted} or None
    scan = SiteScan(
        now=datetime.datetime.now(datetime.timezone.utc),
        records=inventory.audit_records(), org_names=names,
        store=config.s3_available(), org_ids=org_ids)
    _scan_local(scan, whole_site=org_ids is None)
    if scan.store:
        _scan_buckets(scan, org_ids)
        if tags:
            scan_tags(scan)
    return scan


def _scan_local(scan: SiteScan, whole_site: bool) -> None:
    missing = [f"{label} {path} is missing (not mounted?)"
               for label, path in required_roots() if not path.is_dir()]
    if missing:
        # No file of a resource could be seen: every one would look lost.
        scan.errors += missing
        return
    for record in scan.records:
        if scan.audited(record.owner_org):
            _scan_files(scan, record)
    if whole_site:
        try:
            scan.local_files = survey.depot_files(
                local_roots(), skip=_is_plugin_state)
        except OSError as exc:
            scan.errors.append(f"cannot walk the depots: {exc}")


def required_roots() -> list[tuple[str, Path]]:
    """Folders that exist on every working site."""
    return [("ckan.storage_path", config.storage_path()),
            ("ckanext.dcor_depot.depots_path", config.depots_path())]


def _scan_files(scan: SiteScan, record: inventory.AuditRecord) -> None:
    """The upload path and the backup of a resource."""
    try:
        if record.url_type == "upload":
            scan.uploads[record.id] = survey.local_file(
                layout.ckan_upload_path(record.id))
        backup = layout.backup_path(record.id)
        if backup is not None and record.url_type in \
                inventory.FILE_URL_TYPES:
            scan.backups[record.id] = survey.local_file(backup)
    except ValueError:
        return  # an id from before ids were checked: no files
    except OSError as exc:  # a loop, no permission, an I/O error
        scan.errors.append(f"cannot look at the files of resource "
                           f"{record.id}: {exc}")


def local_roots() -> list[Path]:
    """The folders whose files belong to resources."""
    roots = [config.depots_path()]
    backup = config.local_backup_location()
    if backup is not None and not fsops.is_inside(backup, roots[0]):
        roots.append(backup)
    return [root for root in roots if root.is_dir()]


def _is_plugin_state(path: Path) -> bool:
    """Files the plugin keeps next to the data (the temporary folder when
    it lies in a depot)."""
    return fsops.is_inside(path, config.tmp_dir())


def site_bucket_orgs(org_ids: set[str] | None,
                     records: Iterable[inventory.AuditRecord]
                     ) -> dict[str, str]:
    """``{bucket: organization id}`` of the buckets to survey: every bucket
    of the site (or of ``org_ids``) and those the records name."""
    found: dict[str, str] = {}
    if org_ids is None:
        for bucket in object_store.site_buckets():
            org = object_store.bucket_organization(bucket)
            if org is not None:
                found[bucket] = org
    for org in org_ids or {r.owner_org for r in records if r.owner_org}:
        found[object_store.bucket_name(org)] = org
    for record in records:
        if org_ids is not None and record.owner_org not in org_ids:
            continue
        for url in (record.s3_url, record.moved_from):
            org = object_store.url_organization(url)
            if org is not None:
                found[object_store.bucket_name(org)] = org
    return found


def _scan_buckets(scan: SiteScan, org_ids: set[str] | None) -> None:
    try:
        with object_store.leading("cannot list the buckets"):
            buckets = site_bucket_orgs(org_ids, scan.records)
    except errors.StoreError as exc:
        scan.errors.append(str(exc))
        return

    def one(bucket: str) -> survey.BucketSurvey | str:
        try:
            return survey.survey_bucket(bucket)
        except errors.StoreError as exc:
            return str(exc)

    with ThreadPoolExecutor(BUCKET_THREADS,
                            thread_name_prefix="dcor-audit") as pool:
        surveyed = pool.map(one, list(buckets))
        for bucket, found in zip(buckets, surveyed, strict=True):
            if isinstance(found, str):
                scan.errors.append(found)
            else:
                scan.buckets[bucket] = found


def scan_tags(scan: SiteScan,
              objects: list[ObjectId] | None = None) -> None:
    """Read the tags of ``objects`` (default: every object of the
    plugin's layout in the scanned buckets) into ``scan.public``."""
    if objects is None:
        objects = [(bucket, key) for bucket, found in scan.buckets.items()
                   for key in found.objects if survey.artifact_of(key)]
    try:
        scan.public = survey.public_flags(objects)
    except errors.StoreError as exc:
        scan.errors.append(f"cannot read the tags: {exc}")


def age(scan: SiteScan, when: datetime.datetime | None) -> float:
    """Seconds since ``when`` (naive datetimes are UTC, as CKAN's)."""
    if when is None:
        return float("inf")
    if when.tzinfo is None:
        when = when.replace(tzinfo=datetime.timezone.utc)
    return (scan.now - when).total_seconds()
