"""Progress of an upload: bytes counted as parts are read for sending,
reported to a callback, optionally held to a maximum rate; and the
progress line the command prints on stderr."""
from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable
from typing import TextIO

#: ``callback(done, total)``: bytes in the store (or on their way there)
#: and the file's size. Called from the threads that send parts, one call
#: at a time: keep it short.
ProgressCallback = Callable[[int, int], None]


class Tracker:
    """Thread-safe count of the bytes of an upload.

    ``done`` starts at what the store already holds (a resumed upload);
    bytes of a part that failed are taken back. With ``max_rate`` (bytes
    per second) the senders are slowed down to that rate on average.
    """

    def __init__(self, total: int, callback: ProgressCallback | None = None,
                 max_rate: float | None = None,
                 clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.total = total
        self.done = 0
        self._callback = callback
        self._max_rate = max_rate
        self._clock, self._sleep = clock, sleep
        self._lock = threading.Lock()
        self._sent = 0  # bytes this run read for sending
        self._started = clock()

    def set_done(self, done: int) -> None:
        """What the store holds (known anew when URLs are issued)."""
        with self._lock:
            self.done = done
            self._report()

    def add(self, count: int) -> None:
        with self._lock:
            self.done += count
            self._sent += count
            ahead = (self._sent / self._max_rate
                     - (self._clock() - self._started)
                     if self._max_rate else 0.0)
            self._report()
        if ahead > 0:
            self._sleep(ahead)

    def take_back(self, count: int) -> None:
        with self._lock:
            self.done -= count
            self._report()

    def _report(self) -> None:
        # Under the lock: the callback sees the counts in order.
        if self._callback is not None:
            self._callback(self.done, self.total)


class ProgressLine:
    """``12.0 / 30.0 MiB  40%  8.1 MB/s`` on ``stream``.

    On a terminal the line is redrawn in place; elsewhere (a log, a
    pipe) a line is written every ``interval`` seconds and at the end.
    The rate counts bytes sent by this run only.
    """

    def __init__(self, stream: TextIO | None = None,
                 interval: float | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.terminal = self.stream.isatty()
        self.interval = interval if interval is not None else (
            0.2 if self.terminal else 2.0)
        self._clock = clock
        self._lock = threading.Lock()
        self._first: tuple[float, int] | None = None
        # None: the first call is shown whatever the clock's origin.
        self._last_shown: float | None = None
        self._shown_any = False
        self._last_done: int | None = None

    def __call__(self, done: int, total: int) -> None:
        now = self._clock()
        with self._lock:
            if self._first is None:
                self._first = (now, done)
            if (self._last_shown is not None
                    and now - self._last_shown < self.interval
                    and done != total):
                return
            if done != self._last_done:
                self._last_shown = now
                self._last_done = done
                self._write(self._text(now, done, total))

    def close(self) -> None:
        """End the redrawn line (on a terminal)."""
        with self._lock:
            if self.terminal and self._shown_any:
                self.stream.write("\n")
                self.stream.flush()

    def _text(self, now: float, done: int, total: int) -> str:
        start, first_done = self._first or (now, done)
        elapsed = max(now - start, 1e-6)
        rate = (done - first_done) / elapsed / 1e6
        percent = 100.0 * done / total if total else 100.0
        return (f"{done / 2**20:.1f} / {total / 2**20:.1f} MiB  "
                f"{percent:3.0f}%  {rate:.1f} MB/s")

    def _write(self, text: str) -> None:
        self._shown_any = True
        if self.terminal:
            self.stream.write("\r" + text.ljust(40))
        else:
            self.stream.write(text + "\n")
        self.stream.flush()
