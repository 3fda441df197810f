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

from ckanext.dcor_depot.storage import fsops, layout


class DepotResourceUpload(ResourceUpload):
    def get_path(self, id: str) -> str:  # noqa: A002 - CKAN's signature
        directory = self.get_directory(id)
        filepath = os.path.join(directory, id[6:])
        if os.path.islink(filepath):
            real = os.path.realpath(filepath)
            if any(fsops.is_inside(real, root)
                   for root in layout.allowed_link_roots()):
                return filepath
        return super().get_path(id)


def get_resource_uploader(data_dict: dict[str, Any]) -> ResourceUpload:
    return DepotResourceUpload(data_dict)
