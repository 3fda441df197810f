"""What all commands share: app context, counting, errors, S3 checks,
progress bars."""
from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Iterator
from typing import Any, NoReturn

import ckan.plugins.toolkit as tk
import click

from ckanext.dcor_depot import config, errors
from ckanext.dcor_depot.progress import Progress, no_progress
from ckanext.dcor_depot.records import inventory
from ckanext.dcor_depot.storage import object_store

#: Exit status of a command interrupted with Ctrl-C (128 + SIGINT).
EXIT_INTERRUPTED = 130

modified_days_option = click.option(
    "--modified-days", type=int, default=-1, show_default=True,
    help="Only datasets whose metadata_modified is on or after midnight "
         "(UTC) of the date N days before today (0: modified today; -1: "
         "all datasets).")


def with_app_context(func: Callable[..., Any]) -> Callable[..., Any]:
    """Run the command inside a request context of CKAN's Flask app.

    CKAN actions (and the hooks they fire) expect one; the ``ckan``
    command group puts the app in ``ctx.meta``.
    """
    @click.pass_context
    @functools.wraps(func)
    def wrapper(ctx: click.Context, *args: Any, **kwargs: Any) -> Any:
        flask_app = ctx.meta.get("flask_app")
        if flask_app is None:
            return ctx.invoke(func, *args, **kwargs)
        with flask_app.test_request_context():
            return ctx.invoke(func, *args, **kwargs)
    return wrapper


def fail(message: str, code: int = 1) -> NoReturn:
    """One line on stderr, then exit with ``code``."""
    tk.error_shout(message)
    raise click.exceptions.Exit(code)


def check_modified_days(command: str, days: int) -> None:
    try:
        inventory.check_modified_days(days)
    except ValueError as exc:
        fail(f"{command}: {exc}", code=2)


def require_s3(command: str) -> None:
    """Exit with a clear message unless the object store is usable."""
    if not config.s3_available():
        fail(f"{command}: S3 is not configured (set "
             "dcor_object_store.access_key_id, secret_access_key and "
             "endpoint_url in the CKAN config)")
    try:
        object_store.check_connection()
    except errors.StoreError as exc:
        fail(f"{command}: {exc}")


class Tally:
    """Counts of what a command did, printed as its summary line."""

    def __init__(self, command: str, *names: str) -> None:
        self.command = command
        self.counts = dict.fromkeys(names, 0)
        self.counts.setdefault("failed", 0)

    def add(self, name: str, n: int = 1) -> None:
        self.counts[name] = self.counts.get(name, 0) + n

    @property
    def failed(self) -> int:
        return self.counts["failed"]

    def line(self, note: str = "", optional: tuple[str, ...] = ()) -> str:
        """``command[ (note)]: 3 uploaded, 1 skipped, 0 failed``.

        Counts named in ``optional`` are left out while they are zero.
        """
        parts = [f"{n} {name}" for name, n in self.counts.items()
                 if n or name not in optional]
        head = f"{self.command} ({note})" if note else self.command
        return f"{head}: {', '.join(parts)}"

    def finish(self, note: str = "", optional: tuple[str, ...] = ()
               ) -> None:
        """Print the summary; exit 1 if anything failed."""
        click.echo(self.line(note, optional))
        if self.failed:
            raise click.exceptions.Exit(1)


def report_error(message: str) -> None:
    """A failed item: a line on stderr, the command goes on."""
    tk.error_shout(message)


@contextlib.contextmanager
def progress_bars(label: str, length: int) -> Iterator[Progress]:
    """A progress bar on stderr (stdout keeps the result lines).

    A :data:`~ckanext.dcor_depot.progress.ProgressBars` for the engines.
    Only on a terminal: in logs a bar is noise, and stderr stays free for
    the error line.
    """
    stream = click.get_text_stream("stderr")
    if not stream.isatty():
        yield no_progress
        return
    with click.progressbar(length=length, label=label, file=stream) as bar:
        yield bar.update
