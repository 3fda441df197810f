"""The ``ckan`` commands of this plugin, registered through IClick.

One module per topic; each command is a thin layer over the module that
does the work (progress, summary line, exit status).
"""
from __future__ import annotations

from typing import Any

from ckanext.dcor_depot.cli import (
    append,
    audit,
    check,
    figshare,
    inspect,
    jobs,
    migrate,
    move,
    prune,
    visibility,
    worker,
)


def get_commands() -> list[Any]:
    return [
        figshare.import_figshare,
        jobs.run_jobs_dcor_depot,
        append.append_resource,
        migrate.migrate_resources,
        inspect.list_s3_objects_for_dataset,
        inspect.list_all_resources,
        prune.prune_stale_multipart_uploads,
        visibility.sync_visibility,
        move.move_dataset,
        check.check_depot,
        audit.audit,
        audit.usage,
        worker.worker,
    ]
