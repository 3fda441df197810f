"""``append-resource``: add a local file to a dataset."""
from __future__ import annotations

from pathlib import Path

import click

from ckanext.dcor_depot import errors
from ckanext.dcor_depot.cli import common
from ckanext.dcor_depot.operations import append

COMMAND = "append-resource"


@click.command(COMMAND, short_help="Add a local file to a dataset.")
@click.argument("path", type=click.Path(path_type=Path))
@click.argument("dataset_id")
@click.option("--delete-source", is_flag=True,
              help="Delete PATH once the stored copy is verified.")
@common.with_app_context
def append_resource(path: Path, dataset_id: str,
                    delete_source: bool) -> None:
    """Add the file PATH as a new resource to DATASET_ID (id or name).

    Also works for active datasets. The resource id is derived from the
    dataset id, the file name and the file's SHA256: appending the same
    file again adds nothing. With S3 the file is uploaded to the
    organization's bucket, else placed on block storage like an upload;
    either way it is verified before the resource is created.
    """
    tally = common.Tally(COMMAND, "added", "skipped")
    try:
        result = append.append_resource(
            path, dataset_id, delete_source=delete_source,
            progress=common.progress_bars)
    except (errors.SourceError, errors.StoreError) as exc:
        common.fail(f"{COMMAND}: {exc}")

    if result.created:
        tally.add("added")
        click.echo(f"resource {result.resource_id}: added to dataset "
                   f"{result.dataset_name}, stored at {result.location}")
    else:
        tally.add("skipped")
        click.echo(f"resource {result.resource_id}: already there in "
                   f"dataset {result.dataset_name} ({result.location})")
    if result.source_deleted:
        click.echo(f"deleted {path} (the stored copy is verified)")
    elif result.source_kept_reason:
        common.report_error(f"kept {path}: {result.source_kept_reason}")
        tally.add("failed")
    tally.finish()
