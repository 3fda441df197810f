"""``dcor-depot-worker``: CKAN's job worker, quicker to recover the jobs
of workers that died."""
from __future__ import annotations

import click
from ckan.lib import jobs as ckan_jobs

from ckanext.dcor_depot.hooks import jobs as dcor_jobs

COMMAND = "dcor-depot-worker"
#: Seconds between the worker's cleanings of RQ's registries (RQ: 600).
#: A cleaning re-queues the jobs of dead workers whose heartbeat expired.
MAINTENANCE_INTERVAL = 60
#: Lifetime of the worker's own key (RQ: 420 s); an idle worker wakes 15 s
#: before it expires, and only a waking worker does its maintenance.
WORKER_TTL = 90


@click.command(COMMAND, short_help="Start a worker for the plugin's jobs.")
@click.option("--burst", is_flag=True,
              help="Stop as soon as the queues are empty.")
@click.argument("queues", nargs=-1)
def worker(burst: bool, queues: tuple[str, ...]) -> None:
    """Start a worker like `ckan jobs worker`, by default on the queues
    of this plugin's jobs (default, dcor-short, dcor-normal).

    A job whose worker died (SIGKILL, out of memory, a lost machine) is
    run again about 90 s after its last heartbeat, within about four
    minutes; with `ckan jobs worker` it may wait for RQ's ten-minute
    maintenance.
    """
    rq_worker = ckan_jobs.Worker(list(queues) or list(dcor_jobs.QUEUES))
    # Attributes rather than arguments: RQ 1 and RQ 2 name them apart.
    rq_worker.maintenance_interval = MAINTENANCE_INTERVAL
    rq_worker.worker_ttl = WORKER_TTL
    rq_worker.work(burst=burst)
