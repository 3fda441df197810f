"""``dcor-depot-sync-visibility``: repair the public tags from the database."""
from __future__ import annotations

import ckan.model as model
import click

from .. import ckan_data, object_store, visibility
from . import common

COMMAND = "dcor-depot-sync-visibility"


@click.command(COMMAND,
               short_help="Set the public tags of objects as the database "
                          "says.")
@click.option("--dataset", "dataset_ref", metavar="ID",
              help="Only this dataset (id or name).")
@click.option("--dry-run", is_flag=True,
              help="List the objects whose tags would change; change "
                   "nothing.")
@common.with_app_context
def sync_visibility(dataset_ref: str | None, dry_run: bool) -> None:
    """Tag every object public exactly when its dataset is public and
    active and its resource active; remove the tag everywhere else.

    This is what the sync job runs when tagging after a commit failed;
    use it after the object store was unreachable or restored.
    """
    common.require_s3(COMMAND)
    if dataset_ref is not None:
        pkg = model.Package.get(dataset_ref)
        if pkg is None:
            common.fail(f"{COMMAND}: no dataset {dataset_ref!r}", code=2)
        dataset_ids = [pkg.id]
    else:
        dataset_ids = ckan_data.owned_dataset_ids()
    tally = common.Tally(COMMAND, "datasets",
                         "objects to change" if dry_run else
                         "objects changed")
    for dataset_id in dataset_ids:
        try:
            changes = visibility.dataset_tag_changes(dataset_id)
            if not dry_run and changes:
                # Re-decided from the database at this moment.
                n = visibility.sync_dataset(dataset_id)
            else:
                n = len(changes)
        except object_store.ObjectStoreError as exc:
            tally.add("failed")
            common.report_error(f"dataset {dataset_id}: {exc}")
            continue
        tally.add("datasets")
        for change in changes:
            where = f"{change.ref.bucket}:{change.ref.key}"
            before = "public" if change.public_now else "private"
            after = "public" if change.wanted else "private"
            verb = "would change" if dry_run else "changed"
            click.echo(f"{where}: {verb} {before} -> {after}")
        tally.add("objects to change" if dry_run else "objects changed", n)
    tally.finish("dry run" if dry_run else "")
