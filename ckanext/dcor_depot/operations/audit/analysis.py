"""Judge a :class:`~.scan.SiteScan`: the findings and the usage figures.

Nothing here reads the database or the store: every decision is taken on
what the scan read, so the same scan always gives the same findings. The
tags of objects are judged with the one visibility predicate.
"""
from __future__ import annotations

import datetime
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from ckanext.dcor_depot.operations import visibility
from ckanext.dcor_depot.operations.audit.findings import Finding, Kind
from ckanext.dcor_depot.operations.audit.scan import SiteScan, age
from ckanext.dcor_depot.operations.audit.usage import OrgUsage
from ckanext.dcor_depot.records import ckan_data, inventory
from ckanext.dcor_depot.storage import layout, object_store, survey


@dataclass(frozen=True)
class Judgement:
    findings: list[Finding]
    usage: dict[str, OrgUsage]


def judge(scan: SiteScan, grace_seconds: float) -> Judgement:
    usage: dict[str, OrgUsage] = {}
    findings = list(_resource_findings(scan, grace_seconds))
    findings += _object_findings(scan, grace_seconds, usage)
    findings += _bucket_findings(scan, grace_seconds, usage)
    findings += _local_findings(scan, grace_seconds)
    _block_usage(scan, usage)
    return Judgement(findings, usage)


def derived_location(record: inventory.AuditRecord
                     ) -> tuple[str, str] | None:
    """Where the layout puts the resource's object (None: no bucket)."""
    if not record.owner_org:
        return None
    return (object_store.bucket_name(record.owner_org),
            layout.object_key(record.id))


def recorded_location(record: inventory.AuditRecord
                      ) -> tuple[str, str] | None:
    """Where ``s3_url`` says the object is, else where the layout puts it."""
    if record.s3_url:
        return object_store.parse_object_url(record.s3_url)
    return derived_location(record)


def _audited_records(scan: SiteScan) -> Iterator[inventory.AuditRecord]:
    for record in scan.records:
        if record.has_file and scan.audited(record.owner_org):
            try:
                layout.check_id(record.id)
            except ValueError:
                continue  # an id from before ids were checked: no files
            yield record


def _resource_findings(scan: SiteScan, grace: float
                       ) -> Iterator[Finding]:
    for record in _audited_records(scan):
        young = age(scan, record.created) < grace
        yield from _resource_problems(scan, record, young, grace)


def _finding(scan: SiteScan, kind: Kind, record: inventory.AuditRecord,
             key: str, detail: str) -> Finding:
    return Finding(kind, scan.org_label(record.owner_org),
                   record.dataset_name, record.id, key, detail,
                   dataset_id=record.dataset_id)


@dataclass(frozen=True)
class _Seen:
    """What the scan found of one resource's data."""
    scan: SiteScan
    record: inventory.AuditRecord
    upload: survey.LocalFile | None
    backup: survey.LocalFile | None
    #: the first of upload and backup that exists
    local: survey.LocalFile | None
    #: where its object is (or should be), and the object there
    where: tuple[str, str] | None
    stored: survey.StoredObject | None
    young: bool
    grace: float

    @property
    def label(self) -> str:
        return f"{self.where[0]}:{self.where[1]}" if self.where else ""

    @property
    def nothing_left(self) -> bool:
        return self.local is None and self.stored is None


#: A rule: (key, detail) of its finding, or None.
Rule = Callable[[_Seen], tuple[str, str] | None]


def _dangling_symlink(seen: _Seen) -> tuple[str, str] | None:
    upload = seen.upload
    if upload is None or upload.state is not survey.LocalState.DANGLING:
        return None
    return (str(upload.path),
            f"points to {upload.target}, which does not exist")


def _foreign_link(seen: _Seen) -> tuple[str, str] | None:
    upload = seen.upload
    if upload is None or upload.state is not survey.LocalState.FOREIGN:
        return None
    return (str(upload.path),
            f"leads to {upload.target}, outside the depots, the backup "
            "location and CKAN's storage; not used")


def _data_lost(seen: _Seen) -> tuple[str, str] | None:
    if not seen.nothing_left or seen.young:
        return None
    parts = []
    if seen.upload is not None:
        parts.append(f"no file at {seen.upload.path}")
    if seen.backup is not None:
        parts.append(f"no backup at {seen.backup.path}")
    parts.append(f"no object at {seen.label}" if seen.label else
                 "no object store" if not seen.scan.store else "no bucket")
    return seen.label, ", ".join(parts)


def _object_missing(seen: _Seen) -> tuple[str, str] | None:
    if (seen.local is None or seen.stored is not None or not seen.scan.store
            or seen.where is None or seen.young):
        return None
    return seen.label, (f"no object; a copy is at {seen.local.path}"
                        + ("; s3_available is set"
                           if seen.record.s3_available else ""))


def _size_mismatch(seen: _Seen) -> tuple[str, str] | None:
    if (seen.stored is None or seen.local is None
            or seen.local.size == seen.stored.size):
        return None
    return seen.label, (f"{seen.local.path} has {seen.local.size} bytes, "
                        f"the object {seen.stored.size}")


def _sha256_missing(seen: _Seen) -> tuple[str, str] | None:
    if seen.nothing_left or seen.record.sha256 or seen.young:
        return None
    return seen.label, "no sha256 recorded"


def _s3_url_mismatch(seen: _Seen) -> tuple[str, str] | None:
    """``s3_url`` other than the derived URL, unless the dataset changed
    (a move in progress) within the grace period."""
    record, derived = seen.record, derived_location(seen.record)
    if (seen.nothing_left or not record.s3_url or derived is None
            or not seen.scan.store):
        return None
    expected = object_store.object_url(*derived)
    if record.s3_url == expected or \
            age(seen.scan, record.dataset_modified) < seen.grace:
        return None
    return (f"{derived[0]}:{derived[1]}",
            f"s3_url is {record.s3_url}, the layout says {expected}")


#: The audit's rules for each resource's data, in the report's order.
RESOURCE_RULES: tuple[tuple[Kind, Rule], ...] = (
    (Kind.DANGLING_SYMLINK, _dangling_symlink),
    (Kind.FOREIGN_LINK, _foreign_link),
    (Kind.DATA_LOST, _data_lost),
    (Kind.OBJECT_MISSING, _object_missing),
    (Kind.SIZE_MISMATCH, _size_mismatch),
    (Kind.SHA256_MISSING, _sha256_missing),
    (Kind.S3_URL_MISMATCH, _s3_url_mismatch),
)


def _resource_problems(scan: SiteScan, record: inventory.AuditRecord,
                       young: bool, grace: float) -> Iterator[Finding]:
    seen = _seen(scan, record, young, grace)
    if seen is None:
        return  # a bucket could not be read: the audit is incomplete
    for kind, rule in RESOURCE_RULES:
        found = rule(seen)
        if found is not None:
            yield _finding(scan, kind, record, *found)


def _seen(scan: SiteScan, record: inventory.AuditRecord, young: bool,
          grace: float) -> _Seen | None:
    upload = scan.uploads.get(record.id)
    backup = scan.backups.get(record.id)
    # An s3_url outside this site's buckets is a finding of its own
    # (s3-url-mismatch), not a place to look for the object.
    places = [place for place in (recorded_location(record),
                                  derived_location(record))
              if place is not None
              and object_store.bucket_organization(place[0])
              ] if scan.store else []
    if any(bucket not in scan.buckets for bucket, _ in places):
        return None
    where = next((place for place in places if scan.stored(*place)),
                 places[0] if places else None)
    return _Seen(scan, record, upload, backup,
                 local=next((f for f in (upload, backup) if f and f.exists),
                            None),
                 where=where, stored=scan.stored(*where) if where else None,
                 young=young, grace=grace)


def dataset_states(scan: SiteScan) -> dict[str, ckan_data.DatasetState]:
    """The datasets' visibility state, built from the scanned records."""
    grouped: dict[str, list[inventory.AuditRecord]] = {}
    for record in scan.records:
        grouped.setdefault(record.dataset_id, []).append(record)
    return {dataset_id: ckan_data.DatasetState(
        name=rows[0].dataset_name,
        public=ckan_data.is_public(rows[0].private, rows[0].dataset_state,
                                   rows[0].owner_org),
        owner_org=rows[0].owner_org,
        active_resources=frozenset(r.id for r in rows
                                   if r.state == "active"),
        all_resources=frozenset(r.id for r in rows),
        s3_urls={r.id: r.s3_url for r in rows if r.s3_url},
        moved_from={r.id: r.moved_from for r in rows if r.moved_from})
        for dataset_id, rows in grouped.items()}


def owner_buckets(scan: SiteScan) -> dict[str, set[str]]:
    """``{resource id: buckets that may hold its objects}``."""
    owners: dict[str, set[str]] = {}
    for record in scan.records:
        buckets = owners.setdefault(record.id, set())
        derived = derived_location(record)
        if derived is not None:
            buckets.add(derived[0])
        for url in (record.s3_url, record.moved_from):
            found = object_store.parse_object_url(url or "")
            if found is not None:
                buckets.add(found[0])
    return owners


def _object_findings(scan: SiteScan, grace: float,
                     usage: dict[str, OrgUsage]) -> Iterator[Finding]:
    owners = owner_buckets(scan)
    by_id = {record.id: record for record in scan.records}
    states = dataset_states(scan)
    for bucket, found in scan.buckets.items():
        org_id = object_store.bucket_organization(bucket) or ""
        if not scan.audited(org_id):
            continue
        org = scan.org_label(org_id)
        figures = usage.setdefault(org, OrgUsage(org))
        for key, stored in found.objects.items():
            parsed = survey.artifact_of(key)
            figures.add_object(parsed[0] if parsed else "other", stored.size)
            if parsed is None:
                continue  # not the plugin's: not ours to judge
            artifact, rid = parsed
            record = by_id.get(rid)
            ref = visibility.ObjectRef(
                org_id, record.dataset_id if record else "", rid, artifact)
            yield from _tag_problem(scan, ref, record, states, org)
            if bucket not in owners.get(rid, ()) and \
                    age(scan, stored.last_modified) >= grace:
                figures.orphan_objects += 1
                figures.orphan_bytes += stored.size
                yield Finding(Kind.ORPHAN_OBJECT, org,
                              record.dataset_name if record else "", rid,
                              f"{bucket}:{key}", _orphan_detail(scan, record),
                              dataset_id=record.dataset_id if record else "")


def _orphan_detail(scan: SiteScan,
                   record: inventory.AuditRecord | None) -> str:
    if record is None:
        return "no resource with this id (purged?)"
    return (f"the resource belongs to dataset {record.dataset_name} of "
            f"organization {scan.org_label(record.owner_org) or '(none)'}")


def _tag_problem(scan: SiteScan, ref: visibility.ObjectRef,
                 record: inventory.AuditRecord | None,
                 states: dict[str, ckan_data.DatasetState],
                 org: str) -> Iterator[Finding]:
    public = scan.public.get((ref.bucket, ref.key))
    if public is None:
        return  # tags not read (or the object vanished meanwhile)
    wanted = visibility.should_be_public(ref, states)
    if public == wanted:
        return
    kind = Kind.WRONGLY_PUBLIC if public else Kind.WRONGLY_PRIVATE
    yield Finding(kind, org, record.dataset_name if record else "",
                  ref.resource_id, f"{ref.bucket}:{ref.key}",
                  "tagged public=true, the dataset is not public"
                  if public else "not tagged public, the dataset is public",
                  dataset_id=ref.dataset_id)


def _bucket_findings(scan: SiteScan, grace: float,
                     usage: dict[str, OrgUsage]) -> Iterator[Finding]:
    for bucket, found in scan.buckets.items():
        org_id = object_store.bucket_organization(bucket) or ""
        if found.missing or not scan.audited(org_id):
            continue
        org = scan.org_label(org_id)
        figures = usage.setdefault(org, OrgUsage(org))
        if not found.has_lifecycle_rule:
            yield Finding(Kind.LIFECYCLE_RULE_MISSING, org, key=bucket,
                          detail="the bucket lacks the rule that aborts "
                                 "forgotten multipart uploads")
        for upload in found.uploads:
            figures.multipart_uploads += 1
            figures.multipart_bytes += upload.size
            if age(scan, upload.initiated) >= grace:
                yield Finding(
                    Kind.STALE_MULTIPART_UPLOAD, org,
                    key=f"{bucket}:{upload.key}",
                    detail=f"initiated {_when(upload.initiated)}, "
                           f"{upload.size} bytes in parts (upload id "
                           f"{upload.upload_id})")


def _when(moment: datetime.datetime) -> str:
    return moment.astimezone(datetime.timezone.utc).strftime(
        "%Y-%m-%d %H:%M UTC")


def _local_findings(scan: SiteScan, grace: float) -> Iterator[Finding]:
    """Files in the depots and backups that no resource uses."""
    if scan.local_files is None:
        return
    used = {f.target for f in scan.uploads.values() if f.target}
    used |= {os.path.realpath(f.path) for f in scan.backups.values()
             if f.exists}
    now = scan.now.timestamp()
    for path, (size, mtime) in sorted(scan.local_files.items()):
        if path not in used and now - mtime >= grace:
            yield Finding(Kind.UNUSED_LOCAL_FILE, key=path,
                          detail=f"{size} bytes; no resource links to it")


def _block_usage(scan: SiteScan, usage: dict[str, OrgUsage]) -> None:
    for record in scan.records:
        if not scan.audited(record.owner_org):
            continue
        org = scan.org_label(record.owner_org) or "(no organization)"
        for found in (scan.uploads.get(record.id),
                      scan.backups.get(record.id)):
            if found is not None and found.exists:
                usage.setdefault(org, OrgUsage(org)).block_bytes += found.size
