"""Fixtures of the command tests."""
from __future__ import annotations

import os

import pytest

from ckanext.dcor_depot.operations import symlink
from ckanext.dcor_depot.storage import layout


@pytest.fixture
def on_block_storage(make_dataset, upload):
    """Resources whose files are in the user depot but not yet in S3.

    They are uploaded through CKAN and moved to the depot by the symlink
    job; the S3 job is not run (as on a site before S3 was configured).
    """
    def make(count: int = 1, dataset=None, artifacts: bool = False,
             **dataset_kwargs):
        dataset = dataset or make_dataset(**dataset_kwargs)
        made = []
        for index in range(count):
            data = os.urandom(3000 + index)
            res = upload(dataset, data, name=f"file{index}.bin")
            assert symlink.symlink_user_dataset(res["id"])
            files = {"resource": data}
            if artifacts:
                for artifact in ("condensed", "preview"):
                    extra = os.urandom(500 + index)
                    layout.artifact_local_path(res["id"], artifact) \
                        .write_bytes(extra)
                    files[artifact] = extra
            made.append({"id": res["id"], "dataset": dataset,
                         "files": files})
        return made
    return make
