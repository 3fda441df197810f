"""Sending parts: each part's bytes, read from the file as they go out,
PUT to its presigned URL; several parts at once."""
from __future__ import annotations

import hashlib
import re
import threading
import time
from collections.abc import Iterator
from concurrent.futures import (
    FIRST_COMPLETED,
    Future,
    ThreadPoolExecutor,
    wait,
)
from dataclasses import dataclass, field
from typing import Any, BinaryIO

import requests

from ckanext.dcor_depot.client.progress import Tracker

#: Bytes read from the file at a time while a part is sent.
READ_SIZE = 1 << 16

#: Seconds to connect to the store, and to wait for its answer.
PUT_TIMEOUT = (15, 300)


@dataclass(frozen=True)
class Part:
    """One part to send: ``size`` bytes from ``offset`` of the file."""
    number: int
    size: int
    url: str
    offset: int


def part_offset(number: int, part_size: int) -> int:
    """Where part ``number`` (1-based) starts in the file."""
    if number < 1:
        raise ValueError(f"part numbers start at 1, not {number}")
    return (number - 1) * part_size


def parts_of(issued: dict[str, Any]) -> list[Part]:
    """The parts an answer of ``resource_upload_s3_urls`` asks for."""
    part_size = int(issued["part_size"])
    return [Part(int(p["part_number"]), int(p["size"]), str(p["url"]),
                 part_offset(int(p["part_number"]), part_size))
            for p in issued["parts"]]


class PartBody:
    """A part's bytes as a file-like body for ``requests``: read from the
    file while they are sent (never the whole part in memory), counted
    by the tracker. Its length gives the Content-Length the store needs.
    """

    def __init__(self, fh: BinaryIO, part: Part, tracker: Tracker) -> None:
        self._fh = fh
        self._left = part.size
        self._tracker = tracker
        self.read_bytes = 0
        fh.seek(part.offset)

    def __len__(self) -> int:
        return self._left

    def read(self, size: int = -1) -> bytes:
        want = self._left if size is None or size < 0 else min(size,
                                                                 self._left)
        data = self._fh.read(min(want, READ_SIZE)) if want else b""
        if want and not data:
            raise OSError("the file ended before the part did: was it "
                          "changed while it was uploaded?")
        self._left -= len(data)
        self.read_bytes += len(data)
        self._tracker.add(len(data))
        return data

    def __iter__(self) -> Iterator[bytes]:
        while chunk := self.read(READ_SIZE):
            yield chunk


@dataclass
class RoundOutcome:
    """What one round of sending did."""
    sent: list[int] = field(default_factory=list)
    #: part number -> why it failed
    failed: dict[int, str] = field(default_factory=dict)
    #: parts not started because their URLs were about to expire
    not_started: list[int] = field(default_factory=list)


def send_part(session: requests.Session, path: str, part: Part,
              tracker: Tracker) -> None:
    """PUT one part; OSError or requests' errors when it did not arrive."""
    with open(path, "rb") as fh:
        body = PartBody(fh, part, tracker)
        try:
            # An empty part is b"": requests would send a stream of
            # length 0 chunked, which the store refuses.
            resp = session.put(part.url, data=body if part.size else b"",
                               timeout=PUT_TIMEOUT)
            resp.close()
        except BaseException:
            tracker.take_back(body.read_bytes)
            raise
    if not resp.ok:
        tracker.take_back(body.read_bytes)
        raise PartRefused(f"HTTP {resp.status_code} from the store"
                          + (" (URL expired?)" if resp.status_code == 403
                             else ""))


class PartRefused(Exception):
    """The store answered a part's PUT with an error."""


def send_round(session: requests.Session, path: str, parts: list[Part],
               tracker: Tracker, parallel: int,
               start_before: float | None = None) -> RoundOutcome:
    """Send ``parts``, ``parallel`` at a time, each once.

    No part starts after ``start_before`` (``time.monotonic()``): its URL
    might expire on the way. The caller retries what failed.
    """
    outcome = RoundOutcome()
    waiting = list(reversed(parts))
    running: dict[Future[None], Part] = {}
    pool = ThreadPoolExecutor(max(1, parallel))
    try:
        while waiting or running:
            while waiting and len(running) < parallel:
                if start_before is not None \
                        and time.monotonic() > start_before:
                    outcome.not_started = sorted(p.number for p in waiting)
                    waiting.clear()
                    break
                part = waiting.pop()
                running[pool.submit(send_part, session, path, part,
                                    tracker)] = part
            if not running:
                break
            finished, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in finished:
                _note(outcome, running.pop(future), future)
    finally:
        # Interrupted: parts not begun stay unsent (a resume sends them)
        # and nothing waits for those on their way.
        pool.shutdown(wait=not running, cancel_futures=True)
    outcome.sent.sort()
    return outcome


def _note(outcome: RoundOutcome, part: Part, future: Future[None]) -> None:
    error = future.exception()
    if error is None:
        outcome.sent.append(part.number)
    elif isinstance(error, (requests.RequestException, PartRefused,
                            OSError)):
        outcome.failed[part.number] = without_query(
            str(error) or type(error).__name__)
    else:
        raise error


_QUERY = re.compile(r"\?[^\s'\")]*")


def without_query(text: str) -> str:
    """An error text without the query strings of URLs in it: a part
    URL's query is its signature, a credential for hours."""
    return _QUERY.sub("?…", text)


def file_sha256(path: str, stop: threading.Event | None = None,
                chunk: int = 1 << 20) -> str | None:
    """The SHA256 of a file, read in chunks; None if ``stop`` was set."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            if stop is not None and stop.is_set():
                return None
            digest.update(block)
    return digest.hexdigest()
