"""The ``dcor_depot_usage`` action: storage per organization, for
sysadmins (the figures name every organization and what it stores)."""
from __future__ import annotations

from typing import Any

import ckan.plugins.toolkit as tk

from ckanext.dcor_depot.operations.audit import run
from ckanext.dcor_depot.storage import object_store

Context = dict[str, Any]
DataDict = dict[str, Any]


def dcor_depot_usage_auth(context: Context, data_dict: DataDict
                          ) -> dict[str, Any]:
    # Sysadmins pass every auth function without calling it.
    return {"success": False,
            "msg": tk._("Only sysadmins may see the storage usage")}


# Not side-effect free (no GET): each call lists every bucket and walks
# the depots, which a cross-site GET must not be able to start.
def dcor_depot_usage(context: Context, data_dict: DataDict
                     ) -> dict[str, Any]:
    """Storage used per organization, read now from the store and disks.

    :param organization: (optional) the name of an organization, or a
        list of names; default: every organization
    :returns: ``{"organizations": [...]}``, per organization its name,
        ``objects`` and ``object_bytes`` by artifact kind (resource,
        condensed, preview, other), ``total_objects``,
        ``total_object_bytes``, ``block_bytes``, ``multipart_uploads``,
        ``multipart_bytes``, ``orphan_objects`` and ``orphan_bytes``
    """
    tk.check_access("dcor_depot_usage", context, data_dict)
    names = data_dict.get("organization") or []
    if isinstance(names, str):
        names = [names]
    if not isinstance(names, list) or not all(isinstance(name, str)
                                              for name in names):
        raise tk.ValidationError({"organization": [
            "a name or a list of names"]})
    try:
        rows = run.measure_usage(tuple(names))
    except ValueError as exc:
        raise tk.ValidationError({"organization": [str(exc)]}) from exc
    except object_store.ObjectStoreError as exc:
        raise tk.ValidationError({"store": [str(exc)]}) from exc
    return {"organizations": rows}


def get_actions() -> dict[str, Any]:
    return {"dcor_depot_usage": dcor_depot_usage}


def get_auth_functions() -> dict[str, Any]:
    return {"dcor_depot_usage": dcor_depot_usage_auth}
