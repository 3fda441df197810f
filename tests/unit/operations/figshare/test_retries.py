"""figshare requests are retried on transient failures only (no HTTP)."""
from __future__ import annotations

import pytest

from ckanext.dcor_depot import errors
from ckanext.dcor_depot.operations.figshare import client


@pytest.fixture(autouse=True)
def no_waiting(monkeypatch):
    monkeypatch.setattr(client, "BACKOFF_BASE", 0.0)


def test_transient_failures_are_retried_until_one_succeeds():
    calls = []

    def attempt():
        calls.append(1)
        if len(calls) < 3:
            raise errors.SourceError("HTTP 503 from u",
                                     code=client.TRANSIENT)
        return "record"

    assert client._with_retries("reading a", attempt) == "record"
    assert len(calls) == 3


def test_retries_are_bounded():
    def attempt():
        raise errors.SourceError("HTTP 503 from u", code=client.TRANSIENT)

    with pytest.raises(errors.SourceError) as info:
        client._with_retries("reading a", attempt)
    assert str(info.value) == (f"reading a failed {client.ATTEMPTS} times; "
                               "last error: HTTP 503 from u")
    assert info.value.code is None


def test_other_failures_are_not_retried():
    calls = []

    def attempt():
        calls.append(1)
        raise errors.SourceError("a: not found (HTTP 404 from u)")

    with pytest.raises(errors.SourceError, match="HTTP 404"):
        client._with_retries("reading a", attempt)
    assert len(calls) == 1
