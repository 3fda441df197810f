"""ckanext-dcor_depot: where DCOR research data live.

The package is layered (see ``docs/architecture.md``); imports only go
down: ``plugin`` > ``cli`` > ``hooks`` > ``figshare`` > ``operations`` >
``records`` | ``storage`` > ``config``, ``errors``, ``progress``,
``validators``.
"""
from __future__ import annotations

import importlib
from types import ModuleType

#: Where the modules of release 0.1 went. RQ stores a queued job as the
#: import path of its function (``ckanext.dcor_depot.depot.
#: symlink_user_dataset``); when that module cannot be imported, RQ looks
#: the name up as attributes of this package, which lands here. Jobs queued
#: before an upgrade therefore still run. Kept for one release.
MOVED_JOB_MODULES = {
    "depot": "ckanext.dcor_depot.operations.symlink",
    "migration": "ckanext.dcor_depot.operations.migrate.run",
    "backup": "ckanext.dcor_depot.operations.backup",
    "visibility": "ckanext.dcor_depot.operations.visibility",
    "move": "ckanext.dcor_depot.operations.move",
    "search_index": "ckanext.dcor_depot.records.search_index",
}


def __getattr__(name: str) -> ModuleType:
    if name in MOVED_JOB_MODULES:
        return importlib.import_module(MOVED_JOB_MODULES[name])
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
