"""``ckan import-figshare``: mirror the figshare DOIs of the DOI list."""
from __future__ import annotations

import contextlib
from collections.abc import Iterator

import ckan.plugins.toolkit as tk
import click

from ckanext.dcor_depot.cli import common
from ckanext.dcor_depot.figshare import importer
from ckanext.dcor_depot.figshare.metadata import FigshareError
from ckanext.dcor_depot.progress import Progress

COMMAND = "import-figshare"


class ClickFeedback(importer.Feedback):
    """Messages on the terminal; warnings and errors on stderr."""

    def info(self, message: str) -> None:
        click.echo(message)

    def warning(self, message: str) -> None:
        click.echo(f"warning: {message}", err=True)

    def error(self, message: str) -> None:
        tk.error_shout(message)


@contextlib.contextmanager
def _progress(label: str, length: int) -> Iterator[Progress]:
    """A progress bar on stderr (stdout keeps the result lines).

    Only on a terminal: in logs a bar is noise; there the line printed
    when a file is done says how many bytes it had.
    """
    stream = click.get_text_stream("stderr")
    if not stream.isatty():
        yield lambda _n: None
        return
    with click.progressbar(length=length, label=label, file=stream) as bar:
        yield bar.update


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
        summary = importer.import_figshare(limit, ClickFeedback(), _progress)
    except FigshareError as exc:
        common.fail(f"{COMMAND}: {exc}")
    click.echo(summary.line())
    if summary.failed:
        raise click.exceptions.Exit(1)
