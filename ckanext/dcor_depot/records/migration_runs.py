"""Runs of ``dcor-migrate-resources-to-object-store --via-workers``, kept
in CKAN's Redis (shared by every host of the site).

A run is what one invocation queued: its options, its jobs with their
resources, and the resources it joined (queued by an earlier run and not
ended yet). The jobs report one outcome per resource to their run's
list, so any host can follow a run (``--follow RUN``) from the start.
Each resource also points at the last job that took it, per set of
options: a rerun finds it there instead of queueing the resource again.
Everything expires :data:`KEEP` seconds after it was written.
"""
from __future__ import annotations

import datetime
import json
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import ckan.plugins.toolkit as tk
from ckan.lib import jobs as ckan_jobs

#: Seconds a run, its outcomes and the resources' job pointers are kept.
KEEP = 7 * 24 * 3600


@dataclass
class Run:
    """One invocation's queued work."""
    run_id: str
    created: str
    queue: str
    #: the migration options (``MigrationOptions`` as a dict)
    options: dict[str, bool]
    #: resources counted at queueing time (skips and failures included)
    total: int
    #: job id -> ids of the resources it migrates
    jobs: dict[str, list[str]] = field(default_factory=dict)
    #: earlier run -> {resource id: job id} of the resources this run
    #: follows instead of queueing them again
    joined: dict[str, dict[str, str]] = field(default_factory=dict)


@dataclass(frozen=True)
class JobRef:
    """The job that last took a resource, and the run that queued it."""
    run_id: str
    job_id: str


def _prefix() -> str:
    site = tk.config.get("ckan.site_id") or "default"
    return f"ckanext-dcor_depot:{site}:migrate"


def _run_key(run_id: str) -> str:
    return f"{_prefix()}:run:{run_id}"


def _outcomes_key(run_id: str) -> str:
    return f"{_prefix()}:run:{run_id}:outcomes"


def _job_key(signature: str, resource_id: str) -> str:
    return f"{_prefix()}:job-of:{signature}:{resource_id}"


def new_run_id(now: datetime.datetime) -> str:
    """A run id that sorts by time and names its moment (UTC)."""
    return f"{now:%Y%m%d-%H%M%S}-{secrets.token_hex(3)}"


def save(run: Run) -> None:
    ckan_jobs.connect_to_redis().set(_run_key(run.run_id),
                                     json.dumps(asdict(run)), ex=KEEP)


def load(run_id: str) -> Run | None:
    raw = ckan_jobs.connect_to_redis().get(_run_key(run_id))
    return Run(**json.loads(raw)) if raw else None


def add_outcomes(run_id: str, outcomes: Iterable[Mapping[str, Any]]) -> None:
    """Append outcomes (JSON-able dicts) to the run's list."""
    items = [json.dumps(dict(outcome)) for outcome in outcomes]
    if not items:
        return
    key = _outcomes_key(run_id)
    with ckan_jobs.connect_to_redis().pipeline() as pipe:
        pipe.rpush(key, *items)
        pipe.expire(key, KEEP)
        pipe.execute()


def outcomes(run_id: str, start: int = 0) -> list[dict[str, Any]]:
    """The run's outcomes from position ``start`` on, oldest first."""
    raw = ckan_jobs.connect_to_redis().lrange(_outcomes_key(run_id),
                                              start, -1)
    return [json.loads(item) for item in raw]


def jobs_of(signature: str, resource_ids: list[str]
            ) -> dict[str, JobRef]:
    """The job that last took each resource with these options (resources
    without one are left out)."""
    if not resource_ids:
        return {}
    values = ckan_jobs.connect_to_redis().mget(
        [_job_key(signature, rid) for rid in resource_ids])
    found = {}
    for rid, value in zip(resource_ids, values, strict=True):
        if value:
            run_id, job_id = json.loads(value)
            found[rid] = JobRef(run_id, job_id)
    return found


def set_jobs_of(signature: str, refs: Mapping[str, JobRef]) -> None:
    with ckan_jobs.connect_to_redis().pipeline() as pipe:
        for rid, ref in refs.items():
            pipe.set(_job_key(signature, rid),
                     json.dumps([ref.run_id, ref.job_id]), ex=KEEP)
        pipe.execute()


def _datasets_key(run_id: str) -> str:
    return f"{_prefix()}:run:{run_id}:jobs-per-dataset"


def _changed_key(run_id: str) -> str:
    return f"{_prefix()}:run:{run_id}:changed-datasets"


def count_dataset_jobs(run_id: str, counts: Mapping[str, int]) -> None:
    """How many of the run's jobs touch each dataset (added up)."""
    if not counts:
        return
    key = _datasets_key(run_id)
    with ckan_jobs.connect_to_redis().pipeline() as pipe:
        for dataset_id, count in counts.items():
            pipe.hincrby(key, dataset_id, count)
        pipe.expire(key, KEEP)
        pipe.execute()


def job_done_with(run_id: str, dataset_ids: Iterable[str],
                  changed: Iterable[str]) -> list[str]:
    """A job of the run is done with these datasets (it changed
    ``changed``): the datasets whose last job of the run it was and that a
    job of the run changed. A job that runs again counts again, which
    only makes a dataset's last job come early (and then once more)."""
    dataset_ids = sorted(set(dataset_ids))
    changed = sorted(set(changed))
    connection = ckan_jobs.connect_to_redis()
    with connection.pipeline() as pipe:
        if changed:
            pipe.sadd(_changed_key(run_id), *changed)
            pipe.expire(_changed_key(run_id), KEEP)
        for dataset_id in dataset_ids:
            pipe.hincrby(_datasets_key(run_id), dataset_id, -1)
        left = pipe.execute()[-len(dataset_ids):] if dataset_ids else []
    last = [d for d, n in zip(dataset_ids, left, strict=True) if n <= 0]
    if not last:
        return []
    flags = connection.smismember(_changed_key(run_id), last)
    return [d for d, flag in zip(last, flags, strict=True) if flag]
