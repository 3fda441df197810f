"""``dcor-depot-check``: is this site ready to run the plugin?"""
from __future__ import annotations

import click

from ckanext.dcor_depot import names
from ckanext.dcor_depot.cli import common
from ckanext.dcor_depot.operations import health

COMMAND = "dcor-depot-check"


def plugin_queues() -> list[str]:
    """Every queue the plugin sends jobs to."""
    return list(names.PLUGIN_QUEUES)


@click.command(COMMAND, short_help="Check the configuration, the object "
                                   "store, the workers and the folders.")
@click.option("--min-free", "min_free_gib", type=float, default=1.0,
              show_default=True, metavar="GIB",
              help="Fail when a filesystem the plugin writes to has less "
                   "free space (GiB).")
@click.option("--repair-policies", is_flag=True,
              help="Give every bucket of the site whose policy differs "
                   "the plugin's policy.")
@common.with_app_context
def check_depot(min_free_gib: float, repair_policies: bool) -> None:
    """Check configuration, store credentials, that the bucket policy
    opens exactly the objects tagged public (in a temporary bucket,
    removed afterwards), the policy of every bucket of the site, Redis
    and a worker on the plugin's queues, write permission in every
    folder the plugin writes to, and their free space.

    One line per check: OK, SKIP (no object store configured) or FAIL
    with how to fix it. Exit status 1 if any check failed.
    """
    if min_free_gib < 0:
        common.fail(f"{COMMAND}: --min-free must not be negative, not "
                    f"{min_free_gib:g}", code=2)
    failures = 0
    for result in health.run_checks(plugin_queues(), min_free_gib,
                                    repair_policies):
        click.echo(result.line())
        failures += result.failed
    click.echo(f"{COMMAND}: {failures} failed")
    if failures:
        raise click.exceptions.Exit(1)
