"""``ckan import-figshare``: mirror the figshare DOIs of the DOI list."""
from __future__ import annotations

import ckan.plugins.toolkit as tk
import click

from ckanext.dcor_depot import errors
from ckanext.dcor_depot.cli import common
from ckanext.dcor_depot.operations.figshare import importer

COMMAND = "import-figshare"


class ClickFeedback(importer.Feedback):
    """Messages on the terminal; warnings and errors on stderr."""

    def info(self, message: str) -> None:
        click.echo(message)

    def warning(self, message: str) -> None:
        click.echo(f"warning: {message}", err=True)

    def error(self, message: str) -> None:
        tk.error_shout(message)


@click.command(COMMAND,
               short_help="Mirror the figshare DOIs of the DOI list.")
@click.option("--limit", type=click.IntRange(min=0), default=None,
              help="Import only the first N DOIs of the list.")
@common.with_app_context
def import_figshare(limit: int | None) -> None:
    """Import figshare articles as datasets of the organization
    figshare-import.

    The DOIs come from ckanext.dcor_depot.figshare_dois_path (one
    10.6084/m9.figshare.ID.vVERSION per line) and are read from
    ckanext.dcor_depot.figshare_api_url. Running it again changes nothing
    that is complete and resumes an interrupted import.
    """
    try:
        summary = importer.import_figshare(limit, ClickFeedback(),
                                           common.progress_bars)
    except errors.SourceError as exc:
        common.fail(f"{COMMAND}: {exc}")
    tally = common.Tally(COMMAND, "imported", "skipped")
    tally.add("imported", summary.imported)
    tally.add("skipped", summary.skipped)
    tally.add("failed", summary.failed)
    tally.finish()
