"""``run-jobs-dcor-depot``: run the resource jobs synchronously."""
from __future__ import annotations

import ckan.model as model
import click

from ckanext.dcor_depot import config
from ckanext.dcor_depot.cli import common
from ckanext.dcor_depot.operations import jobs as dcor_jobs
from ckanext.dcor_depot.operations.migrate.plan import BucketListings
from ckanext.dcor_depot.records import inventory
from ckanext.dcor_depot.storage import layout, object_store, transfer

COMMAND = "run-jobs-dcor-depot"


def _run_jobs(record: inventory.ResourceRecord,
              listings: BucketListings | None) -> tuple[list[str], list[str]]:
    """Run the three jobs for one resource: (what was done, errors)."""
    rid = record.id
    done: list[str] = []
    errors: list[str] = []
    kinds = [dcor_jobs.SYMLINK]
    stored, listed_in = transfer.UNKNOWN, None
    if listings is not None:
        kinds.append(dcor_jobs.UPLOAD_S3)
        if record.owner_org:
            stored = listings.stored(record.owner_org, layout.object_key(rid))
            listed_in = object_store.bucket_name(record.owner_org)
    kinds.append(dcor_jobs.BACKUP_S3)
    backup = layout.backup_path(rid)
    had_backup = backup is not None and backup.is_file()
    for kind in kinds:
        try:
            # One failing job does not stop the next (as in the queue).
            result = (kind.func(rid) if kind is dcor_jobs.SYMLINK
                      else kind.func(rid, stored, listed_in))
        except Exception as exc:  # a job may raise anything; report it
            # A failed action may leave the session unusable.
            model.Session.rollback()
            errors.append(f"{kind.name} failed: {exc}")
            continue
        if kind is dcor_jobs.SYMLINK and result:
            done.append("moved to the user depot")
        elif kind is dcor_jobs.UPLOAD_S3 and result:
            done.append("uploaded to S3")
        elif kind is dcor_jobs.BACKUP_S3 and result and not had_backup:
            done.append(f"backed up to {result}")
    return done, errors


@click.command(COMMAND, short_help="Run the resource jobs synchronously.")
@common.modified_days_option
@common.with_app_context
def run_jobs_dcor_depot(modified_days: int) -> None:
    """Run the symlink, S3-upload and backup jobs for every resource.

    Drafts and private datasets included; repairs resources whose jobs
    failed or never ran. The S3 upload runs only when S3 is configured.
    Which objects exist comes from bucket listings; a run that finds
    nothing to do changes nothing and queues nothing.
    """
    common.check_modified_days(COMMAND, modified_days)
    # Jobs of dead workers go back to the queue (they would skip work
    # this run does, but must not stay "started").
    dcor_jobs.recover_abandoned_jobs()
    records = inventory.resource_records(modified_days)
    # Which objects exist: from listings, not a request per resource.
    listings = (BucketListings(records, prefix=layout.object_key_prefix())
                if config.s3_available() else None)
    tally = common.Tally(COMMAND, "done", "skipped")
    total = len(records)
    index = 0
    try:
        for index, record in enumerate(records, 1):
            done, errors = _run_jobs(record, listings)
            prefix = f"[{index}/{total}] {record.id}"
            if errors:
                tally.add("failed")
                common.report_error(f"{prefix}: {'; '.join(done + errors)}")
            elif done:
                tally.add("done")
                click.echo(f"{prefix}: {'; '.join(done)}")
            else:
                tally.add("skipped")
                click.echo(f"{prefix}: nothing to do")
    except KeyboardInterrupt:
        # The jobs are safe to interrupt; a rerun completes the work.
        click.echo(tally.line("interrupted"))
        common.fail(f"{COMMAND}: interrupted at resource {index} of "
                    f"{total}; run it again to finish",
                    code=common.EXIT_INTERRUPTED)
    tally.finish()
