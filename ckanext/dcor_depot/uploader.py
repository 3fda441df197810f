"""CKAN's resource uploader, taught that upload paths may be depot symlinks.

CKAN refuses an upload path whose real path differs from the path itself
(a guard against path tricks), which would make every update of a
resource fail once its file lives in a depot. This uploader accepts a
symlink at the upload path exactly when it points into the depots; every
other check of CKAN's uploader stays in force.
"""
from __future__ import annotations

import os
from typing import Any

from ckan.lib.uploader import ResourceUpload

from . import config


def _inside(path: str, root: str) -> bool:
    return path.startswith(root.rstrip(os.sep) + os.sep)


def allowed_link_roots() -> list[str]:
    """Real paths under which depot files may live."""
    roots = [os.path.realpath(config.depots_path())]
    backup = config.local_backup_location()
    if backup is not None:
        roots.append(os.path.realpath(backup))
    return roots


class DepotResourceUpload(ResourceUpload):
    def get_path(self, id: str) -> str:
        directory = self.get_directory(id)
        filepath = os.path.join(directory, id[6:])
        if os.path.islink(filepath):
            real = os.path.realpath(filepath)
            if any(_inside(real, root) for root in allowed_link_roots()):
                return filepath
        return super().get_path(id)


def get_resource_uploader(data_dict: dict[str, Any]) -> ResourceUpload:
    return DepotResourceUpload(data_dict)
