"""``dcor-depot-worker``: CKAN's job worker, quicker to recover the jobs
of workers that died."""
from __future__ import annotations

from typing import Any

import click
import rq
from ckan.lib import jobs as ckan_jobs

from ckanext.dcor_depot import names
from ckanext.dcor_depot.records import job_queue, rq_compat

COMMAND = "dcor-depot-worker"
#: Seconds between the worker's cleanings of RQ's registries (RQ: 600).
#: A cleaning re-queues the jobs of dead workers whose heartbeat expired.
MAINTENANCE_INTERVAL = 60
#: Lifetime of the worker's own key (RQ: 420 s); an idle worker wakes 15 s
#: before it expires, and only a waking worker does its maintenance.
WORKER_TTL = 90


class PreloadedWorker(ckan_jobs.Worker):
    """CKAN's worker whose work horses run in the CKAN the worker loaded.

    CKAN's own worker loads its whole environment again in every forked
    work horse (plugins unloaded and loaded, the config read twice):
    about 0.6 s per job, most of a small upload's jobs' time. The
    worker loaded the same config at its start, and a fork inherits it;
    a changed config needs a restart of the worker, as for the web
    server.
    """

    def main_work_horse(self, job: Any, queue: Any) -> Any:
        return rq.Worker.main_work_horse(self, job, queue)

    def clean_registries(self) -> None:
        # The plugin's cleaning first: RQ 1.x's own fails a job abandoned
        # for good without queueing its follow-up jobs (records.rq_compat).
        for queue in self.queues:
            job_queue.recover_abandoned_of(queue)
        super().clean_registries()


@click.command(COMMAND, short_help="Start a worker for the plugin's jobs.")
@click.option("--burst", is_flag=True,
              help="Stop as soon as the queues are empty.")
@click.argument("queues", nargs=-1)
def worker(burst: bool, queues: tuple[str, ...]) -> None:
    """Start a worker like `ckan jobs worker`, by default on the queues
    of this plugin's jobs (default, dcor-short, dcor-normal).

    Its work horses start from the CKAN the worker loaded instead of
    loading it again for every job (restart it after config changes).
    A job whose worker died (SIGKILL, out of memory, a lost machine) is
    run again about 90 s after its last heartbeat, within about four
    minutes; with `ckan jobs worker` it may wait for RQ's ten-minute
    maintenance.
    """
    rq_worker = PreloadedWorker(list(queues) or list(names.QUEUES))
    rq_compat.set_worker_timing(rq_worker, MAINTENANCE_INTERVAL, WORKER_TTL)
    rq_worker.work(burst=burst)
