"""The plugin's exceptions: one base class, store errors apart from errors
of local files.

Every failure the plugin expects is a :class:`DcorDepotError` (commands and
jobs report its message as one line); what went wrong tells the class:

- :class:`StoreError`: the object store failed, refused a request, or
  holds data that are not what was sent or recorded;
- :class:`LocalFileError`: a file on block storage cannot be read,
  written, moved or linked, or is not what it should be;
- :class:`SourceError`: an outside source (figshare, a file given to a
  command) is unusable.

The modules that raise them keep their own names for them (for example
``object_store.ObjectStoreError`` is :class:`StoreError`).
"""
from __future__ import annotations


class DcorDepotError(Exception):
    """An expected failure of the plugin; the message is one line."""


class StoreError(DcorDepotError):
    """The object store failed or refused a request; the message says how."""


class LocalFileError(DcorDepotError):
    """A local file cannot be used as planned; the message names it."""


class SourceError(DcorDepotError):
    """An outside source of data is unusable; the message says why."""
