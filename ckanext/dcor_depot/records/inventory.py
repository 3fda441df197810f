"""Every resource of the site, read straight from the database.

The commands must see drafts and private datasets, and must not depend on
the search index (which may lag behind or, in development, be a stub), so
they list resources with one query on CKAN's model.
"""
from __future__ import annotations

import datetime
from dataclasses import dataclass

import ckan.model as model
import ckan.plugins.toolkit as tk

#: Dataset states whose resources the commands handle (deleted ones not).
DATASET_STATES = ("active", "draft")


@dataclass(frozen=True)
class ResourceRecord:
    """What the commands need to know about a resource and its dataset."""
    id: str
    name: str
    dataset_id: str
    dataset_name: str
    owner_org: str | None
    #: "upload" for files stored by CKAN; empty for links
    url_type: str
    s3_available: bool
    s3_url: str | None
    sha256: str | None


def check_modified_days(days: int) -> int:
    """Return ``days`` if it is -1 (all) or not negative, else raise."""
    if days < -1:
        raise ValueError(f"--modified-days must be -1 (all datasets) or at "
                         f"least 0, not {days}")
    return days


def modified_since(days: int) -> datetime.datetime | None:
    """Cut-off for datasets modified in the last ``days`` days (-1: none).

    CKAN stores ``metadata_modified`` as naive UTC.
    """
    check_modified_days(days)
    if days == -1:
        return None
    now = datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None)
    return now - datetime.timedelta(days=days)


def resource_records(modified_days: int = -1,
                     dataset_id: str | None = None) -> list[ResourceRecord]:
    """Active resources of active and draft datasets, public or private.

    ``modified_days`` limits them to datasets whose ``metadata_modified``
    lies within the last N days; ``dataset_id`` to one dataset. The list
    is complete before the caller starts changing things, so updates made
    while working through it do not disturb the iteration.
    """
    query = (model.Session.query(model.Resource, model.Package)
             .join(model.Package,
                   model.Resource.package_id == model.Package.id)
             .filter(model.Resource.state == "active")
             .filter(model.Package.state.in_(DATASET_STATES)))
    since = modified_since(modified_days)
    if since is not None:
        query = query.filter(model.Package.metadata_modified >= since)
    if dataset_id is not None:
        query = query.filter(model.Package.id == dataset_id)
    query = query.order_by(model.Package.name, model.Resource.position,
                           model.Resource.id)
    return [_record(res, pkg) for res, pkg in query]


def resource_ids() -> list[str]:
    """Ids of every resource the commands handle."""
    return [record.id for record in resource_records()]


def _record(res: model.Resource, pkg: model.Package) -> ResourceRecord:
    extras = res.extras or {}
    return ResourceRecord(
        id=res.id,
        name=res.name or "",
        dataset_id=pkg.id,
        dataset_name=pkg.name,
        owner_org=pkg.owner_org,
        url_type=res.url_type or "",
        s3_available=tk.asbool(extras.get("s3_available", False)),
        s3_url=extras.get("s3_url") or None,
        sha256=extras.get("sha256") or None,
    )
