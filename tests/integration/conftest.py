"""Fixtures of the integration tier: the real stack (helpers that are
not fixtures live in :mod:`tests.support.stack`)."""
from __future__ import annotations

import subprocess
import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

import pytest

from ckanext.dcor_depot.storage import object_store
from tests.support.stack import (
    ckan_command,
    kill_tree,
    mounted_tmpfs,
    prime_site_user,
)


@pytest.fixture
def s3_client(with_plugins):
    """The plugin's boto3 client, built from the test config."""
    return object_store.get_client()


@pytest.fixture
def fresh_bucket(s3_client):
    """A new bucket with the plugin's policy, for one test."""
    bucket = object_store.bucket_name(str(uuid.uuid4()))
    object_store.ensure_bucket(bucket)
    return bucket


# ------------------------------------------------------------ CKAN helpers
@pytest.fixture
def app(make_app, ckan_config):
    """CKAN's ``app`` fixture, built once for equal plugins and config.

    Building CKAN's web application costs about a third of a second;
    most tests only need it for a request context. A test whose config
    or loaded plugins differ gets a new one, and each test gets its own
    client (no cookies carried over).
    """
    from ckan.plugins import core as plugins_core
    from ckan.tests.helpers import CKANTestApp
    key = (tuple(sorted(plugins_core._PLUGINS)),
           repr(sorted((k, repr(v)) for k, v in ckan_config.items())))
    if _APP_CACHE.get("key") != key:
        _APP_CACHE["app"] = make_app()
        _APP_CACHE["key"] = key
    return CKANTestApp(_APP_CACHE["app"].app)


_APP_CACHE: dict[str, Any] = {}



@pytest.fixture
def pipeline(clean_db, clean_queues, with_plugins, with_test_worker,
             with_request_context):
    """A clean database and queues, the plugin loaded, jobs in-process."""
    object_store._known_buckets.clear()
    yield


@pytest.fixture
def owner(pipeline):
    """A user who administers a fresh organization."""
    from ckan.tests import factories
    user = factories.User()
    org = factories.Organization(
        users=[{"name": user["name"], "capacity": "admin"}])
    return {"user": user, "org": org}


@pytest.fixture
def make_dataset(owner):
    from ckan.tests import factories

    def make(private: bool = True, **kwargs):
        return factories.Dataset(user=owner["user"],
                                 owner_org=owner["org"]["id"],
                                 private=private, **kwargs)
    return make


@pytest.fixture
def upload(owner, create_with_upload):
    """Upload bytes as a new resource through CKAN's resource_create."""
    def do_upload(dataset, data: bytes, name: str = "data.rtdc", **kwargs):
        return create_with_upload(
            data, name, package_id=dataset["id"], name=name,
            url="upload", context={"user": owner["user"]["name"]},
            **kwargs)
    return do_upload


@pytest.fixture
def rtdc_bytes(tmp_path):
    from ckanext.dcor_depot.sample_data import make_rtdc_file
    return make_rtdc_file(tmp_path / "sample.rtdc").read_bytes()


# ----------------------------------------- concurrency, mounts, workers


@pytest.fixture
def run_concurrently(with_request_context):
    """Run callables at the same moment, each in its own thread.

    Every thread gets a request context of the CKAN app and its own
    database session (closed afterwards, so that no idle transaction
    blocks the next test's clean_db). Returns ``(results, errors)``.
    """
    import flask
    from ckan import model

    flask_app = flask.current_app._get_current_object()

    def run(*funcs: Callable[[], Any]
            ) -> tuple[list[Any], list[Exception]]:
        prime_site_user()
        model.Session.commit()
        start = threading.Barrier(len(funcs))
        results: list[Any] = []
        errors: list[Exception] = []

        def target(func: Callable[[], Any]) -> None:
            with flask_app.test_request_context():
                try:
                    start.wait()
                    results.append(func())
                except Exception as exc:  # reported to the test
                    errors.append(exc)
                finally:
                    model.Session.remove()

        threads = [threading.Thread(target=target, args=(f,)) for f in funcs]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(120)
        return results, errors
    return run


@pytest.fixture
def tmpfs_dir(tmp_path: Path) -> Iterator[Path]:
    """A freshly mounted 64 MiB tmpfs: a filesystem of its own."""
    with mounted_tmpfs(tmp_path / "tmpfs", "64m") as mount_point:
        yield mount_point


@pytest.fixture
def start_worker(request: pytest.FixtureRequest, tmp_path: Path
                 ) -> Iterator[Callable[..., subprocess.Popen]]:
    """Start real `ckan jobs worker` processes with the tests' CKAN ini
    (``command=("dcor-depot-worker",)``: the plugin's worker).

    The ini comes from the --ckan-ini option (CI runs with another one).
    Each worker and the work horses it forks are killed in teardown.
    """
    ini = request.config.getoption("--ckan-ini")
    started: list[tuple[subprocess.Popen, IO[bytes]]] = []

    def start(*queues: str,
              command: tuple[str, ...] = ("jobs", "worker"),
              ini_file: str | Path | None = None) -> subprocess.Popen:
        log = open(tmp_path / f"worker-{len(started)}.log", "wb")
        proc = subprocess.Popen(
            [ckan_command(), "-c", str(ini_file or ini), *command, *queues],
            stdout=log, stderr=subprocess.STDOUT)
        started.append((proc, log))
        return proc

    yield start
    for proc, log in started:
        if proc.poll() is None:  # else the pid may belong to another now
            proc.terminate()  # an idle worker leaves and deregisters
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                kill_tree(proc.pid)
                proc.wait(30)
        log.close()


# ------------------------------------------------------ the live web site
@pytest.fixture(scope="session")
def live_site(request: pytest.FixtureRequest,
              tmp_path_factory: pytest.TempPathFactory):
    """A real ``ckan run`` web server on the tests' database (see
    live_site.py); one per test session."""
    from tests.support import live_site as live
    ini = Path(request.config.getoption("--ckan-ini")).resolve()
    yield from live.serve(ckan_command(), ini,
                          tmp_path_factory.mktemp("live-site"))


@pytest.fixture
def site(live_site, pipeline):
    """The live site, on a clean database, with the plugin also loaded in
    the test process (which runs the jobs and inspects the results)."""
    yield live_site
    from ckan import model
    model.Session.remove()




@pytest.fixture
def org(site):
    """An organization of the live site with an admin, an editor and a
    member, each with an API token (:class:`tests.support.access.Org`)."""
    from tests.support.access import organization
    return organization()


@pytest.fixture
def ds(site, org):
    """A private dataset of ``org``, created over HTTP by its editor."""
    from tests.support.access import dataset
    return dataset(site, org, private=True)


# ------------------------------------------------- the figshare stand-in
@pytest.fixture
def fake_figshare():
    """The figshare stand-in, serving in a thread of its own."""
    from tests.support.figshare import FakeFigshare
    fake = FakeFigshare()
    thread = threading.Thread(target=fake.server.serve_forever, daemon=True)
    thread.start()
    yield fake
    fake.server.shutdown()
    fake.server.server_close()


@pytest.fixture
def figshare_site(fake_figshare, tmp_path, ckan_config, monkeypatch,
                  clean_db, clean_queues, with_plugins, with_extended_cli,
                  with_test_worker, cli):
    """A clean CKAN whose figshare import reads from the stand-in (in
    this process: not the live site)."""
    from ckanext.dcor_depot.operations.figshare import client
    from tests.support.cli import invoke
    dois = tmp_path / "figshare_dois.txt"
    dois.write_text("")
    for key, value in {
        "ckanext.dcor_depot.figshare_api_url": fake_figshare.url,
        "ckanext.dcor_depot.figshare_dois_path": str(dois),
        "ckanext.dcor_depot.depots_path": str(tmp_path / "depots"),
        "ckanext.dcor_depot.tmp_dir": str(tmp_path / "tmp"),
    }.items():
        monkeypatch.setitem(ckan_config, key, value)
    monkeypatch.setattr(client, "BACKOFF_BASE", 0.01)
    object_store._known_buckets.clear()

    class Site:
        fake = fake_figshare
        dois_path = dois
        tmp_dir = tmp_path / "tmp"

        def write_dois(self, *lines: str) -> None:
            dois.write_text("\n".join(lines) + "\n")

        def run(self, *args: str):
            return invoke(cli, "import-figshare", *args)

    return Site()
