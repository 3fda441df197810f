"""``ckan import-figshare``: mirror the figshare DOIs of the DOI list."""
from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterator
from typing import Any

import ckan.plugins.toolkit as tk
import click

from ckanext.dcor_depot.figshare import importer as figshare


class ClickFeedback(figshare.Feedback):
    """Progress and messages on the terminal; errors on stderr."""

    def info(self, message: str) -> None:
        click.echo(message)

    def warning(self, message: str) -> None:
        click.echo(f"warning: {message}", err=True)

    def error(self, message: str) -> None:
        tk.error_shout(message)

    @contextlib.contextmanager
    def progress(self, label: str, total: int
                 ) -> Iterator[Callable[[int], Any]]:
        if not sys.stdout.isatty():
            # A bar in a log file is noise; the caller prints a line with
            # the byte count when the file is done.
            yield lambda n: None
            return
        with click.progressbar(length=total, label=label,
                               show_pos=True) as bar:
            yield bar.update


@click.command("import-figshare",
               short_help="Mirror the figshare DOIs of the DOI list.")
@click.option("--limit", type=click.IntRange(min=0), default=None,
              help="Import only the first N DOIs of the list.")
@click.pass_context
def import_figshare(ctx: click.Context, limit: int | None) -> None:
    """Import figshare articles as datasets of the organization
    figshare-import.

    The DOIs come from ckanext.dcor_depot.figshare_dois_path (one
    10.6084/m9.figshare.ID.vVERSION per line) and are read from
    ckanext.dcor_depot.figshare_api_url. Running it again changes nothing
    that is complete and resumes an interrupted import.
    """
    flask_app = ctx.meta.get("flask_app")
    with (flask_app.test_request_context() if flask_app
          else contextlib.nullcontext()):
        try:
            summary = figshare.import_figshare(limit, ClickFeedback())
        except figshare.FigshareError as exc:
            tk.error_shout(f"import-figshare: {exc}")
            ctx.exit(1)
    click.echo(summary.line())
    if summary.failed:
        ctx.exit(1)
