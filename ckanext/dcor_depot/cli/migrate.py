"""``dcor-migrate-resources-to-object-store``: block storage to S3."""
from __future__ import annotations

from typing import Any, NoReturn

import click

from ckanext.dcor_depot import names
from ckanext.dcor_depot.cli import common
from ckanext.dcor_depot.operations import migrate
from ckanext.dcor_depot.operations.migrate import Status, fleet
from ckanext.dcor_depot.records import (
    inventory,
    migration_runs,
    search_index,
)

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
              help="Resources transferred at once (with --via-workers: "
                   "by each job).")
@click.option("--via-workers", is_flag=True,
              help="Queue the work for the site's workers (ckan "
                   "dcor-depot-worker, on any host) and follow it.")
@click.option("--queue", default=names.QUEUE_NORMAL, show_default=True,
              help="With --via-workers: the queue of the jobs.")
@click.option("--no-wait", is_flag=True,
              help="With --via-workers: queue, print the run id, exit.")
@click.option("--follow", "follow", metavar="RUN",
              help="Follow the run RUN of --via-workers again (no other "
                   "option).")
@common.with_app_context
def migrate_resources(modified_days: int, verify_existence: bool,
                      verify_checksum: bool, delete_after_migration: bool,
                      dry_run: bool, jobs: int, via_workers: bool,
                      queue: str, no_wait: bool, follow: str | None) -> None:
    """Upload resource, condensed and preview files to the object store.

    Every artifact found on block storage is uploaded (unless an identical
    object is there), verified, tagged public if its dataset is public and
    active; the resource is marked s3_available. Drafts included. Resources
    already marked s3_available are skipped unless a --verify option or
    --delete-after-migration is given. Safe to interrupt and run again.

    With --via-workers the resources are migrated by jobs of the site's
    workers; the command prints a run id, follows the jobs and prints
    what a local run prints (Ctrl-C stops following, not the jobs). A
    rerun does not queue resources whose job is queued, running or done.
    """
    _check_options(jobs, via_workers, dry_run, follow)
    common.require_s3(COMMAND)
    if follow is not None:
        _follow(follow)
        return
    options = migrate.MigrationOptions(
        verify_existence=verify_existence, verify_checksum=verify_checksum,
        delete_local=delete_after_migration, dry_run=dry_run)
    common.check_modified_days(COMMAND, modified_days)
    records = inventory.resource_records(modified_days)
    if via_workers:
        _via_workers(records, options, queue, jobs, no_wait)
        return
    printer = _Printer(len(records), dry_run)
    try:
        index = migrate.migrate_resources(
            records, options, lambda outcome: printer.add(
                outcome.record.id, outcome.status, outcome.describe(),
                outcome.deleted), jobs=jobs)
    except KeyboardInterrupt:
        printer.interrupted()
    report_index(index)
    printer.finish()


def _check_options(jobs: int, via_workers: bool, dry_run: bool,
                   follow: str | None) -> None:
    ctx = click.get_current_context()
    given = sorted(
        f"--{name.replace('_', '-')}" for name in ctx.params
        if ctx.get_parameter_source(name)
        is not click.core.ParameterSource.DEFAULT)
    if follow is not None and given != ["--follow"]:
        common.fail(f"{COMMAND}: --follow takes no other option, not "
                    f"{', '.join(o for o in given if o != '--follow')}",
                    code=2)
    if jobs < 1:
        common.fail(f"{COMMAND}: --jobs must be at least 1, not {jobs}",
                    code=2)
    if not via_workers:
        alone = [o for o in ("--queue", "--no-wait") if o in given]
        if alone:
            common.fail(f"{COMMAND}: {' and '.join(alone)} only go with "
                        "--via-workers", code=2)
    elif dry_run:
        common.fail(f"{COMMAND}: --dry-run runs here; leave out "
                    "--via-workers", code=2)


class _Printer:
    """The lines and the summary of a run, local or by the workers."""

    def __init__(self, total: int, dry_run: bool = False) -> None:
        self.total, self.finished, self.dry_run = total, 0, dry_run
        if dry_run:
            self.tally = common.Tally(COMMAND, "to upload",
                                      Status.SKIPPED.value,
                                      Status.MISSING.value)
            self.status_names = {Status.UPLOADED.value: "to upload"}
            self.deleted_name = "local files to delete"
        else:
            self.tally = common.Tally(COMMAND, Status.UPLOADED.value,
                                      Status.SKIPPED.value,
                                      Status.MISSING.value)
            self.status_names = {}
            self.deleted_name = "local files deleted"
        self.optional = (Status.MISSING.value, self.deleted_name)

    def add(self, resource_id: str, status: str, line: str,
            deleted: int) -> None:
        self.finished += 1
        self.tally.add(self.status_names.get(status, status))
        if deleted:
            self.tally.add(self.deleted_name, deleted)
        text = f"[{self.finished}/{self.total}] {resource_id}: {line}"
        if status == Status.FAILED.value:
            common.report_error(text)
        else:
            click.echo(text)

    def add_item(self, item: dict[str, Any]) -> None:
        self.add(item["id"], item["status"], item["line"], item["deleted"])

    def interrupted(self, hint: str = "run it again to finish the "
                                       "rest") -> NoReturn:
        click.echo(self.tally.line("interrupted", self.optional))
        common.fail(f"{COMMAND}: interrupted after {self.finished} of "
                    f"{self.total} resources; {hint}",
                    code=common.EXIT_INTERRUPTED)

    def finish(self) -> None:
        self.tally.finish("dry run" if self.dry_run else "", self.optional)


def _via_workers(records: list[inventory.ResourceRecord],
                 options: migrate.MigrationOptions, queue: str, jobs: int,
                 no_wait: bool) -> None:
    run = fleet.queue_run(records, options, queue, jobs)
    click.echo(f"run {run.run_id}: {len(run.jobs)} jobs queued on {queue}"
               f" for {sum(map(len, run.jobs.values()))} resources, "
               f"{sum(map(len, run.joined.values()))} already with a job"
               f" (follow it with --follow {run.run_id})")
    if run.jobs and not search_index.worker_listens(queue):
        click.echo(f"{COMMAND}: no worker listens on {queue} now; the jobs"
                   " wait for one (ckan dcor-depot-worker "
                   f"{queue})", err=True)
    if not no_wait:
        _follow(run.run_id, announce=False)


def _follow(run_id: str, announce: bool = True) -> None:
    run = migration_runs.load(run_id)
    if run is None:
        common.fail(f"{COMMAND}: no run {run_id} (runs are kept "
                    f"{migration_runs.KEEP // 86400} days)", code=2)
    if announce:
        click.echo(f"run {run_id}: {run.total} resources, jobs on "
                   f"{run.queue}")
    printer = _Printer(run.total)
    with common.progress_bars("migrating", run.total) as progress:
        def on_outcome(item: dict[str, Any]) -> None:
            printer.add_item(item)
            progress(1)

        try:
            fleet.follow_run(run_id, on_outcome)
        except KeyboardInterrupt:
            printer.interrupted(f"the jobs go on; follow them with "
                                f"--follow {run_id}")
    printer.finish()


def report_index(index: search_index.IndexUpdates) -> None:
    if index.queued:
        click.echo(f"search index: {index.queued} datasets queued for the "
                   "background workers")
    if index.failed:
        common.report_error(
            f"search index: reindexing {len(index.failed)} datasets failed "
            "(see the log); the data are recorded, run 'ckan search-index "
            "rebuild' once the search server works")
