"""The plugin's exceptions: one tree, told apart by class and ``code``.

Every failure the plugin expects is a :class:`DcorDepotError` (commands
and jobs report its message as one line)::

    DcorDepotError          an expected failure; .code says which, if needed
    ├── StoreError          the object store failed or refused a request, or
    │   │                   holds other data than were sent or recorded
    │   ├── NotFound        no such object, bucket or upload (any more)
    │   └── Busy            another request or process holds it: try later
    ├── LocalFileError      a file on block storage cannot be used as planned
    └── SourceError         bad input from outside: figshare, a file given
                            to a command, an RT-DC file, a direct upload's
                            request

``code`` is the store's error code (``NoSuchKey``, ``AccessDenied``, ...)
when the store answered one, a code of the plugin's (below), or None.
Decisions are taken on class and code, never on message text. Boto's
errors never leave ``storage/``: they become :class:`StoreError` in
``storage.object_store``.
"""
from __future__ import annotations

#: ``code`` of data that are not what was sent or recorded (a checksum,
#: ETag or size differs; a file changed while it was read).
MISMATCH = "Mismatch"
#: ``code`` of a request for the object store on a site without one.
NOT_CONFIGURED = "NotConfigured"


class DcorDepotError(Exception):
    """An expected failure of the plugin; the message is one line."""

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        self.code = code


class StoreError(DcorDepotError):
    """The object store failed or refused a request; the message says how."""


class NotFound(StoreError):
    """The store has no such object, bucket or upload (any more)."""


class Busy(StoreError):
    """Another request or process holds what is needed (an upload's
    claim, a dataset's move); the same request works later."""


class LocalFileError(DcorDepotError):
    """A local file cannot be used as planned; the message names it."""


class SourceError(DcorDepotError):
    """An outside source of data is unusable; the message says why."""
