"""``dcor-depot-move-dataset``: data follow their dataset to its bucket."""
from __future__ import annotations

import ckan.model as model
import click

from ckanext.dcor_depot import errors
from ckanext.dcor_depot.cli import common
from ckanext.dcor_depot.operations import move
from ckanext.dcor_depot.storage import object_store

COMMAND = "dcor-depot-move-dataset"


@click.command(COMMAND,
               short_help="Move a dataset's data to its organization's "
                          "bucket.")
@click.argument("dataset_ref", metavar="ID", required=False)
@click.option("--pending", is_flag=True,
              help="List the datasets (all, or ID) whose data are not yet "
                   "in their organization's bucket; move nothing.")
@common.with_app_context
def move_dataset(dataset_ref: str | None, pending: bool) -> None:
    """Copy the objects of dataset ID into its organization's bucket,
    verify them, switch s3_url and delete the old objects.

    The move job does this after a dataset changed organization; run it
    to finish a move that was interrupted (or failed), or to re-run one.
    Nothing is done for data already in place.
    """
    common.require_s3(COMMAND)
    dataset_id = None
    if dataset_ref is not None:
        pkg = model.Package.get(dataset_ref)
        if pkg is None:
            common.fail(f"{COMMAND}: no dataset {dataset_ref!r}", code=2)
        dataset_id = pkg.id
    elif not pending:
        common.fail(f"{COMMAND}: give a dataset ID, or --pending to list "
                    "the datasets with data to move", code=2)
    if pending:
        _report_pending(dataset_id)
        return
    assert dataset_id is not None
    tally = common.Tally(COMMAND, "resources moved")

    def on_resource(resource_id: str, error: str | None) -> None:
        if error is None:
            tally.add("resources moved")
            click.echo(f"resource {resource_id}: moved")
        else:
            tally.add("failed")
            common.report_error(f"resource {resource_id}: {error}")

    try:
        move.move_dataset(dataset_id, wait=False, on_resource=on_resource)
    except errors.StoreError as exc:  # Busy among them
        common.fail(f"{COMMAND}: {exc}")
    tally.finish()


def _report_pending(dataset_id: str | None) -> None:
    found = move.pending_moves(dataset_id)
    total = 0
    for did, resources in sorted(found.items(),
                                 key=lambda item: item[1][0].dataset_name):
        sources = sorted({_bucket(res.s3_url) for res in resources})
        target = object_store.bucket_name(str(resources[0].owner_org))
        click.echo(f"dataset {resources[0].dataset_name} ({did}): "
                   f"{len(resources)} resources to move from "
                   f"{', '.join(sources)} to {target}")
        total += len(resources)
    click.echo(f"{COMMAND} (pending): {len(found)} datasets, {total} "
               "resources to move")


def _bucket(url: str) -> str:
    """The bucket an ``s3_url`` names (the URL itself if of another store)."""
    parsed = object_store.parse_object_url(url)
    return parsed[0] if parsed else url
