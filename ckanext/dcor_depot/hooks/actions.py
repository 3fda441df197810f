"""Chained CKAN actions: authorization first, then the plugin's checks.

Each chained action calls ``check_access`` for the action it wraps before
it looks at anything, so a refused call changes nothing. None of them
touches the object store: tags follow the database at its commits
(:mod:`.transactions`). The bulk and organization actions only note the
datasets that CKAN 2.11 changes with plain SQL (invisible to the
session's change tracking); noting a dataset never opens anything its
committed state does not allow.
"""
from __future__ import annotations

from typing import Any

import ckan.model as model
import ckan.plugins.toolkit as tk
from ckan.types import Context, DataDict

from ckanext.dcor_depot import names
from ckanext.dcor_depot.hooks import (
    registration,
    resource_rules,
    transactions,
    upload_actions,
)


@tk.chained_action
def package_create(original: Any, context: Context,
                   data_dict: DataDict) -> Any:
    tk.check_access("package_create", context, data_dict)
    resource_rules.check_new_dataset(context, data_dict)
    transactions.note_chosen_ids(resource_rules.chosen_ids(data_dict))
    return original(context, data_dict)


@tk.chained_action
def package_update(original: Any, context: Context,
                   data_dict: DataDict) -> Any:
    ref = data_dict.get("id") or data_dict.get("name")
    pkg = model.Package.get(ref) if ref else None
    if pkg is None:
        return original(context, data_dict)  # CKAN's own error
    tk.check_access("package_update", dict(context, package=pkg),
                    dict(data_dict, id=pkg.id))
    with registration.registered_uploads(context, pkg, data_dict):
        resource_rules.check_dataset_update(context, pkg, data_dict)
        transactions.note_chosen_ids(resource_rules.chosen_ids(data_dict))
        return original(context, data_dict)


def _listed_datasets(data_dict: DataDict) -> list[str]:
    """Every listed dataset; at the commit only those that belong to
    ``org_id`` then (the ones CKAN changed) count."""
    datasets = data_dict.get("datasets") or []
    if not isinstance(datasets, list):
        return []
    return [str(d) for d in datasets]


def _bulk(name: str) -> Any:
    @tk.chained_action
    def action(original: Any, context: Context, data_dict: DataDict) -> Any:
        tk.check_access(name, context, data_dict)
        transactions.touch_datasets(
            _listed_datasets(data_dict),
            required_org=str(data_dict.get("org_id") or ""))
        return original(context, data_dict)
    action.__name__ = name
    return action


def _organization_removal(name: str) -> Any:
    @tk.chained_action
    def action(original: Any, context: Context, data_dict: DataDict) -> Any:
        tk.check_access(name, context, data_dict)
        group = model.Group.get(data_dict.get("id") or "")
        if group is not None and group.is_organization:
            rows = model.Session.query(model.Package.id).filter(
                model.Package.owner_org == group.id)
            transactions.touch_datasets([row[0] for row in rows])
        return original(context, data_dict)
    action.__name__ = name
    return action


@tk.chained_action
def resource_create(original: Any, context: Context,
                    data_dict: DataDict) -> Any:
    # Before the access check, whose queries PostgreSQL would refuse.
    resource_rules.refuse_nul(data_dict)
    if data_dict.get("url_type") == names.URL_TYPE_S3_UPLOAD:
        return upload_actions.create_from_upload(original, context,
                                                 data_dict)
    return original(context, data_dict)


def get_actions() -> dict[str, Any]:
    actions: dict[str, Any] = {
        "package_create": package_create,
        "package_update": package_update,
        "resource_create": resource_create,
    }
    for name in ("bulk_update_private", "bulk_update_public",
                 "bulk_update_delete"):
        actions[name] = _bulk(name)
    for name in ("organization_delete", "organization_purge"):
        actions[name] = _organization_removal(name)
    return actions
