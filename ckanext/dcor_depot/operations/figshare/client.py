"""The figshare API over HTTP: article records and verified downloads.

Requests are retried on failures worth another attempt (5xx, 429,
dropped connections). URLs, also after redirects, must be http(s).
Downloads go to a temporary file, stop as soon as more bytes arrive than
figshare announced, and are checked against figshare's MD5.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urljoin, urlsplit

import requests

from ckanext.dcor_depot import config, errors
from ckanext.dcor_depot.operations.figshare.metadata import (
    ArticleVersion,
    FigshareFile,
)
from ckanext.dcor_depot.progress import Progress, ProgressBars, no_bars
from ckanext.dcor_depot.storage import fsops

log = logging.getLogger(__name__)

#: Attempts per HTTP request (the first one plus retries).
ATTEMPTS = 5
#: Seconds before the first retry; doubled for each further retry.
BACKOFF_BASE = 1.0
#: (connect, read) timeouts in seconds; read is per chunk, not per file.
TIMEOUT = (10, 60)
#: Bytes read from a download at a time (bounded memory for huge files).
CHUNK_SIZE = 1024 * 1024
#: HTTP status codes that are worth retrying.
RETRY_STATUS = frozenset({429, 500, 502, 503, 504})
#: The only URL schemes downloads use (also after redirects).
URL_SCHEMES = frozenset({"http", "https"})
#: Temporary-file kind of downloads (see :mod:`..storage.fsops`).
TEMP_KIND = "figshare"

_Result = TypeVar("_Result")
#: ``code`` of a failure worth another attempt (5xx, dropped connection).
TRANSIENT = "Transient"


@dataclass(frozen=True)
class Checksums:
    size: int
    md5: str
    sha256: str


def check_url(url: str, what: str) -> None:
    """SourceError unless ``url`` is an http(s) URL."""
    scheme = urlsplit(url).scheme.lower()
    if scheme not in URL_SCHEMES:
        raise errors.SourceError(
            f"{what} {url} is not an http(s) URL; only http "
            "and https are allowed")


class _Session(requests.Session):
    """A session that follows redirects only to http(s) URLs.

    requests has no adapter for other schemes today, but the refusal must
    not depend on which adapters happen to be mounted.
    """

    def get_redirect_target(self, resp: requests.Response) -> str | None:
        target = super().get_redirect_target(resp)
        if target is not None:
            try:
                check_url(urljoin(resp.url, target),
                          f"{resp.url} redirects to")
            except errors.SourceError:
                resp.close()
                raise
        return target


def new_session() -> requests.Session:
    """An HTTP session for the figshare API and its downloads."""
    session = _Session()
    session.headers["User-Agent"] = "ckanext-dcor_depot import-figshare"
    return session


def _with_retries(what: str, attempt: Callable[[], _Result]) -> _Result:
    """Run ``attempt`` until it does not fail with code TRANSIENT
    (bounded)."""
    for number in range(1, ATTEMPTS + 1):
        try:
            return attempt()
        except errors.SourceError as exc:
            if exc.code != TRANSIENT:
                raise
            if number == ATTEMPTS:
                raise errors.SourceError(
                    f"{what} failed {ATTEMPTS} times; last "
                    f"error: {exc}") from exc
            delay = BACKOFF_BASE * 2 ** (number - 1)
            log.info("%s: %s; retrying in %.1f s", what, exc, delay)
            time.sleep(delay)
    raise AssertionError("unreachable")


def _check_status(resp: requests.Response, what: str) -> None:
    if resp.status_code in RETRY_STATUS:
        raise errors.SourceError(f"HTTP {resp.status_code} from {resp.url}",
                                 code=TRANSIENT)
    if resp.status_code == 404:
        raise errors.SourceError(
            f"{what}: not found (HTTP 404 from {resp.url})")
    if resp.status_code >= 400:
        raise errors.SourceError(f"{what}: HTTP {resp.status_code} from "
                                 f"{resp.url}")


# --------------------------------------------------------------- articles
#: Largest API answer read. A record lists an article's metadata and its
#: files (a few KiB; about 1 KiB per file), so 16 MiB is far beyond any
#: real one, and a hostile server cannot make the import read without end.
MAX_RECORD_BYTES = 16 * 2**20


def fetch_article(session: requests.Session,
                  article: ArticleVersion) -> dict[str, Any]:
    """The figshare API record of one article version."""
    url = (f"{config.figshare_api_url()}/articles/{article.article_id}/"
           f"versions/{article.version}")
    what = f"article {article.article_id} version {article.version}"

    def attempt() -> dict[str, Any]:
        try:
            # Uncompressed: the limit holds for the bytes that arrive.
            with session.get(url, timeout=TIMEOUT, stream=True,
                             headers={"Accept-Encoding": "identity"}
                             ) as resp:
                _check_status(resp, what)
                body = _bounded_body(resp, MAX_RECORD_BYTES, what)
        except (requests.ConnectionError, requests.Timeout,
                requests.exceptions.ChunkedEncodingError) as exc:
            raise errors.SourceError(f"{type(exc).__name__} for {url}",
                                     code=TRANSIENT) from exc
        return _json_record(body, url, what)

    record = _with_retries(f"reading {what}", attempt)
    if (str(record.get("id")) != str(article.article_id)
            or str(record.get("version")) != str(article.version)):
        raise errors.SourceError(
            f"{what}: the API answered with article {record.get('id')} "
            f"version {record.get('version')}")
    return record


def _bounded_body(resp: requests.Response, limit: int, what: str) -> bytes:
    """The body of ``resp``; SourceError as soon as it exceeds
    ``limit`` bytes (announced or arriving)."""
    too_large = errors.SourceError(
        f"{what}: {resp.url} answers with more than "
        f"{limit} bytes; not read")
    try:
        announced = int(resp.headers.get("Content-Length", ""))
    except ValueError:
        announced = 0  # none (chunked) or garbage: the byte count decides
    if announced > limit:
        raise too_large
    body = bytearray()
    for chunk in resp.iter_content(64 * 1024):
        body += chunk
        if len(body) > limit:
            raise too_large
    return bytes(body)


def _json_record(body: bytes, url: str, what: str) -> dict[str, Any]:
    try:
        data = json.loads(body)
    except (ValueError, RecursionError) as exc:
        # RecursionError: nesting deeper than the parser's stack.
        raise errors.SourceError(f"{what}: {url} did not answer with "
                                 "JSON") from exc
    if not isinstance(data, dict):
        raise errors.SourceError(f"{what}: unexpected answer from {url}")
    return data


# -------------------------------------------------------------- downloads
@contextlib.contextmanager
def downloaded(session: requests.Session, fig: FigshareFile, folder: Path,
               bars: ProgressBars = no_bars, label: str = ""
               ) -> Iterator[tuple[Path, Checksums]]:
    """A temporary file in ``folder`` with the bytes of ``fig``, verified
    against figshare's MD5 and size; removed when the context ends (the
    caller moves it away to keep it). ``bars`` shows the download under
    ``label`` (the file name by default).
    """
    folder.mkdir(parents=True, exist_ok=True)
    tmp = fsops.create_temp(folder, fig.name, TEMP_KIND)
    try:
        with bars(label or fig.name, fig.size) as progress:
            found = _download_to(session, fig, tmp, progress)
        if found.md5 != fig.md5 or found.size != fig.size:
            raise errors.SourceError(
                f"MD5 mismatch: figshare says {fig.md5} ({fig.size} "
                f"bytes), downloaded {found.md5} ({found.size} bytes); "
                "not added")
        yield tmp, found
    finally:
        tmp.unlink(missing_ok=True)


def _download_to(session: requests.Session, fig: FigshareFile, dest: Path,
                 progress: Progress) -> Checksums:
    """Stream one file to ``dest`` (truncated first), hashing as it comes.

    Stops (SourceError) as soon as more bytes arrive than figshare
    announced: a wrong or hostile server cannot fill the disk.
    """
    check_url(fig.download_url, "download_url")

    def attempt() -> Checksums:
        try:
            # No compressed transfer: the size limit holds for what
            # arrives, and no decompression can balloon in memory.
            with session.get(fig.download_url, stream=True,
                             headers={"Accept-Encoding": "identity"},
                             timeout=TIMEOUT) as resp:
                _check_status(resp, f"file {fig.name!r}")
                _check_length(resp, fig)
                return _write_body(resp, fig, dest, progress)
        except (requests.ConnectionError, requests.Timeout,
                requests.exceptions.ChunkedEncodingError) as exc:
            raise errors.SourceError(f"{type(exc).__name__} while "
                                     f"downloading {fig.download_url}",
                                     code=TRANSIENT) from exc

    return _with_retries(f"downloading {fig.name!r}", attempt)


def _write_body(resp: requests.Response, fig: FigshareFile, dest: Path,
                progress: Progress) -> Checksums:
    """Write the body of ``resp`` to ``dest``, at most ``fig.size`` bytes."""
    md5 = hashlib.md5(usedforsecurity=False)
    sha = hashlib.sha256()
    size = 0
    with open(dest, "wb") as fh:
        for chunk in resp.iter_content(CHUNK_SIZE):
            if size + len(chunk) > fig.size:
                raise _too_large(fig, size + len(chunk))
            fh.write(chunk)
            md5.update(chunk)
            sha.update(chunk)
            size += len(chunk)
            progress(len(chunk))
        fh.flush()
        os.fsync(fh.fileno())
    return Checksums(size, md5.hexdigest(), sha.hexdigest())


def _check_length(resp: requests.Response, fig: FigshareFile) -> None:
    """Refuse before reading when the server announces too many bytes."""
    try:
        length = int(resp.headers.get("Content-Length", ""))
    except ValueError:
        return  # none (chunked) or garbage: the byte count decides
    if length > fig.size:
        raise _too_large(fig, length)


def _too_large(fig: FigshareFile, size: int) -> errors.SourceError:
    return errors.SourceError(f"the download sends more than the {fig.size} "
                              f"bytes figshare announced (stopped at {size} "
                              "bytes); not added")


def file_checksums(path: Path) -> Checksums:
    """Size, MD5 and SHA256 of a local file, read once."""
    md5 = hashlib.md5(usedforsecurity=False)
    sha = hashlib.sha256()
    size = 0
    with open(path, "rb") as fh:
        while chunk := fh.read(8 * CHUNK_SIZE):
            md5.update(chunk)
            sha.update(chunk)
            size += len(chunk)
    return Checksums(size, md5.hexdigest(), sha.hexdigest())
