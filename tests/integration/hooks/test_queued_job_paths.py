"""Jobs queued before the upgrade to the layered package still run.

RQ stores a job as the import path of its function; release 0.1 had
every module at the top of the package (``ckanext.dcor_depot.depot``).
"""
from __future__ import annotations

import os

import pytest
from ckan.lib import jobs as ckan_jobs
from ckan.tests import factories
from rq.utils import import_attribute

from ckanext.dcor_depot import MOVED_JOB_MODULES
from ckanext.dcor_depot.operations import jobs, move, visibility
from ckanext.dcor_depot.records import search_index
from ckanext.dcor_depot.storage import fsops, layout
from tests.support.stack import QUEUES, wait_for

# Every function the plugin has ever queued, under its 0.1 path.
OLD_JOB_PATHS = {
    "ckanext.dcor_depot.depot.symlink_user_dataset":
        jobs.SYMLINK.func,
    "ckanext.dcor_depot.migration.migrate_resource_to_s3":
        jobs.UPLOAD_S3.func,
    "ckanext.dcor_depot.backup.backup_resource_from_s3_to_block_storage":
        jobs.BACKUP_S3.func,
    "ckanext.dcor_depot.visibility.sync_dataset_job":
        visibility.sync_dataset_job,
    "ckanext.dcor_depot.move.move_dataset_job": move.move_dataset_job,
    "ckanext.dcor_depot.search_index.reindex_datasets":
        search_index.reindex_datasets,
}


@pytest.mark.parametrize("old_path", sorted(OLD_JOB_PATHS))
def test_old_job_path_resolves_to_the_moved_function(old_path):
    assert import_attribute(old_path) is OLD_JOB_PATHS[old_path]


def test_every_moved_module_is_covered():
    assert {path.split(".")[2] for path in OLD_JOB_PATHS} \
        == set(MOVED_JOB_MODULES)


def test_a_job_queued_under_the_old_path_runs_in_a_worker(
        owner, start_worker):
    # A file where the worker (test.ini's storage path) finds it; CKAN's
    # upload fixture would put it in a folder of this process only.
    dataset = factories.Dataset(user=owner["user"],
                                owner_org=owner["org"]["id"], resources=[
                                    {"name": "old.rtdc", "url": "old.rtdc",
                                     "url_type": "upload"}])
    rid = dataset["resources"][0]["id"]
    path = layout.ckan_upload_path(rid)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"queued before the upgrade")
    for name in QUEUES:  # only the job of the old release
        ckan_jobs.get_queue(name).empty()
    assert not path.is_symlink()

    ckan_jobs.get_queue("dcor-short").enqueue_call(
        func="ckanext.dcor_depot.depot.symlink_user_dataset",
        args=[rid], job_id=f"{rid}-symlink-old")
    start_worker("dcor-short")

    wait_for(path.is_symlink, what="the old job to move the upload")
    assert fsops.is_inside(os.path.realpath(path),
                           layout.allowed_link_roots()[0])
    assert path.read_bytes() == b"queued before the upgrade"
