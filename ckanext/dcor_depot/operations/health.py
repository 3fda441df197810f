"""The engine of ``dcor-depot-check``: is this site ready to run?

Each check is a small function returning one :class:`CheckResult`; the
command prints one line per result. Checks that need the object store
report SKIP when the site has no store at all (S3 off is a supported
setup) and when an earlier store check already failed (one cause, one
FAIL line).
"""
from __future__ import annotations

import enum
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import ckan.plugins.toolkit as tk
import redis
import rq
from ckan.exceptions import CkanConfigurationException
from ckan.lib import jobs as ckan_jobs

from ckanext.dcor_depot import config, errors
from ckanext.dcor_depot.storage import object_store, policy_check

GIB = 1024 ** 3


class Status(enum.Enum):
    OK = "OK"
    FAIL = "FAIL"
    SKIP = "SKIP"


@dataclass(frozen=True)
class CheckResult:
    name: str
    status: Status
    detail: str
    fix: str = ""

    @property
    def failed(self) -> bool:
        return self.status is Status.FAIL

    def line(self) -> str:
        """``OK   name: detail`` / ``FAIL name: detail — fix: how``."""
        text = f"{self.status.value:<4} {self.name}: {self.detail}"
        return f"{text} — fix: {self.fix}" if self.fix else text


def ok(name: str, detail: str) -> CheckResult:
    return CheckResult(name, Status.OK, detail)


def failed(name: str, detail: str, fix: str) -> CheckResult:
    return CheckResult(name, Status.FAIL, detail, fix)


def skipped(name: str, detail: str) -> CheckResult:
    return CheckResult(name, Status.SKIP, detail)


# ---------------------------------------------------------- configuration


def check_configuration() -> CheckResult:
    """The cross-option rules and the options without a usable default."""
    name = "configuration"
    try:
        config.check_consistency()
        config.storage_path()
        if config.s3_available():
            object_store.bucket_regex()  # the template names buckets
    except (CkanConfigurationException, ValueError) as exc:
        return failed(name, str(exc), "correct the CKAN config file")
    store = "with object store" if config.s3_available() else \
        "without object store (dcor_object_store.* unset)"
    return ok(name, f"consistent, {store}")


# ------------------------------------------------------- paths and space


def site_paths() -> list[tuple[str, Path]]:
    """The folders the plugin writes to, with the option naming each."""
    paths = [("ckanext.dcor_depot.depots_path", config.depots_path()),
             ("users depot", config.users_depot_path()),
             ("figshare depot", config.figshare_depot_path()),
             ("ckanext.dcor_depot.tmp_dir", config.tmp_dir())]
    try:
        paths.append(("ckan.storage_path", config.storage_path()))
    except CkanConfigurationException:
        pass  # reported by check_configuration
    backup = config.local_backup_location()
    if backup is not None:
        paths.append(("dcor_object_store.local_backup_location", backup))
    return paths


def _existing_ancestor(path: Path) -> Path:
    """``path`` or the nearest of its parents that exists."""
    while not os.path.lexists(path) and path != path.parent:
        path = path.parent
    return path


def check_writable(label: str, path: Path) -> CheckResult:
    """Write (and remove) a file in ``path``, or in the nearest existing
    parent when the plugin would create ``path`` on first use.

    A real write, not a mode bit: root ignores modes, and a read-only
    mount or a full disk only shows when writing.
    """
    name = f"write {label}"
    where = _existing_ancestor(path)
    fix = (f"make {path} a directory the CKAN user can write to, or "
           f"set {label} to one" if "." in label else
           f"make {path} a directory the CKAN user can write to")
    if not where.is_dir():
        return failed(name, f"{where} is not a directory", fix)
    try:
        with tempfile.NamedTemporaryFile(dir=where, prefix=".dcor-check-"):
            pass
    except OSError as exc:
        return failed(name, f"cannot write in {where}: "
                      f"{exc.strerror or exc}", fix)
    if where == path:
        return ok(name, f"{path} is writable")
    return ok(name, f"{path} will be created in writable {where}")


def check_free_space(paths: Iterable[tuple[str, Path]], min_free_gib: float
                     ) -> list[CheckResult]:
    """Free space of each filesystem holding one of ``paths`` (one line
    per filesystem, naming the paths on it)."""
    by_device: dict[int, list[Path]] = {}
    for _, path in paths:
        where = _existing_ancestor(path)
        if where.is_dir():  # else check_writable reports it
            by_device.setdefault(where.stat().st_dev, []).append(path)
    results = []
    for members in by_device.values():
        usage = shutil.disk_usage(_existing_ancestor(members[0]))
        name = f"free space {members[0]}"
        others = f" (also {', '.join(map(str, members[1:]))})" \
            if members[1:] else ""
        detail = f"{usage.free / GIB:.1f} GiB free{others}"
        if usage.free < min_free_gib * GIB:
            results.append(failed(
                name, f"{detail}, below {min_free_gib:g} GiB",
                "free space on this filesystem or move the folder to a "
                "larger one"))
        else:
            results.append(ok(name, detail))
    return results


# --------------------------------------------------- Redis and the worker


def check_redis() -> CheckResult:
    name = "redis"
    url = tk.config.get("ckan.redis.url")
    try:
        ckan_jobs.connect_to_redis().ping()
    except redis.exceptions.RedisError as exc:
        return failed(name, f"{url} does not answer ({exc})",
                      "start Redis or correct ckan.redis.url")
    return ok(name, f"{url} answers")


def check_worker(queues: Iterable[str]) -> CheckResult:
    """A background worker of this site takes jobs from every queue."""
    name = "worker"
    queues = sorted(set(queues))
    try:
        missing = [q for q in queues
                   if not rq.Worker.all(queue=ckan_jobs.get_queue(q))]
    except redis.exceptions.RedisError as exc:
        return failed(name, f"cannot ask Redis ({exc})",
                      "start Redis or correct ckan.redis.url")
    if missing:
        return failed(
            name, f"no worker listens on {', '.join(missing)}",
            f"run `ckan -c CKAN_INI jobs worker {' '.join(queues)}` "
            "(e.g. as a systemd or supervisor service)")
    return ok(name, f"listening on {', '.join(queues)}")


# -------------------------------------------------------- the object store

_STORE_FIX = ("check dcor_object_store.endpoint_url, access_key_id and "
              "secret_access_key")
_UNCONFIGURED = "no object store configured (dcor_object_store.* unset)"


def check_store_credentials() -> CheckResult:
    """The store answers a request signed with the configured keys."""
    name = "store credentials"
    try:
        object_store.check_connection()
    except (errors.StoreError, ValueError) as exc:
        # (boto raises ValueError for an endpoint URL it cannot use)
        return failed(name, str(exc), _STORE_FIX)
    return ok(name, f"{config.s3_settings().endpoint_url} accepts "
              f"key {config.s3_settings().access_key_id}")


def probe_bucket_name() -> str:
    """A new bucket name from the site's template: the store user may
    only be allowed to create buckets of that form."""
    return object_store.bucket_name(f"dcor-check-{uuid.uuid4().hex[:12]}")


def check_policy_behaviour() -> CheckResult:
    """In a temporary bucket with the plugin's policy, an object tagged
    public is readable without credentials and an untagged one is not.

    The bucket and its objects are removed whatever happens.
    """
    name = "bucket policy behaviour"
    try:
        public, private = policy_check.anonymous_reads(probe_bucket_name())
    except errors.StoreError as exc:
        return failed(name, str(exc),
                      "let the store user create and delete buckets, set "
                      "bucket policies and tag objects (and remove the "
                      "temporary bucket if it is left)")
    detail = (f"anonymous GET of a tagged object: {public}, of an untagged "
              f"one: {private}")
    if private == 200:
        return failed(name, f"{detail}: every object would be public",
                      "use a store that evaluates s3:ExistingObjectTag "
                      "conditions of bucket policies (Ceph RGW, MinIO, "
                      "AWS); do not open the buckets otherwise")
    if public != 200:
        return failed(name, f"{detail}: public data would be unreadable",
                      "use a store that evaluates s3:ExistingObjectTag "
                      "conditions of bucket policies and is reachable at "
                      "dcor_object_store.endpoint_url without credentials")
    return ok(name, f"{detail} (expected 200 and 403)")


def check_bucket_policies(repair: bool = False) -> CheckResult:
    """Every bucket of the site has exactly the plugin's policy; with
    ``repair``, the others get it."""
    name = "bucket policies"
    try:
        differing = policy_check.differing_policies()
        if differing and repair:
            policy_check.replace_policies(differing)
    except errors.StoreError as exc:
        return failed(name, str(exc), _STORE_FIX)
    shown = ", ".join(differing[:5]) + (
        f" and {len(differing) - 5} more" if len(differing) > 5 else "")
    if differing and repair:
        return ok(name, f"replaced the policy of {shown}")
    if differing:
        return failed(name, f"{len(differing)} buckets have another policy: "
                      f"{shown}",
                      "run `ckan dcor-depot-check --repair-policies` "
                      "(gives them the plugin's policy)")
    return ok(name, "every bucket of the site has the plugin's policy")


def store_checks(repair_policies: bool = False,
                 configured: bool = True) -> Iterator[CheckResult]:
    """The object-store checks: SKIP without a store, with a wrong
    configuration (``configured`` False) or when the store cannot be
    reached (the line before says why)."""
    names = ("store credentials", "bucket policy behaviour",
             "bucket policies")
    if not configured or not config.s3_available():
        reason = (_UNCONFIGURED if configured
                  else "the configuration is wrong (see above)")
        for name in names:
            yield skipped(name, reason)
        return
    credentials = check_store_credentials()
    yield credentials
    if credentials.failed:
        for name in names[1:]:
            yield skipped(name, "the store cannot be used (see above)")
        return
    yield check_policy_behaviour()
    yield check_bucket_policies(repair_policies)


# ------------------------------------------------------------- all checks


def run_checks(queues: Iterable[str], min_free_gib: float,
               repair_policies: bool = False) -> Iterator[CheckResult]:
    """Every check, in the order an operator would fix things."""
    configuration = check_configuration()
    yield configuration
    yield from store_checks(repair_policies, not configuration.failed)
    yield check_redis()
    yield check_worker(queues)
    paths = site_paths()
    for label, path in paths:
        yield check_writable(label, path)
    yield from check_free_space(paths, min_free_gib)
