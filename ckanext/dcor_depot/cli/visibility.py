"""``dcor-depot-sync-visibility``: repair the public tags from the database."""
from __future__ import annotations

import ckan.model as model
import click

from ckanext.dcor_depot import errors
from ckanext.dcor_depot.cli import common
from ckanext.dcor_depot.operations import visibility
from ckanext.dcor_depot.records import ckan_data
from ckanext.dcor_depot.storage import object_store

COMMAND = "dcor-depot-sync-visibility"


@click.command(COMMAND,
               short_help="Set the public tags of objects as the database "
                          "says.")
@click.option("--dataset", "dataset_ref", metavar="ID",
              help="Only the objects of this dataset (id or name).")
@click.option("--dry-run", is_flag=True,
              help="List the objects whose tags would change; change "
                   "nothing.")
@common.with_app_context
def sync_visibility(dataset_ref: str | None, dry_run: bool) -> None:
    """Tag every object public exactly when its dataset is public, active
    and owned by the bucket's organization and its resource is active;
    remove the tag everywhere else.

    Without --dataset every object in every bucket of this site's
    organizations is looked at, also objects of purged or unowned
    datasets and objects left in a former organization's bucket (buckets
    of organizations this database does not know are skipped). With
    --dataset it does what the sync job does when tagging after a commit
    failed; use it after the object store was unreachable or restored.
    """
    common.require_s3(COMMAND)
    unit = "datasets" if dataset_ref is not None else "buckets"
    done = "objects to change" if dry_run else "objects changed"
    tally = common.Tally(COMMAND, unit, done)
    for name, find_changes in _scopes(dataset_ref):
        try:
            changes = find_changes()
            # Decided again from the database of this moment.
            n = len(changes) if dry_run else visibility.reconcile(
                [change.ref for change in changes])
        except errors.StoreError as exc:
            tally.add("failed")
            common.report_error(f"{name}: {exc}")
            continue
        tally.add(unit)
        for change in changes:
            before = "public" if change.public_now else "private"
            after = "public" if change.wanted else "private"
            verb = "would change" if dry_run else "changed"
            click.echo(f"{change.ref.bucket}:{change.ref.key}: {verb} "
                       f"{before} -> {after}")
        tally.add(done, n)
    tally.finish("dry run" if dry_run else "")


def _scopes(dataset_ref: str | None):
    """``(name, function listing the tag changes)`` for each unit."""
    if dataset_ref is not None:
        pkg = model.Package.get(dataset_ref)
        if pkg is None:
            common.fail(f"{COMMAND}: no dataset {dataset_ref!r}", code=2)
        dataset_id = pkg.id
        return [(f"dataset {pkg.name}",
                 lambda: visibility.dataset_tag_changes(dataset_id))]
    try:
        buckets = object_store.site_buckets()
    except errors.StoreError as exc:
        common.fail(f"{COMMAND}: {exc}")
    known = ckan_data.organization_ids()
    scopes = []
    for bucket in buckets:
        org_id = object_store.bucket_organization(bucket)
        if org_id is None:
            continue
        if org_id not in known:
            # Another site's bucket with a similar name, or an organization
            # purged long ago: not ours to judge.
            click.echo(f"bucket {bucket}: skipped (no organization "
                       f"{org_id} in this site's database)")
            continue
        scopes.append((f"bucket {bucket}",
                           lambda b=bucket, o=org_id:
                           visibility.bucket_tag_changes(b, o)))
    return scopes
