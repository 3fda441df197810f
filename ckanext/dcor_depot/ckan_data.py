"""Fresh CKAN state for jobs and commands, read and written as the site user.

Jobs receive ids only and fetch everything here, so they never act on a
stale copy; metadata changes go through ``package_revise`` so that several
jobs updating one dataset do not lose each other's changes.
"""
from __future__ import annotations

from typing import Any

import ckan.plugins.toolkit as tk

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
    tk.get_action("package_revise")(site_context(), {
        "match": {"id": dataset_id},
        f"update__resources__{resource_id}": changes,
    })
