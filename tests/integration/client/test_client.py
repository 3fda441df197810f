"""The upload client against the live site and the real store: the
function and the command, as a user runs them (the live site's part
size: 5 MiB). Faults are made at the client's own HTTP layer (a
``requests.Session`` that breaks a request), never by mocking the store.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import pytest
import requests

from ckanext.dcor_depot.client import (
    ClientError,
    VerificationError,
    upload_file,
    verify_sha256,
)
from ckanext.dcor_depot.client import state as states
from ckanext.dcor_depot.records import upload_grants
from ckanext.dcor_depot.storage import layout, object_store, presigned
from tests.support.access import (
    anon_status,
    dataset,
    fresh_dataset,
    fresh_resource,
    object_url,
    person,
)
from tests.support.client import client_env, command, run_command
from tests.support.data import data_file, sha256
from tests.support.live_site import free_port
from tests.support.stack import anonymous_get, run_jobs, wait_for
from tests.support.store import open_uploads

MiB = 2**20
T = TypeVar("T")


@pytest.fixture
def state_dir(tmp_path) -> Path:
    return tmp_path / "state"


def with_jobs(func: Callable[[], T], timeout: float = 120) -> T:
    """Run ``func`` in a thread while this one runs the site's jobs (the
    SHA256 job the client waits for)."""
    with ThreadPoolExecutor(1) as pool:
        future = pool.submit(func)
        deadline = time.monotonic() + timeout
        while not future.done() and time.monotonic() < deadline:
            run_jobs()
            time.sleep(0.2)
        return future.result(timeout=1)


def stored_object(org, rid: str) -> bytes:
    return object_store.get_client().get_object(
        Bucket=org.bucket, Key=layout.object_key(rid))["Body"].read()


# ------------------------------------------------------------ uploads
def test_a_small_file_is_one_part_of_a_public_resource(site, org, tmp_path,
                                                        state_dir):
    ds = dataset(site, org, private=False)
    path, data = data_file(tmp_path, 1000)
    result = with_jobs(lambda: upload_file(
        site.url, org.editor.token, ds["name"], path, state_dir=state_dir,
        resource_fields={"description": "run 3"}))

    assert result.parts_sent == (1,)
    assert result.verified and result.recorded_sha256 == sha256(data)
    assert result.sha256 == sha256(data)
    res = fresh_resource(result.resource_id)
    assert res["package_id"] == ds["id"] and res["name"] == "cells.rtdc"
    assert res["description"] == "run 3" and res["size"] == 1000
    assert res["sha256"] == sha256(data)
    reply = anonymous_get(object_url(org.id, result.resource_id))
    assert reply.status_code == 200 and reply.content == data
    assert list(state_dir.iterdir()) == []  # nothing left to resume


def test_a_multipart_upload_of_a_private_dataset(site, org, tmp_path,
                                                 state_dir):
    ds = dataset(site, org, private=True)
    path, data = data_file(tmp_path, 12 * MiB + 7)
    seen: list[tuple[int, int]] = []
    result = upload_file(site.url, org.editor.token, ds["id"], path,
                         name="run.rtdc", parallel=3, verify=False,
                         state_dir=state_dir,
                         progress=lambda d, t: seen.append((d, t)))

    assert result.parts_sent == (1, 2, 3) and not result.verified
    assert result.resource["size"] == len(data)
    assert seen[-1] == (len(data), len(data))
    assert [d for d, _ in seen] == sorted(d for d, _ in seen)
    rid = result.resource_id
    assert anon_status(object_url(org.id, rid)) == 403
    assert stored_object(org, rid) == data
    assert open_uploads(org.bucket) == []
    # the SHA256 is recorded by a job: not there until it runs
    with pytest.raises(VerificationError, match="within 1 s"):
        verify_sha256(site.url, org.editor.token, rid, result.sha256,
                      timeout=1)
    run_jobs()
    shown = verify_sha256(site.url, org.editor.token, rid, result.sha256)
    assert shown["sha256"] == sha256(data) and shown["name"] == "run.rtdc"
    with pytest.raises(VerificationError, match="but the file has 000"):
        verify_sha256(site.url, org.editor.token, rid, "0" * 64)


def test_an_empty_file(site, org, tmp_path, state_dir):
    ds = dataset(site, org, private=False)
    path, _ = data_file(tmp_path, 0)
    result = with_jobs(lambda: upload_file(
        site.url, org.editor.token, ds["id"], path, state_dir=state_dir))
    assert result.parts_sent == (1,) and result.verified
    assert result.sha256 == sha256(b"")
    assert fresh_resource(result.resource_id)["size"] == 0
    reply = anonymous_get(object_url(org.id, result.resource_id))
    assert reply.status_code == 200 and reply.content == b""


# ----------------------------------------------------------- bad input
def test_a_missing_file_or_dataset_is_refused(site, org, tmp_path,
                                              state_dir):
    ds = dataset(site, org)
    with pytest.raises(ClientError, match="no such file"):
        upload_file(site.url, org.editor.token, ds["id"],
                    tmp_path / "missing.rtdc", state_dir=state_dir)
    with pytest.raises(ClientError, match="not a regular file"):
        upload_file(site.url, org.editor.token, ds["id"], tmp_path,
                    state_dir=state_dir)
    path, _ = data_file(tmp_path, 1000)
    with pytest.raises(ClientError) as info:
        upload_file(site.url, org.editor.token, "no-such-dataset", path,
                    state_dir=state_dir)
    assert info.value.status == 404
    assert "resource_upload_s3_urls failed (HTTP 404)" in str(info.value)
    assert fresh_dataset(ds["id"])["resources"] == []
    assert open_uploads(org.bucket) == []
    assert not state_dir.exists() or list(state_dir.iterdir()) == []


def test_a_changed_file_is_not_created(site, org, tmp_path, state_dir):
    ds = dataset(site, org)
    path, _ = data_file(tmp_path, 6 * MiB)
    changed = threading.Event()

    def append_once(done: int, total: int) -> None:
        if not changed.is_set():
            changed.set()
            with open(path, "ab") as fh:
                fh.write(b"more")
    with pytest.raises(ClientError, match="changed while it was uploaded"):
        upload_file(site.url, org.editor.token, ds["id"], path,
                    state_dir=state_dir, progress=append_once)
    assert fresh_dataset(ds["id"])["resources"] == []
    # The upload could go on (the site says so): it is never ended on
    # the client's guess, but left to expire.
    assert len(open_uploads(org.bucket)) == 1
    assert list(state_dir.iterdir()) == []


# ---------------------------------------------------------- the command
def test_the_command_uploads_and_verifies(site, org, tmp_path, state_dir):
    ds = dataset(site, org, private=False)
    path, data = data_file(tmp_path, 7 * MiB)
    done = run_command(command(
        "upload", "--site", site.url, "--dataset", ds["name"],
        "--state-dir", str(state_dir), "--field", "description=run 3",
        str(path)), client_env(DCOR_API_TOKEN=org.editor.token))

    assert done.returncode == 0, done.stderr
    line = done.stdout.strip()
    assert len(line.splitlines()) == 1
    assert line.startswith("created resource ")
    assert f"({path.name}, {len(data)} bytes) in dataset {ds['name']}: " \
           "2 part(s) sent; " in line
    assert line.endswith(f"sha256 {sha256(data)} verified")
    assert "7.0 / 7.0 MiB  100%" in done.stderr  # the progress
    [res] = fresh_dataset(ds["id"])["resources"]
    assert res["description"] == "run 3" and res["id"] in line
    assert anonymous_get(object_url(org.id, res["id"])).content == data


@pytest.mark.parametrize("who", ["wrong token", "member"])
def test_the_command_refuses_users_who_may_not_upload(site, org, tmp_path,
                                                      state_dir, who):
    ds = dataset(site, org)
    path, _ = data_file(tmp_path, 1000)
    token = "not-a-token" if who == "wrong token" else org.member.token
    done = run_command(command(
        "upload", "--site", site.url, "--token", token, "--dataset",
        ds["id"], "--state-dir", str(state_dir), str(path)), client_env())

    assert done.returncode == 1
    [message] = done.stderr.strip().splitlines()
    assert message.startswith("error: resource_upload_s3_urls failed "
                              "(HTTP 403)")
    assert done.stdout == ""
    assert fresh_dataset(ds["id"])["resources"] == []
    assert open_uploads(org.bucket) == []


def test_the_command_without_a_token_is_a_usage_error(site, tmp_path):
    path, _ = data_file(tmp_path, 10)
    done = subprocess.run(command("upload", "--site", site.url,
                                  "--dataset", "x", str(path)),
                          capture_output=True, text=True, env=client_env())
    assert done.returncode == 2 and "DCOR_API_TOKEN" in done.stderr


def test_a_killed_upload_is_resumed_without_resending_parts(
        site, org, tmp_path, state_dir):
    ds = dataset(site, org)
    path, data = data_file(tmp_path, 30 * MiB)  # 6 parts
    everything = set(range(1, 7))
    args = ["upload", "--site", site.url, "--dataset", ds["id"],
            "--state-dir", str(state_dir), "--no-verify", str(path)]
    env = client_env(DCOR_API_TOKEN=org.editor.token)
    first = subprocess.Popen(
        command(*args, "--parallel", "1", "--max-rate", "4M"),
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    try:
        state_file = wait_for(lambda: list(state_dir.glob("*.json")),
                              timeout=30, what="the state file")[0]
        rid = json.loads(state_file.read_text())["resource_id"]
        grant = upload_grants.load(rid)

        def stored() -> set[int]:
            return set(presigned.stored_parts(grant.bucket, grant.key,
                                              grant.upload_id))
        wait_for(lambda: len(stored()) >= 2, timeout=60,
                 what="two parts in the store")
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait(10)
    time.sleep(1)  # a part the store was still taking is in by now
    before = stored()
    assert 2 <= len(before) < 6  # killed half way

    second = run_command(command(*args, "--json"), env)
    assert second.returncode == 0, second.stderr
    result = json.loads(second.stdout)
    assert result["resource_id"] == rid and result["resumed"]
    assert not set(result["parts_sent"]) & before  # none sent twice
    assert set(result["parts_sent"]) | before == everything
    assert stored_object(org, rid) == data
    assert result["sha256"] == sha256(data)
    assert list(state_dir.glob("*.json")) == []


# --------------------------------------------------------------- faults
class BreakingSession(requests.Session):
    """A session that breaks the first ``count`` requests ``matching``
    with ``breaker(session, method, url, ...)`` (a real failure: a closed
    port, a bad signature, no answer)."""

    def __init__(self, matching: Callable[[str, str], bool],
                 breaker: Callable[..., Any], count: int = 1) -> None:
        super().__init__()
        self.matching = matching
        self.breaker = breaker
        self.left = count
        self.lock = threading.Lock()

    def request(self, method, url, *args, **kwargs):  # type: ignore[override]
        with self.lock:
            hit = self.left > 0 and self.matching(method.upper(), url)
            if hit:
                self.left -= 1
        if hit:
            return self.breaker(self, method, url, *args, **kwargs)
        return super().request(method, url, *args, **kwargs)


def is_part_put(method: str, url: str) -> bool:
    return method == "PUT" and "partNumber=" in url


def to_closed_port(session, method, url, *args, **kwargs):
    parts = urlsplit(url)
    closed = f"{parts.hostname}:{free_port()}"
    return requests.Session.request(
        session, method, urlunsplit(parts._replace(netloc=closed)),
        *args, **kwargs)


def with_bad_signature(session, method, url, *args, **kwargs):
    """As an expired URL: the store answers 403."""
    parts = urlsplit(url)
    query = [(k, "0" * len(v) if k in ("X-Amz-Signature", "Signature")
              else v) for k, v in parse_qsl(parts.query)]
    return requests.Session.request(
        session, method, urlunsplit(parts._replace(query=urlencode(query))),
        *args, **kwargs)


@pytest.mark.parametrize("fault, reason", [
    (to_closed_port, "Connection refused"),
    (with_bad_signature, "HTTP 403 from the store"),
])
def test_a_failed_part_is_sent_again(site, org, tmp_path, state_dir,
                                     caplog, fault, reason):
    ds = dataset(site, org)
    path, data = data_file(tmp_path, 12 * MiB + 7)
    session = BreakingSession(is_part_put, fault)
    result = upload_file(site.url, org.editor.token, ds["id"], path,
                         parallel=2, verify=False, state_dir=state_dir,
                         session=session)
    assert session.left == 0  # the fault happened
    assert "trying again" in caplog.text and reason in caplog.text
    assert result.parts_sent == (1, 2, 3)
    assert stored_object(org, result.resource_id) == data


def test_parts_failing_beyond_retries_fail_then_start_anew(
        site, org, tmp_path, state_dir, caplog):
    ds = dataset(site, org)
    path, data = data_file(tmp_path, 6 * MiB)
    session = BreakingSession(is_part_put, to_closed_port, count=99)
    with pytest.raises(ClientError, match="run again to resume"):
        upload_file(site.url, org.editor.token, ds["id"], path, retries=1,
                    state_dir=state_dir, session=session)
    [saved] = state_dir.glob("*.json")
    first_id = json.loads(saved.read_text())["resource_id"]
    # the upload is ended meanwhile (the user, or the store's lifecycle)
    site.action("resource_upload_s3_abort", org.editor.token,
                resource_id=first_id)

    result = upload_file(site.url, org.editor.token, ds["id"], path,
                         verify=False, state_dir=state_dir)
    assert "cannot be resumed" in caplog.text
    assert result.started_anew and result.resource_id != first_id
    assert result.parts_sent == (1, 2)
    assert stored_object(org, result.resource_id) == data


def is_creation(method: str, url: str) -> bool:
    return method == "POST" and url.endswith("/resource_create")


def refused_creation(session, method, url, *args, **kwargs):
    raise requests.ConnectionError("the site went away")


def lost_answer(session, method, url, *args, **kwargs):
    requests.Session.request(session, method, url, *args, **kwargs)
    raise requests.ConnectionError("the answer was lost")


@pytest.mark.parametrize("fault", [refused_creation, lost_answer])
def test_a_failed_creation_is_finished_by_the_next_run(
        site, org, tmp_path, state_dir, fault):
    ds = dataset(site, org)
    path, data = data_file(tmp_path, 6 * MiB)
    session = BreakingSession(is_creation, fault)
    with pytest.raises(ClientError, match="cannot reach"):
        upload_file(site.url, org.editor.token, ds["id"], path, retries=0,
                    verify=False, state_dir=state_dir, session=session)

    again = upload_file(site.url, org.editor.token, ds["id"], path,
                        verify=False, state_dir=state_dir)
    assert again.resumed and again.parts_sent == ()  # nothing resent
    assert [r["id"] for r in fresh_dataset(ds["id"])["resources"]] \
        == [again.resource_id]
    assert stored_object(org, again.resource_id) == data
    assert list(state_dir.iterdir()) == []


def test_a_lost_answer_of_the_creation_is_found_by_the_retry(
        site, org, tmp_path, state_dir):
    ds = dataset(site, org)
    path, data = data_file(tmp_path, 1000)
    session = BreakingSession(is_creation, lost_answer)
    result = upload_file(site.url, org.editor.token, ds["id"], path,
                         verify=False, state_dir=state_dir, session=session)
    assert session.left == 0
    assert [r["id"] for r in fresh_dataset(ds["id"])["resources"]] \
        == [result.resource_id]
    assert stored_object(org, result.resource_id) == data


def test_a_created_resource_is_found_by_a_run_that_remembered_it(
        site, org, tmp_path, state_dir):
    # A run killed after the creation, before it forgot the upload: the
    # next run finds the resource instead of uploading a second copy.
    from ckanext.dcor_depot.client import state as states
    ds = dataset(site, org)
    path, _ = data_file(tmp_path, 1000)
    first = upload_file(site.url, org.editor.token, ds["id"], path,
                        verify=False, state_dir=state_dir)
    states.save(state_dir, states.UploadState.for_file(
        site.url, ds["id"], states.FileIdentity.of(path),
        resource_id=first.resource_id))

    again = upload_file(site.url, org.editor.token, ds["id"], path,
                        verify=False, state_dir=state_dir)
    assert again.resource_id == first.resource_id
    assert again.parts_sent == ()
    assert [r["id"] for r in fresh_dataset(ds["id"])["resources"]] \
        == [first.resource_id]
    assert open_uploads(org.bucket) == []
    assert list(state_dir.iterdir()) == []


def sent_but_not_created(site, org, tmp_path, state_dir):
    """An upload whose parts are all sent and whose creation the site
    refused: the dataset, the file, its bytes and the saved upload id."""
    ds = dataset(site, org)
    path, data = data_file(tmp_path, 6 * MiB)
    session = BreakingSession(is_creation, refused_creation)
    with pytest.raises(ClientError):
        upload_file(site.url, org.editor.token, ds["id"], path, retries=0,
                    verify=False, state_dir=state_dir, session=session)
    saved, = state_dir.iterdir()
    return ds, path, data, json.loads(saved.read_text())["resource_id"]


def test_an_upload_in_use_is_not_started_anew(site, org, tmp_path,
                                              state_dir):
    ds, path, data, rid = sent_but_not_created(site, org, tmp_path,
                                               state_dir)
    saved, = state_dir.iterdir()
    # another request (an earlier run still creating it) holds the upload
    with upload_grants.claimed(rid), \
            pytest.raises(ClientError, match="in use by another request"):
        upload_file(site.url, org.editor.token, ds["id"], path, retries=0,
                    verify=False, state_dir=state_dir)
    assert [f.name for f in state_dir.iterdir()] == [saved.name]  # kept
    assert fresh_dataset(ds["id"])["resources"] == []
    assert len(open_uploads(org.bucket)) == 1  # no second upload begun

    again = upload_file(site.url, org.editor.token, ds["id"], path,
                        verify=False, state_dir=state_dir)
    assert again.resource_id == rid and again.parts_sent == ()
    assert stored_object(org, rid) == data


def test_a_state_folder_of_another_user_is_refused(site, org, tmp_path):
    shared = tmp_path / "shared"
    shared.mkdir()
    os.chown(shared, 12345, 12345)
    path, _ = data_file(tmp_path, 1000)
    with pytest.raises(ClientError, match="belongs to another user"):
        upload_file(site.url, org.editor.token, dataset(site, org)["id"],
                    path, verify=False, state_dir=shared)


# ------------------------------------------- ending uploads: only our own
class RecordingSession(requests.Session):
    """Notes the actions it posts."""

    def __init__(self) -> None:
        super().__init__()
        self.actions: list[str] = []

    def request(self, method, url, *args, **kwargs):  # type: ignore[override]
        if "/api/3/action/" in url:
            self.actions.append(url.rsplit("/", 1)[-1])
        return super().request(method, url, *args, **kwargs)


@pytest.mark.parametrize("who", ["sysadmin", "org_admin"])
def test_the_client_never_ends_another_users_upload(site, org, tmp_path,
                                                    state_dir, who):
    ds = dataset(site, org)
    path, data = data_file(tmp_path, 6 * MiB)
    issued = site.action("resource_upload_s3_urls", org.editor.token,
                         package_id=ds["id"], name=path.name,
                         size=len(data))
    rid = issued["resource_id"]
    assert requests.put(issued["parts"][0]["url"], data=data[:5 * MiB],
                        timeout=60).status_code == 200
    # A state file naming the editor's upload, in the runner's folder.
    states.save(state_dir, states.UploadState.for_file(
        site.url, ds["id"], states.FileIdentity.of(path), rid))
    runner = person(sysadmin=True) if who == "sysadmin" else org.admin

    session = RecordingSession()
    result = upload_file(site.url, runner.token, ds["id"], path,
                         verify=False, state_dir=state_dir, session=session)
    assert result.started_anew and result.resource_id != rid
    assert "resource_upload_s3_abort" not in session.actions
    # The editor's upload is as it was, and goes on.
    assert upload_grants.load(rid) is not None
    again = site.action("resource_upload_s3_urls", org.editor.token,
                        package_id=ds["id"], name=path.name,
                        size=len(data), resource_id=rid)
    assert again["complete_parts"] == [1]


def test_the_client_ends_its_own_upload_the_store_lost(
        site, org, tmp_path, state_dir):
    ds, path, data, first_id = sent_but_not_created(site, org, tmp_path,
                                                    state_dir)
    grant = upload_grants.load(first_id)
    # the store ended it (its lifecycle rule): it cannot go on
    object_store.get_client().abort_multipart_upload(
        Bucket=org.bucket, Key=layout.object_key(first_id),
        UploadId=grant.upload_id)

    result = upload_file(site.url, org.editor.token, ds["id"], path,
                         verify=False, state_dir=state_dir)
    assert result.started_anew and result.resource_id != first_id
    assert upload_grants.load(first_id) is None  # ended: not open any more
    assert stored_object(org, result.resource_id) == data
