"""Fresh CKAN state for jobs and commands, read and written as the site user.

Jobs receive ids only and fetch everything here, so they never act on a
stale copy; the jobs' metadata changes go through ``package_revise`` so
that several jobs updating one dataset do not lose each other's changes.
Bulk commands use :func:`merge_resource_fields`, one statement merging new
fields into many resources in the database, which keeps every other field
and is a hundred times cheaper.
"""
from __future__ import annotations

import datetime
import json
from collections.abc import Iterable
from typing import Any

import ckan.model as model
import ckan.plugins.toolkit as tk
import sqlalchemy as sa
from ckan.lib import search

#: Organizations whose data are placed in depots by hand.
HAND_MANAGED_ORGANIZATIONS = ("figshare-import", "internal-guck")


def site_context(**extra: Any) -> dict[str, Any]:
    site_user = tk.get_action("get_site_user")({"ignore_auth": True}, {})
    context = {"ignore_auth": True, "user": site_user["name"]}
    context.update(extra)
    return context


def resource_show(resource_id: str) -> dict[str, Any]:
    return tk.get_action("resource_show")(site_context(),
                                          {"id": resource_id})


def package_show(dataset_id: str) -> dict[str, Any]:
    return tk.get_action("package_show")(site_context(), {"id": dataset_id})


def user_name(user_id: str) -> str:
    return tk.get_action("user_show")(site_context(), {"id": user_id})["name"]


def organization_name(dataset: dict[str, Any]) -> str:
    org = dataset.get("organization") or {}
    return org.get("name") or ""


def is_public(dataset: dict[str, Any]) -> bool:
    """Objects of a dataset may be public only if it is public and active."""
    return (not tk.asbool(dataset.get("private"))
            and dataset.get("state") == "active")


def revise_resource(dataset_id: str, resource_id: str,
                    changes: dict[str, Any]) -> None:
    """Change a few fields of one resource without touching the rest."""
    revise_resources(dataset_id, {resource_id: changes})


def revise_resources(dataset_id: str,
                     changes: dict[str, dict[str, Any]]) -> None:
    """Change fields of several resources of a dataset in one revision."""
    data: dict[str, Any] = {"match": {"id": dataset_id}}
    for resource_id, fields in changes.items():
        data[f"update__resources__{resource_id}"] = fields
    tk.get_action("package_revise")(site_context(), data)


def merge_resource_fields(changes: dict[str, dict[str, dict[str, Any]]]
                          ) -> set[str]:
    """Merge fields into resources' extras: ``{dataset id: {resource id:
    fields}}``. Returns the ids of the resources changed (a resource
    deleted or moved meanwhile is not).

    One statement updates every resource, merging the JSON in the
    database: other fields are kept, also those another atomic merge
    writes at the same time. One transaction covers all datasets. For bulk
    work where a ``package_revise`` per resource would dominate; the
    search index is the caller's (:func:`reindex_dataset` once it has
    changed everything of a dataset).
    """
    changes = {dataset_id: fields for dataset_id, fields in changes.items()
               if fields}
    if not changes:
        return set()
    rows = {resource_id: {"dataset": dataset_id, "fields": fields}
            for dataset_id, resources in changes.items()
            for resource_id, fields in resources.items()}
    now = datetime.datetime.utcnow()
    try:
        # The parentheses matter: || and -> bind equally, left to right.
        changed = {row[0] for row in model.Session.execute(sa.text(
            "UPDATE resource AS r SET extras = (COALESCE(NULLIF(r.extras, "
            "''), '{}')::jsonb || (c.value->'fields'))::text, "
            "metadata_modified = :now "
            "FROM jsonb_each(CAST(:rows AS jsonb)) AS c "
            "WHERE r.id = c.key AND r.package_id = c.value->>'dataset' "
            "RETURNING r.id"),
            {"rows": json.dumps(rows), "now": now})}
        model.Session.execute(sa.text(
            "UPDATE package SET metadata_modified = :now WHERE id IN "
            "(SELECT jsonb_array_elements_text(CAST(:ids AS jsonb)))"),
            {"ids": json.dumps(sorted(changes)), "now": now})
        model.Session.commit()
    except BaseException:
        # Also on Ctrl-C: no half-done transaction stays on the session.
        model.Session.rollback()
        raise
    return changed


def reindex_dataset(dataset_id: str) -> None:
    """Update the search index of one dataset from the database."""
    search.rebuild(dataset_id)


def dataset_is_public(dataset_id: str) -> bool:
    """:func:`is_public` from a fresh, cheap database read."""
    return datasets_public([dataset_id])[dataset_id]


def datasets_public(dataset_ids: Iterable[str]) -> dict[str, bool]:
    """:func:`dataset_is_public` of several datasets in one query
    (False for a dataset that does not exist)."""
    wanted = set(dataset_ids)
    public = dict.fromkeys(wanted, False)
    rows = (model.Session.query(model.Package.id, model.Package.private,
                                model.Package.state)
            .filter(model.Package.id.in_(wanted)))
    for row in rows:
        public[row.id] = not row.private and row.state == "active"
    return public
