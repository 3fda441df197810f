"""``dcor-migrate-resources-to-object-store``: block storage to S3."""
from __future__ import annotations

import click

from ckanext.dcor_depot.cli import common
from ckanext.dcor_depot.operations import migrate
from ckanext.dcor_depot.operations.migrate import Status
from ckanext.dcor_depot.records import inventory, search_index

COMMAND = "dcor-migrate-resources-to-object-store"


@click.command(COMMAND,
               short_help="Upload resources from block storage to S3.")
@common.modified_days_option
@click.option("--verify-existence", is_flag=True,
              help="Check that every object exists (also for resources "
                   "marked s3_available) and upload the missing ones.")
@click.option("--verify-checksum", is_flag=True,
              help="Read every stored object and compare its SHA256; "
                   "re-upload on mismatch (implies --verify-existence).")
@click.option("--delete-after-migration", is_flag=True,
              help="Delete local files (and the depot files behind "
                   "symlinks) once their objects are verified.")
@click.option("--dry-run", is_flag=True,
              help="Report what would be done; change nothing.")
@click.option("--jobs", type=int, default=4, show_default=True,
              help="Resources transferred at once.")
@common.with_app_context
def migrate_resources(modified_days: int, verify_existence: bool,
                      verify_checksum: bool, delete_after_migration: bool,
                      dry_run: bool, jobs: int) -> None:
    """Upload resource, condensed and preview files to the object store.

    Every artifact found on block storage is uploaded (unless an identical
    object is there), verified, tagged public if its dataset is public and
    active; the resource is marked s3_available. Drafts included. Resources
    already marked s3_available are skipped unless a --verify option or
    --delete-after-migration is given. Safe to interrupt and run again.
    """
    common.check_modified_days(COMMAND, modified_days)
    if jobs < 1:
        common.fail(f"{COMMAND}: --jobs must be at least 1, not {jobs}",
                    code=2)
    common.require_s3(COMMAND)
    options = migrate.MigrationOptions(
        verify_existence=verify_existence, verify_checksum=verify_checksum,
        delete_local=delete_after_migration, dry_run=dry_run)
    records = inventory.resource_records(modified_days)
    total = len(records)
    if dry_run:
        tally = common.Tally(COMMAND, "to upload", Status.SKIPPED.value,
                             Status.MISSING.value)
        status_names: dict[Status, str] = {Status.UPLOADED: "to upload"}
        deleted_name = "local files to delete"
    else:
        tally = common.Tally(COMMAND, Status.UPLOADED.value,
                             Status.SKIPPED.value, Status.MISSING.value)
        status_names = {}
        deleted_name = "local files deleted"
    finished = 0

    def on_result(outcome: migrate.ResourceOutcome) -> None:
        nonlocal finished
        finished += 1
        status = outcome.status
        tally.add(status_names.get(status, status.value))
        if outcome.deleted:
            tally.add(deleted_name, outcome.deleted)
        line = f"[{finished}/{total}] {outcome.record.id}: " \
               f"{outcome.describe()}"
        if status is Status.FAILED:
            common.report_error(line)
        else:
            click.echo(line)

    note = "dry run" if dry_run else ""
    optional = (Status.MISSING.value, deleted_name)
    try:
        index = migrate.migrate_resources(records, options, on_result,
                                          jobs=jobs)
    except KeyboardInterrupt:
        click.echo(tally.line("interrupted", optional))
        common.fail(f"{COMMAND}: interrupted after {finished} of {total} "
                    "resources; run it again to finish the rest",
                    code=common.EXIT_INTERRUPTED)
    report_index(index)
    tally.finish(note, optional)


def report_index(index: search_index.IndexUpdates) -> None:
    if index.queued:
        click.echo(f"search index: {index.queued} datasets queued for the "
                   "background workers")
    if index.failed:
        common.report_error(
            f"search index: reindexing {len(index.failed)} datasets failed "
            "(see the log); the data are recorded, run 'ckan search-index "
            "rebuild' once the search server works")
