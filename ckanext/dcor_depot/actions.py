"""Chained CKAN actions: remember visibility before updates, retag after
bulk changes (which bypass the dataset-update hooks)."""
from __future__ import annotations

from typing import Any

import ckan.plugins.toolkit as tk

from . import visibility


@tk.chained_action
def package_update(original: Any, context: dict[str, Any],
                   data_dict: dict[str, Any]) -> Any:
    visibility.remember_visibility(context, data_dict)
    return original(context, data_dict)


@tk.chained_action
def package_delete(original: Any, context: dict[str, Any],
                   data_dict: dict[str, Any]) -> Any:
    # Close the objects first: a deleted dataset's data are never open,
    # not even for a moment (after_dataset_delete runs too early to see
    # the new state).
    visibility.make_datasets_private([data_dict["id"]])
    return original(context, data_dict)


@tk.chained_action
def resource_delete(original: Any, context: dict[str, Any],
                    data_dict: dict[str, Any]) -> Any:
    visibility.make_resource_private(data_dict["id"])
    return original(context, data_dict)


@tk.chained_action
def bulk_update_private(original: Any, context: dict[str, Any],
                        data_dict: dict[str, Any]) -> Any:
    # Close the objects first: no moment in which private data are open.
    visibility.make_datasets_private(data_dict.get("datasets") or [])
    return original(context, data_dict)


@tk.chained_action
def bulk_update_public(original: Any, context: dict[str, Any],
                       data_dict: dict[str, Any]) -> Any:
    result = original(context, data_dict)
    visibility.sync_datasets(data_dict.get("datasets") or [])
    return result


@tk.chained_action
def bulk_update_delete(original: Any, context: dict[str, Any],
                       data_dict: dict[str, Any]) -> Any:
    visibility.make_datasets_private(data_dict.get("datasets") or [])
    return original(context, data_dict)


def get_actions() -> dict[str, Any]:
    return {
        "package_update": package_update,
        "package_delete": package_delete,
        "resource_delete": resource_delete,
        "bulk_update_private": bulk_update_private,
        "bulk_update_public": bulk_update_public,
        "bulk_update_delete": bulk_update_delete,
    }
