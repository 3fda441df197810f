"""The site's action API, as the client needs it: ``requests`` only.

Every answer that is not a success becomes a :class:`ClientError` with
the server's own words. Failures that may pass (no connection, a 5xx, an
upload busy with another request) are tried again a few times.
"""
from __future__ import annotations

import time
from typing import Any

import requests

#: Seconds to wait for an action's answer (completing the upload of a
#: large file takes the store a while).
ACTION_TIMEOUT = (15, 900)

#: What the plugin says when another request holds the upload.
BUSY_TEXT = "in use by another request"


class ClientError(Exception):
    """An upload failed; the message says why in one line.

    ``status`` is the HTTP status of the site's answer (None when there
    was none) and ``error`` CKAN's error dict (field -> messages).
    """

    def __init__(self, message: str, status: int | None = None,
                 error: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.error = error or {}

    def mentions(self, text: str, field: str | None = None) -> bool:
        """Whether the server's messages (of ``field``) contain ``text``."""
        items = (self.error.items() if field is None
                 else [(field, self.error.get(field))])
        return any(text in str(value) for key, value in items
                   if key != "__type")


def backoff(attempt: int) -> float:
    """Seconds before try ``attempt + 1``: 0.5, 1, 2, ... at most 15."""
    return float(min(15.0, 0.5 * 2 ** attempt))


def describe_error(action: str, status: int, error: dict[str, Any]) -> str:
    """One line from CKAN's error dict."""
    if error.get("message"):
        text = str(error["message"])
    else:
        text = "; ".join(f"{key}: {_joined(value)}"
                         for key, value in error.items() if key != "__type")
    if "Action name not known" in text:
        text += (" (the site does not offer direct uploads: is "
                 "ckanext-dcor_depot installed there?)")
    return f"{action} failed (HTTP {status}): {text or 'no reason given'}"


def _joined(value: Any) -> str:
    if isinstance(value, list):
        return " ".join(map(str, value))
    return str(value)


class Api:
    """POST actions to ``{site}/api/3/action/`` with an API token."""

    def __init__(self, site: str, token: str | None,
                 session: requests.Session, retries: int = 5) -> None:
        self.site = site.rstrip("/")
        self.token = token
        self.session = session
        self.retries = retries

    def call(self, action: str, **data: Any) -> Any:
        """The action's result; ClientError when the site refuses."""
        last: ClientError | None = None
        for attempt in range(self.retries + 1):
            if attempt:
                time.sleep(backoff(attempt - 1))
            try:
                return self._post(action, data)
            except ClientError as exc:
                if not _may_pass(exc):
                    raise
                last = exc
        assert last is not None
        raise last

    def _post(self, action: str, data: dict[str, Any]) -> Any:
        headers = {"Authorization": self.token} if self.token else {}
        try:
            resp = self.session.post(f"{self.site}/api/3/action/{action}",
                                     json=data, headers=headers,
                                     timeout=ACTION_TIMEOUT)
        except requests.RequestException as exc:
            raise ClientError(f"cannot reach {self.site}: {exc}") from exc
        try:
            body = resp.json()
        except ValueError:
            body = None
        if not isinstance(body, dict):
            raise ClientError(
                f"{action} failed (HTTP {resp.status_code}): the site did "
                f"not answer with CKAN's JSON: {resp.text[:200]!r}",
                resp.status_code)
        if resp.status_code == 200 and body.get("success"):
            return body.get("result")
        error = body.get("error")
        error = error if isinstance(error, dict) else {"message": error}
        raise ClientError(describe_error(action, resp.status_code, error),
                          resp.status_code, error)


def _may_pass(exc: ClientError) -> bool:
    """Worth another try: no answer, a server error, a busy upload."""
    return (exc.status is None or exc.status >= 500
            or (exc.status == 409 and exc.mentions(BUSY_TEXT)))
