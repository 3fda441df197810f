"""The symlink job: a new upload goes to its user's depot.

Where the file goes is decided from CKAN's records (user, organization,
dataset and resource names); how it gets there safely is
:func:`ckanext.dcor_depot.storage.depot.move_and_link`.
"""
from __future__ import annotations

from ckanext.dcor_depot.records import ckan_data
from ckanext.dcor_depot.storage import layout
from ckanext.dcor_depot.storage.depot import move_and_link


def symlink_user_dataset(resource_id: str) -> bool:
    """Move a resource's upload into the user depot and symlink it back.

    Returns whether anything was done (False for symlinks, missing files
    resources that are gone and the hand-managed organizations).
    """
    upload = layout.ckan_upload_path(resource_id)
    if upload.is_symlink() or not upload.is_file():
        return False
    # A folder on the way may be a link to elsewhere: nothing is copied
    # from there into a depot.
    layout.check_not_foreign(upload, f"resource {resource_id}")
    facts = ckan_data.resource_facts(resource_id)
    if (facts is None or facts.state != "active"
            or facts.org_name in ckan_data.HAND_MANAGED_ORGANIZATIONS):
        return False
    target = layout.user_depot_path(
        user_name=facts.creator_name,
        org_name=facts.org_name,
        dataset_id=facts.dataset_id,
        dataset_name=facts.dataset_name,
        resource_id=resource_id,
        resource_name=facts.name,
    )
    return move_and_link(upload, target)
