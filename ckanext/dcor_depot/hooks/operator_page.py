"""The operator page in CKAN's admin area: ``/ckan-admin/dcor-depot``.

Sysadmins only (CKAN's ``sysadmin`` auth function, asked before anything
is read; everyone else gets 403, as on CKAN's own admin pages). It shows
the last audit (when, complete or not, its findings linking to the
datasets), each organization's storage from that audit's report, and
the resource counts by state read from the database now.
"""
from __future__ import annotations

from typing import Any

import ckan.model as model
import ckan.plugins.toolkit as tk
from flask import Blueprint

from ckanext.dcor_depot.operations import operator_overview
from ckanext.dcor_depot.operations.audit.usage import human_bytes

blueprint = Blueprint("dcor_depot_admin", __name__,
                      url_prefix="/ckan-admin")

#: The command that writes the report the page shows.
AUDIT_COMMAND = "ckan dcor-depot-audit"


def require_sysadmin() -> None:
    """403 unless the user is a sysadmin (anonymous visitors too)."""
    context = {"model": model, "session": model.Session,
               "user": tk.current_user.name,
               "auth_user_obj": tk.current_user}
    try:
        tk.check_access("sysadmin", context)
    except tk.NotAuthorized:
        tk.abort(403, tk._("Need to be system administrator to administer"))


def index() -> Any:
    require_sysadmin()
    shown = operator_overview.overview()
    return tk.render("dcor_depot/admin.html", extra_vars={
        "overview": shown, "human_bytes": human_bytes,
        "audit_command": AUDIT_COMMAND,
        "max_findings": operator_overview.MAX_FINDINGS_SHOWN})


blueprint.add_url_rule("/dcor-depot", endpoint="index", view_func=index)
