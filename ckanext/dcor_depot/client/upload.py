"""Upload a file as a new resource through the direct-upload route.

1. ``resource_upload_s3_urls`` gives a resource id and presigned URLs of
   the parts (on a resume: only of those the store lacks);
2. the parts go straight to the object store, several at once; parts
   that fail are tried again with fresh URLs;
3. ``resource_create`` (``url_type: s3_upload``) makes the resource;
4. the site's background job records the object's SHA256, which is
   compared with the one computed here.

Which upload a file belongs to is kept in a state file (:mod:`.state`)
from before the first part is sent until the resource exists, so a run
that was killed is resumed by the next one without resending any part
the store holds.
"""
from __future__ import annotations

import dataclasses
import datetime
import logging
import os
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests
from requests.adapters import HTTPAdapter

from ckanext.dcor_depot.client import state as states
from ckanext.dcor_depot.client.api import Api, ClientError, backoff
from ckanext.dcor_depot.client.progress import ProgressCallback, Tracker
from ckanext.dcor_depot.client.transfer import (
    file_sha256,
    parts_of,
    send_round,
)

log = logging.getLogger(__name__)

#: Seconds before a URL's expiry after which no part is started with it
#: (room for clocks that differ a little).
EXPIRY_MARGIN = 60.0


#: How the site says another request holds an upload (a 409).
BUSY_TEXT = "in use by another request"


@dataclass(frozen=True)
class UploadResult:
    """What an upload did."""
    resource_id: str
    #: the resource as the site shows it at the end
    resource: dict[str, Any]
    size: int
    #: SHA256 of the local file
    sha256: str
    #: SHA256 the site recorded (None when not verified)
    recorded_sha256: str | None
    verified: bool
    #: part numbers this run sent (a resumed run sends only the others)
    parts_sent: tuple[int, ...]
    #: an earlier, interrupted upload of this file was continued
    resumed: bool = False
    #: an earlier upload could not be continued: this one started anew
    started_anew: bool = False


class VerificationError(ClientError):
    """The resource exists, but its SHA256 did not match or was not
    recorded in time."""

    def __init__(self, message: str, resource_id: str) -> None:
        super().__init__(message)
        self.resource_id = resource_id


@dataclass(frozen=True)
class _Start:
    resource_id: str
    #: the answer of resource_upload_s3_urls; None: nothing to send
    issued: dict[str, Any] | None
    resumed: bool = False
    started_anew: bool = False
    #: the resource, when an earlier run created it already
    created: dict[str, Any] | None = None


def upload_file(site: str, token: str | None, dataset: str,
                path: str | os.PathLike[str], *, name: str | None = None,
                resource_fields: dict[str, Any] | None = None,
                parallel: int = 4, retries: int = 5, verify: bool = True,
                sha256_timeout: float = 600.0,
                state_dir: str | os.PathLike[str] | None = None,
                progress: ProgressCallback | None = None,
                max_rate: float | None = None,
                session: requests.Session | None = None) -> UploadResult:
    """Upload ``path`` as a new resource of ``dataset`` (id or name).

    :param site: the CKAN site, e.g. ``https://dcor.example.org``
    :param token: an API token of a user who may add resources
    :param name: the resource's name (default: the file's name)
    :param resource_fields: more fields of the resource (description...)
    :param parallel: parts sent at the same time
    :param retries: how often failed parts are tried again (with fresh
        URLs, after a growing pause)
    :param verify: wait until the site recorded the object's SHA256 and
        compare it with the file's (:class:`VerificationError`)
    :param sha256_timeout: seconds to wait for that
    :param state_dir: where interrupted uploads are remembered
    :param progress: ``callback(done_bytes, total_bytes)``
    :param max_rate: bytes per second at most (None: no limit)
    :param session: a ``requests.Session`` to send everything with
    :raises ClientError: with the reason in one line
    """
    if parallel < 1 or retries < 0:
        raise ValueError("parallel must be at least 1, retries at least 0")
    with _session(session, parallel) as http:
        upload = _Upload(Api(site, token, http, retries), dataset,
                         Path(path), _Options(
                             name=name, fields=dict(resource_fields or {}),
                             parallel=parallel, progress=progress,
                             max_rate=max_rate,
                             state_dir=Path(state_dir) if state_dir
                             is not None else states.default_state_dir()))
        result = upload.run()
        if not verify:
            return result
        resource = _wait_for_sha256(upload.api, result.resource_id,
                                    result.sha256, sha256_timeout)
        return dataclasses.replace(result, resource=resource, verified=True,
                                   recorded_sha256=resource["sha256"])


def verify_sha256(site: str, token: str | None, resource_id: str,
                  expected: str, *, timeout: float = 600.0,
                  session: requests.Session | None = None
                  ) -> dict[str, Any]:
    """Wait until the site recorded the resource's SHA256; the resource
    if it is ``expected``, VerificationError otherwise."""
    with _session(session, 1) as http:
        return _wait_for_sha256(Api(site, token, http), resource_id,
                                expected, timeout)


@contextmanager
def _session(given: requests.Session | None,
             parallel: int) -> Iterator[requests.Session]:
    if given is not None:
        yield given
        return
    with requests.Session() as session:
        # One kept connection per sending thread.
        adapter = HTTPAdapter(pool_maxsize=max(10, parallel))
        session.mount("http://", adapter)
        session.mount("https://", adapter)
        yield session


def _wait_for_sha256(api: Api, resource_id: str, expected: str,
                     timeout: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    pause = 0.5
    while True:
        resource = api.call("resource_show", id=resource_id)
        recorded = resource.get("sha256")
        if recorded:
            if recorded != expected:
                raise VerificationError(
                    f"the site recorded SHA256 {recorded} for resource "
                    f"{resource_id}, but the file has {expected}",
                    resource_id)
            return resource
        left = deadline - time.monotonic()
        if left <= 0:
            raise VerificationError(
                f"resource {resource_id} was created, but the site did "
                f"not record its SHA256 within {timeout:g} s (are its "
                "background jobs running?); check later with the verify "
                "command", resource_id)
        time.sleep(min(pause, left))
        pause = min(5.0, pause * 1.5)


def _expires_in(issued: dict[str, Any]) -> float | None:
    """Seconds until the issued URLs expire (None: not known)."""
    try:
        expires = datetime.datetime.fromisoformat(str(issued["expires"]))
    except (KeyError, ValueError):
        return None
    if expires.tzinfo is None:
        return None
    now = datetime.datetime.now(datetime.timezone.utc)
    return (expires - now).total_seconds()


@dataclass(frozen=True)
class _Options:
    name: str | None
    fields: dict[str, Any]
    parallel: int
    state_dir: Path
    progress: ProgressCallback | None
    max_rate: float | None


class _Upload:
    """One run of an upload of one file."""

    def __init__(self, api: Api, dataset: str, path: Path,
                 options: _Options) -> None:
        if not path.is_file():
            raise ClientError(f"{path}: no such file" if not path.exists()
                              else f"{path}: not a regular file")
        self.api = api
        self.dataset = dataset
        self._known_dataset_id: str | None = None
        self.path = path
        self.identity = states.FileIdentity.of(path)
        self.name = options.name or path.name
        self.fields = options.fields
        self.parallel = options.parallel
        self.progress = options.progress
        self.max_rate = options.max_rate
        self.state_dir = options.state_dir
        self.state = states.UploadState.for_file(api.site, dataset,
                                                 self.identity)

    @property
    def size(self) -> int:
        return self.identity.size

    def run(self) -> UploadResult:
        """Send, create; the SHA256 of the file is read meanwhile."""
        stop = threading.Event()
        hashing = ThreadPoolExecutor(1)
        local_sha256 = hashing.submit(file_sha256, str(self.path), stop)
        try:
            start = self._begin()
            sent: list[int] = []
            resource = start.created
            if resource is None:
                if start.issued is not None:
                    sent = self._send_all(start.issued)
                self._check_unchanged(start.resource_id)
                resource = self._create(start.resource_id)
            states.delete(self.state_dir, self.state)
            sha256 = local_sha256.result()
        finally:
            stop.set()
            hashing.shutdown(wait=False)
        assert sha256 is not None
        return UploadResult(
            resource_id=start.resource_id, resource=resource,
            size=self.size, sha256=sha256, recorded_sha256=None,
            verified=False, parts_sent=tuple(sent), resumed=start.resumed,
            started_anew=start.started_anew)

    # ------------------------------------------------------- beginning
    def _begin(self) -> _Start:
        """Resume the saved upload of this file, or start one."""
        saved = states.load(self.state_dir, self.state)
        started_anew = False
        if saved is not None:
            resumed = self._resume(saved.resource_id)
            if resumed is not None:
                return resumed
            started_anew = True
        issued = self._urls()
        self.state = dataclasses.replace(
            self.state, resource_id=issued["resource_id"])
        # Before the first part: a run killed from now on is resumed.
        states.save(self.state_dir, self.state)
        return _Start(issued["resource_id"], issued,
                      started_anew=started_anew)

    def _resume(self, resource_id: str) -> _Start | None:
        """The saved upload continued; None if it cannot be."""
        self.state = dataclasses.replace(self.state, resource_id=resource_id)
        try:
            issued = self._urls(resource_id)
        except ClientError as exc:
            if exc.status != 409:
                raise
            if exc.mentions(BUSY_TEXT):
                # Perhaps an earlier run still creating the resource:
                # starting anew would make a second one.
                raise ClientError(
                    f"the upload of {self.path} begun earlier is in use "
                    "by another request; run again in a moment to resume "
                    "it", exc.status) from exc
            # An earlier run created the resource, but was stopped before
            # it could forget the upload.
            created = self._existing(resource_id)
            if created is not None:
                return _Start(resource_id, None, resumed=True,
                              created=created)
            if exc.mentions("is complete", "upload"):
                return _Start(resource_id, None, resumed=True)
            log.warning("The upload of %s begun earlier cannot be resumed "
                        "(%s); starting anew.", self.path, exc)
            self._abort_quietly(resource_id)
            states.delete(self.state_dir, self.state)
            return None
        return _Start(resource_id, issued, resumed=True)

    def _urls(self, resource_id: str | None = None) -> dict[str, Any]:
        resume = {"resource_id": resource_id} if resource_id else {}
        issued: dict[str, Any] = self.api.call(
            "resource_upload_s3_urls", package_id=self.dataset,
            name=self.name, size=self.size, **resume)
        return issued

    # --------------------------------------------------------- sending
    def _send_all(self, issued: dict[str, Any]) -> list[int]:
        """Send every part the store lacks; the numbers of those sent."""
        tracker = Tracker(self.size, self.progress, self.max_rate)
        sent: list[int] = []
        failed_rounds = 0
        while True:
            parts = parts_of(issued)
            tracker.set_done(self.size - sum(p.size for p in parts))
            if not parts:
                return sorted(sent)
            expires_in = _expires_in(issued)
            start_before = None if expires_in is None else (
                time.monotonic() + max(30.0, expires_in - EXPIRY_MARGIN))
            outcome = send_round(self.api.session, str(self.path), parts,
                                 tracker, self.parallel, start_before)
            sent += outcome.sent
            if outcome.failed:
                numbers = sorted(outcome.failed)
                reason = outcome.failed[numbers[0]]
                if failed_rounds >= self.api.retries:
                    raise ClientError(
                        f"parts {numbers} of {self.path} could not be sent "
                        f"({reason}); run again to resume the upload")
                log.warning("Parts %s failed (%s); trying again.", numbers,
                            reason)
                time.sleep(backoff(failed_rounds))
                failed_rounds += 1
            elif not outcome.not_started:
                return sorted(sent)
            # Fresh URLs (also for expired ones) of what is still missing.
            issued = self._urls(issued["resource_id"])

    # -------------------------------------------------------- the end
    def _check_unchanged(self, resource_id: str) -> None:
        if states.FileIdentity.of(self.path) != self.identity:
            self._abort_quietly(resource_id)
            states.delete(self.state_dir, self.state)
            raise ClientError(f"{self.path} changed while it was uploaded; "
                              "nothing was created: run again to upload "
                              "it as it is now")

    def _create(self, resource_id: str) -> dict[str, Any]:
        fields = {**self.fields, "package_id": self.dataset,
                  "id": resource_id, "url_type": "s3_upload",
                  "name": self.name}
        try:
            created: dict[str, Any] = self.api.call("resource_create",
                                                    **fields)
            return created
        except ClientError as exc:
            # A creation whose answer was lost, tried again: the upload
            # is used up, and the resource is there.
            if exc.status == 409 and exc.mentions("no upload"):
                existing = self._existing(resource_id)
                if existing is not None:
                    return existing
            raise

    def _existing(self, resource_id: str) -> dict[str, Any] | None:
        """The resource an earlier request created (None: there is none
        of this file)."""
        try:
            resource: dict[str, Any] = self.api.call("resource_show",
                                                     id=resource_id)
        except ClientError as exc:
            if exc.status in (403, 404):
                return None
            raise
        if resource.get("size") != self.size \
                or resource.get("url_type") != "s3_upload" \
                or resource.get("package_id") != self._dataset_id():
            return None
        return resource

    def _dataset_id(self) -> str:
        """The dataset's id (the user may have named it)."""
        if self._known_dataset_id is None:
            dataset = self.api.call("package_show", id=self.dataset)
            self._known_dataset_id = str(dataset["id"])
        return self._known_dataset_id

    def _abort_quietly(self, resource_id: str) -> None:
        """End an upload that will not be used, if the site says it is
        ours and dead (:func:`may_abort`); otherwise it is left alone (the
        store aborts forgotten uploads itself, in days)."""
        try:
            status = self.api.call("resource_upload_s3_status",
                                   resource_id=resource_id)
        except ClientError as exc:
            # Unknown to the site, not ours, or a site without the
            # status action: nothing is ended on a guess.
            log.debug("Upload %s left as it is: %s", resource_id, exc)
            return
        if not may_abort(status):
            log.debug("Upload %s left as it is: %s", resource_id, status)
            return
        try:
            self.api.call("resource_upload_s3_abort",
                          resource_id=resource_id)
        except ClientError as exc:
            log.debug("Upload %s not aborted: %s", resource_id, exc)


def may_abort(status: Any) -> bool:
    """Whether ``resource_upload_s3_status``'s answer lets the client end
    the upload: issued to the acting user, and expired or not resumable.
    Anything else (another user's upload, one still going, an answer it
    does not understand) is never ended."""
    if not isinstance(status, dict) or status.get("issued_to_you") is not True:
        return False
    return status.get("expired") is True or status.get("resumable") is False
