"""``dcor-prune-stale-multipart-uploads``: clean up killed uploads."""
from __future__ import annotations

import click

from ckanext.dcor_depot import errors
from ckanext.dcor_depot.cli import common
from ckanext.dcor_depot.operations import prune
from ckanext.dcor_depot.storage import lifecycle

COMMAND = "dcor-prune-stale-multipart-uploads"


@click.command(COMMAND,
               short_help="Abort stale incomplete multipart uploads.")
@click.option("--initiated-before-days", type=float,
              default=lifecycle.ABORT_INCOMPLETE_AFTER_DAYS,
              show_default=True,
              help="Abort uploads initiated more than N days ago.")
@click.option("--dry-run", is_flag=True,
              help="List the uploads that would be aborted; change nothing.")
@common.with_app_context
def prune_stale_multipart_uploads(initiated_before_days: float,
                                  dry_run: bool) -> None:
    """Abort incomplete multipart uploads older than N days.

    Only buckets whose names match this site's bucket template
    (dcor_object_store.bucket_name) are looked at. Uploads still running
    are younger than a few days, so the default of 5 leaves them alone.
    """
    if initiated_before_days < 0:
        common.fail(f"{COMMAND}: --initiated-before-days must not be "
                    f"negative, not {initiated_before_days:g}", code=2)
    common.require_s3(COMMAND)
    if dry_run:
        tally = common.Tally(COMMAND, "to abort", "kept")
    else:
        tally = common.Tally(COMMAND, "aborted", "kept")

    def on_result(outcome: prune.PruneOutcome) -> None:
        upload = outcome.upload
        where = (f"{upload.bucket}:{upload.key} (upload {upload.upload_id}, "
                 f"initiated {upload.initiated:%Y-%m-%d %H:%M:%S %Z})")
        if outcome.action is prune.PruneAction.FAILED:
            tally.add("failed")
            common.report_error(f"{where}: abort failed: {outcome.error}")
            return
        if outcome.action is prune.PruneAction.KEPT:
            tally.add("kept")
            return  # young uploads are normal: no line each
        tally.add("to abort" if dry_run else "aborted")
        click.echo(f"{where}: {outcome.action.value}")

    try:
        prune.prune_multipart_uploads(initiated_before_days,
                                      dry_run=dry_run, on_result=on_result)
    except errors.StoreError as exc:
        click.echo(tally.line())
        common.fail(f"{COMMAND}: {exc}")
    tally.finish("dry run" if dry_run else "")
