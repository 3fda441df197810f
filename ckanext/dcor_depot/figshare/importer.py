"""Mirror figshare articles as datasets of the organization figshare-import.

For every DOI ``10.6084/m9.figshare.{id}.v{version}`` of the DOI list the
article version is read from the figshare API, a draft dataset is created,
every file that is not link-only is downloaded into the figshare depot
(verified against figshare's MD5) and added as a resource whose CKAN upload
path is a symlink to the depot file, the file is copied to S3 when S3 is
configured, and finally the dataset is made active.

Everything derives from the DOI: the dataset id (uuid5 of DOI and name), the
resource ids (uuid5 of dataset id and MD5) and the depot paths (distinct
for distinct files, see :func:`depot_names`). A second run therefore finds
what the first one did, downloads nothing that is complete (each depot file
is checked against figshare's MD5), and continues where an interrupted run
stopped.

Downloads use http(s) only, also after redirects, and stop as soon as more
bytes arrive than figshare announced.
"""
from __future__ import annotations

import collections
import contextlib
import dataclasses
import errno
import fcntl
import hashlib
import logging
import os
import re
import shutil
import stat
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urljoin, urlsplit

import ckan.model as model
import ckan.plugins.toolkit as tk
import html2text
import requests

from ckanext.dcor_depot import config, errors
from ckanext.dcor_depot.operations import visibility
from ckanext.dcor_depot.records import ckan_data
from ckanext.dcor_depot.storage import (
    fsops,
    layout,
    object_store,
    rtdc,
    transfer,
)
from ckanext.dcor_depot.storage.fsops import fsync_dir

log = logging.getLogger(__name__)

ORGANIZATION_NAME = "figshare-import"
ORGANIZATION_TITLE = "Figshare mirror"
ORGANIZATION_DESCRIPTION = (
    "Datasets mirrored from figshare by `ckan import-figshare`. Each "
    "dataset is one version of a figshare article; its files are kept in "
    "the figshare depot of this site.")

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
#: Hex digits of the MD5 that tell files with look-alike names apart.
MD5_TAG_LENGTH = 12

_DOI_RE = re.compile(
    r"^(?:doi:|https?://(?:dx\.)?doi\.org/)?"
    r"10\.6084/m9\.figshare\.(?P<id>[1-9][0-9]*)\.v(?P<version>[1-9][0-9]*)$",
    re.IGNORECASE)
_BARE_DOI_RE = re.compile(r"^10\.\d{4,9}/\S+$")
_EXTENSION_RE = re.compile(r"\.[A-Za-z0-9]{1,16}$")
_CC_RE = re.compile(
    r"^CC[\s-]*(?P<kind>0|BY(?:[\s-]+(?:NC|SA|ND))*)"
    r"(?:[\s-]+(?:\d+(?:\.\d+)*|INTERNATIONAL|UNPORTED))*$")

#: Creative Commons licenses (figshare's names, without version) and the
#: CKAN license ids they become. CKAN's ``cc-nc`` stands for any
#: non-commercial CC license; CKAN has no id for CC BY-ND.
LICENSES = {
    "0": "CC0-1.0",
    "BY": "cc-by",
    "BY-SA": "cc-by-sa",
    "BY-NC": "cc-nc",
    "BY-NC-SA": "cc-nc",
    "BY-NC-ND": "cc-nc",
}


class FigshareError(errors.SourceError):
    """An expected failure; the message is one line for the operator."""


class _Transient(Exception):
    """A failure worth another attempt (5xx, dropped connection)."""


# --------------------------------------------------------------- feedback
class Feedback:
    """Where the import reports to; the CLI prints, the default logs."""

    def info(self, message: str) -> None:
        log.info(message)

    def warning(self, message: str) -> None:
        log.warning(message)

    def error(self, message: str) -> None:
        log.error(message)

    @contextlib.contextmanager
    def progress(self, label: str, total: int
                 ) -> Iterator[Callable[[int], Any]]:
        """Context giving a callable that receives byte counts."""
        yield lambda n: None


@dataclass
class Summary:
    imported: int = 0
    skipped: int = 0
    failed: int = 0
    errors: list[str] = field(default_factory=list)

    def line(self) -> str:
        return (f"import-figshare: {self.imported} imported, "
                f"{self.skipped} skipped, {self.failed} failed")


# ------------------------------------------------------------- DOI list
@dataclass(frozen=True)
class DOIEntry:
    line_number: int
    text: str
    article_id: int | None = None
    version: int | None = None

    @property
    def valid(self) -> bool:
        return self.article_id is not None

    @property
    def doi(self) -> str:
        return f"10.6084/m9.figshare.{self.article_id}.v{self.version}"


def parse_doi(text: str) -> tuple[int, int] | None:
    """``(article id, version)`` of a figshare DOI, None if malformed."""
    match = _DOI_RE.match(text.strip())
    if not match:
        return None
    return int(match["id"]), int(match["version"])


def read_doi_list(path: Path) -> list[DOIEntry]:
    """The entries of a DOI file; blank lines and ``#`` comments skipped."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise FigshareError(f"cannot read the DOI list {path}: "
                            f"{getattr(exc, 'strerror', None) or exc}"
                            ) from exc
    entries = []
    for number, raw in enumerate(lines, 1):
        text = raw.split("#", 1)[0].strip()
        if not text:
            continue
        parsed = parse_doi(text)
        if parsed is None:
            entries.append(DOIEntry(number, text))
        else:
            entries.append(DOIEntry(number, text, *parsed))
    return entries


# -------------------------------------------------------------- metadata
def dataset_name(article_id: int, version: int) -> str:
    return f"figshare-{article_id}-v{version}"


def dataset_id(doi: str, name: str) -> str:
    """Reproducible dataset id derived from the DOI and the dataset name."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL,
                          f"https://doi.org/{doi.lower()}#{name}"))


def resource_id(dataset_uuid: str, md5: str) -> str:
    """Reproducible resource id derived from dataset id and file MD5."""
    return str(uuid.uuid5(uuid.UUID(dataset_uuid), md5.lower()))


def license_id(name: str) -> str:
    """CKAN license id of a figshare license name; FigshareError if none."""
    normalized = re.sub(r"\s+", " ", (name or "").strip().upper())
    match = _CC_RE.match(normalized)
    if match:
        kind = re.sub(r"[\s-]+", "-", match["kind"])
        if kind in LICENSES:
            return LICENSES[kind]
    raise FigshareError(
        f"license {name!r} is not supported (supported: CC0 and the "
        "Creative Commons licenses CC BY, CC BY-SA and CC BY-NC*)")


def html_to_markdown(html: str) -> str:
    converter = html2text.HTML2Text()
    converter.body_width = 0  # no hard line breaks inside paragraphs
    return converter.handle(html or "").strip()


def format_reference(text: str) -> str:
    """A reference as stored: bare DOIs get the ``doi:`` prefix."""
    text = text.strip()
    return f"doi:{text}" if _BARE_DOI_RE.match(text) else text


def dataset_dict(article: dict[str, Any], entry: DOIEntry,
                 owner_org: str) -> dict[str, Any]:
    """The package_create data of an article version (draft, public)."""
    name = dataset_name(entry.article_id, entry.version)
    authors = [a.get("full_name", "").strip()
               for a in article.get("authors") or []]
    references = [format_reference(r) for r in article.get("references") or []
                  if isinstance(r, str) and r.strip()]
    extras = [{"key": "doi", "value": entry.doi}]
    if any(authors):
        extras.append({"key": "authors",
                       "value": ", ".join(a for a in authors if a)})
    if references:
        extras.append({"key": "references", "value": "\n".join(references)})
    return {
        "id": dataset_id(entry.doi, name),
        "name": name,
        "title": (article.get("title") or "").strip() or name,
        "notes": html_to_markdown(article.get("description") or ""),
        "license_id": license_id((article.get("license") or {}).get("name",
                                                                    "")),
        "url": f"https://doi.org/{entry.doi}",
        "owner_org": owner_org,
        "private": False,
        "state": "draft",
        "extras": extras,
    }


@dataclass(frozen=True)
class FigshareFile:
    name: str
    size: int
    md5: str
    download_url: str
    #: says so when figshare's supplied_md5 and computed_md5 differ
    md5_warning: str = ""
    #: the file's name in the depot (see :func:`depot_names`)
    depot_name: str = ""

    @classmethod
    def from_api(cls, data: dict[str, Any]) -> FigshareFile:
        name = str(data.get("name") or "")
        computed = str(data.get("computed_md5") or "").strip().lower()
        supplied = str(data.get("supplied_md5") or "").strip().lower()
        md5 = computed or supplied
        warning = ""
        if computed and supplied and computed != supplied:
            # computed_md5 is what figshare found in the bytes it serves.
            warning = (f"file {name!r}: figshare's supplied_md5 {supplied} "
                       f"differs from its computed_md5 {computed}; using "
                       "computed_md5")
        if not re.fullmatch(r"[0-9a-f]{32}", md5):
            raise FigshareError(f"file {name!r}: figshare gives no valid MD5 "
                                f"({md5 or 'none'}), so it cannot be "
                                "verified")
        if not data.get("download_url"):
            raise FigshareError(f"file {name!r}: figshare gives no "
                                "download_url")
        return cls(name=name, size=int(data.get("size") or 0), md5=md5,
                   download_url=str(data["download_url"]),
                   md5_warning=warning)


def distinct_files(candidates: list[FigshareFile]
                   ) -> tuple[list[FigshareFile], list[str]]:
    """The files of an article to import, with their depot names, and a
    note per file skipped.

    Resource ids derive from the MD5: the same bytes are one resource, the
    file first by name (not by figshare's listing order, which may change
    between reruns, and with it the depot names).
    """
    kept: dict[str, FigshareFile] = {}
    notes = []
    for fig in sorted(candidates, key=lambda f: (f.name, f.md5)):
        if fig.md5 in kept:
            notes.append(f"  {fig.name}: same bytes as "
                         f"{kept[fig.md5].name}, skipped")
        else:
            kept[fig.md5] = fig
    files = [fig for fig in candidates if kept[fig.md5] is fig]
    names = depot_names(files, [fig.name for fig in candidates])
    return [dataclasses.replace(fig, depot_name=name)
            for fig, name in zip(files, names, strict=True)], notes


def depot_names(files: list[FigshareFile],
                all_names: list[str] | None = None) -> list[str]:
    """The depot file names of an article version's files, all distinct.

    A file keeps its name when that is a safe file name no other file of
    the article has. Otherwise the depot would store distinct files under
    one name (``data.rtdc``, ``_data.rtdc`` and ``data.rtdc`` with a
    leading blank all become ``data.rtdc``; ``a/b`` becomes ``a_b``), so
    the name gets the start of the file's MD5 before its extension. Both
    depend only on the article version, which figshare never changes: a
    rerun finds the same names. ``all_names`` are the names of every file
    of the article, also of those skipped as duplicates (so that a name
    is plain or tagged whatever the order of figshare's listing).
    """
    counts = collections.Counter(all_names if all_names is not None
                                 else [f.name for f in files])
    names = [f.name if counts[f.name] == 1 and _is_plain(f.name)
             else _tagged_name(f) for f in files]
    # A kept name may equal a tagged one ("x.<md5 start>.rtdc").
    taken = collections.Counter(names)
    names = [_tagged_name(f) if taken[n] > 1 and n == f.name else n
             for f, n in zip(files, names, strict=True)]
    if len(set(names)) != len(names):
        raise FigshareError("the files of this article cannot be given "
                            "distinct depot names: "
                            + ", ".join(repr(f.name) for f in files))
    return names


def _is_plain(name: str) -> bool:
    return layout.safe_component(name, fallback="file") == name


def _tagged_name(fig: FigshareFile) -> str:
    """``{stem}.{md5 start}{extension}``, a safe name of at most 255 bytes.

    The extension stays last (users and dclab recognise files by it).
    """
    name = fig.name.rstrip()
    match = _EXTENSION_RE.search(name)
    extension = match.group(0) if match else ""
    tag = f".{fig.md5[:MD5_TAG_LENGTH]}{extension}"
    stem = layout.safe_component(name[:len(name) - len(extension)],
                                 layout.NAME_MAX - len(tag.encode()),
                                 fallback="file")
    return stem + tag


# ------------------------------------------------------------------ HTTP
def check_url(url: str, what: str) -> None:
    """FigshareError unless ``url`` is an http(s) URL."""
    scheme = urlsplit(url).scheme.lower()
    if scheme not in URL_SCHEMES:
        raise FigshareError(f"{what} {url} is not an http(s) URL; only http "
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
            except FigshareError:
                resp.close()
                raise
        return target


def _session() -> requests.Session:
    session = _Session()
    session.headers["User-Agent"] = "ckanext-dcor_depot import-figshare"
    return session


def _with_retries(what: str, attempt: Callable[[], Any]) -> Any:
    """Run ``attempt`` until it does not raise _Transient (bounded)."""
    for number in range(1, ATTEMPTS + 1):
        try:
            return attempt()
        except _Transient as exc:
            if number == ATTEMPTS:
                raise FigshareError(f"{what} failed {ATTEMPTS} times; last "
                                    f"error: {exc}") from exc
            delay = BACKOFF_BASE * 2 ** (number - 1)
            log.info("%s: %s; retrying in %.1f s", what, exc, delay)
            time.sleep(delay)
    raise AssertionError("unreachable")


def _check_status(resp: requests.Response, what: str) -> None:
    if resp.status_code in RETRY_STATUS:
        raise _Transient(f"HTTP {resp.status_code} from {resp.url}")
    if resp.status_code == 404:
        raise FigshareError(f"{what}: not found (HTTP 404 from {resp.url})")
    if resp.status_code >= 400:
        raise FigshareError(f"{what}: HTTP {resp.status_code} from "
                            f"{resp.url}")


def fetch_article(session: requests.Session, article_id: int,
                  version: int) -> dict[str, Any]:
    """The figshare API record of one article version."""
    url = f"{config.figshare_api_url()}/articles/{article_id}/versions/" \
          f"{version}"
    what = f"article {article_id} version {version}"

    def attempt() -> dict[str, Any]:
        try:
            resp = session.get(url, timeout=TIMEOUT)
        except (requests.ConnectionError, requests.Timeout) as exc:
            raise _Transient(f"{type(exc).__name__} for {url}") from exc
        _check_status(resp, what)
        try:
            data = resp.json()
        except ValueError as exc:
            raise FigshareError(f"{what}: {url} did not answer with "
                                "JSON") from exc
        if not isinstance(data, dict):
            raise FigshareError(f"{what}: unexpected answer from {url}")
        return data

    article = _with_retries(f"reading {what}", attempt)
    if (str(article.get("id")) != str(article_id)
            or str(article.get("version")) != str(version)):
        raise FigshareError(
            f"{what}: the API answered with article {article.get('id')} "
            f"version {article.get('version')}")
    return article


@dataclass(frozen=True)
class Checksums:
    size: int
    md5: str
    sha256: str


def _download_to(session: requests.Session, fig: FigshareFile, dest: Path,
                 progress: Callable[[int], Any]) -> Checksums:
    """Stream one file to ``dest`` (truncated first), hashing as it comes.

    Stops (FigshareError) as soon as more bytes arrive than figshare
    announced: a wrong or hostile server cannot fill the disk.
    """
    check_url(fig.download_url, "download_url")

    def attempt() -> Checksums:
        md5 = hashlib.md5(usedforsecurity=False)
        sha = hashlib.sha256()
        size = 0
        try:
            # No compressed transfer: the size limit holds for what
            # arrives, and no decompression can balloon in memory.
            with session.get(fig.download_url, stream=True,
                             headers={"Accept-Encoding": "identity"},
                             timeout=TIMEOUT) as resp:
                _check_status(resp, f"file {fig.name!r}")
                _check_length(resp, fig)
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
        except (requests.ConnectionError, requests.Timeout,
                requests.exceptions.ChunkedEncodingError) as exc:
            raise _Transient(f"{type(exc).__name__} while downloading "
                             f"{fig.download_url}") from exc
        return Checksums(size, md5.hexdigest(), sha.hexdigest())

    return _with_retries(f"downloading {fig.name!r}", attempt)


def _check_length(resp: requests.Response, fig: FigshareFile) -> None:
    """Refuse before reading when the server announces too many bytes."""
    try:
        length = int(resp.headers.get("Content-Length", ""))
    except ValueError:
        return  # none (chunked) or garbage: the byte count decides
    if length > fig.size:
        raise _too_large(fig, length)


def _too_large(fig: FigshareFile, size: int) -> FigshareError:
    return FigshareError(f"the download sends more than the {fig.size} "
                         f"bytes figshare announced (stopped at {size} "
                         "bytes); not added")


# ----------------------------------------------------------------- files
def file_checksums(path: Path) -> Checksums:
    md5 = hashlib.md5(usedforsecurity=False)
    sha = hashlib.sha256()
    size = 0
    with open(path, "rb") as fh:
        while chunk := fh.read(8 * CHUNK_SIZE):
            md5.update(chunk)
            sha.update(chunk)
            size += len(chunk)
    return Checksums(size, md5.hexdigest(), sha.hexdigest())


def _place(tmp: Path, target: Path, expected_md5: str) -> None:
    """Move a verified download into the depot, atomically.

    Across filesystems the file is copied next to the target, flushed and
    verified before it is renamed into place.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.replace(tmp, target)
    except OSError as exc:
        if exc.errno != errno.EXDEV:
            raise
        part = fsops.temp_for(target, "part")
        try:
            with open(tmp, "rb") as src, open(part, "wb") as dst:
                shutil.copyfileobj(src, dst, 8 * CHUNK_SIZE)
                dst.flush()
                os.fsync(dst.fileno())
            found = file_checksums(part).md5
            if found != expected_md5:
                raise FigshareError(
                    f"copy of {tmp} at {part} is corrupt: expected MD5 "
                    f"{expected_md5}, found {found}")
            os.replace(part, target)
        finally:
            part.unlink(missing_ok=True)
        tmp.unlink(missing_ok=True)
    fsync_dir(target.parent)


def _target(entry: DOIEntry, fig: FigshareFile) -> Path:
    """The depot path of a file of an article version."""
    return layout.figshare_depot_path(entry.article_id, entry.version,
                                      fig.depot_name)


def _article_folder(entry: DOIEntry) -> Path:
    """The depot folder of an article version (any name gives it)."""
    return layout.figshare_depot_path(entry.article_id, entry.version,
                                      "file").parent


def _link(upload_path: Path, target: Path) -> None:
    """Make CKAN's upload path a symlink to the depot file."""
    if upload_path.is_symlink():
        if os.readlink(upload_path) == str(target):
            return
    elif upload_path.exists():
        # Never replace data we did not put there.
        raise FigshareError(f"{upload_path} exists and is not a symlink; "
                            "not replaced")
    upload_path.parent.mkdir(parents=True, exist_ok=True)
    fsops.remove_stale_temps(upload_path.parent)
    fsops.replace_with_symlink(upload_path, target)


@contextlib.contextmanager
def _import_lock() -> Iterator[None]:
    """One import at a time per depot (two would race on the same files)."""
    root = config.figshare_depot_path()
    root.mkdir(parents=True, exist_ok=True)
    with open(root / ".import-figshare.lock", "w") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            raise FigshareError(
                f"another import-figshare is running (lock {fh.name})"
            ) from exc
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


# ------------------------------------------------------------------ CKAN
def ensure_organization() -> dict[str, Any]:
    """The organization figshare-import, created if missing."""
    action = tk.get_action
    try:
        return action("organization_show")(
            ckan_data.site_context(),
            {"id": ORGANIZATION_NAME, "include_datasets": False})
    except tk.ObjectNotFound:
        pass
    return action("organization_create")(ckan_data.site_context(), {
        "name": ORGANIZATION_NAME,
        "title": ORGANIZATION_TITLE,
        "description": ORGANIZATION_DESCRIPTION,
    })


def _find_dataset(data: dict[str, Any]) -> dict[str, Any] | None:
    try:
        dataset = ckan_data.package_show(data["id"])
    except tk.ObjectNotFound:
        dataset = None
    if dataset is None:
        try:
            other = ckan_data.package_show(data["name"])
        except tk.ObjectNotFound:
            return None
        raise FigshareError(
            f"a dataset named {data['name']} exists with id {other['id']}, "
            f"not the id {data['id']} this import derives from the DOI; "
            "not touched")
    if dataset["state"] == "deleted":
        raise FigshareError(
            f"dataset {data['name']} was deleted; purge it (ckan dataset "
            "purge) to import it again")
    return dataset


def _error_text(exc: BaseException) -> str:
    if isinstance(exc, tk.ValidationError):
        parts = []
        for key, value in (exc.error_dict or {}).items():
            parts.append(f"{key}: {value}")
        return "invalid data: " + "; ".join(parts)
    if isinstance(exc, OSError) and exc.strerror:
        where = f" ({exc.filename})" if exc.filename else ""
        return f"{exc.strerror}{where}"
    return str(exc)


# ---------------------------------------------------------------- import
#: Failures of one DOI (or file) that are reported as one line; anything
#: else is a bug, reported as one line too but logged with its traceback.
_EXPECTED = (FigshareError, object_store.ObjectStoreError, rtdc.RTDCError,
             tk.ValidationError, tk.ObjectNotFound, requests.RequestException,
             OSError)


@dataclass
class _Article:
    entry: DOIEntry
    data: dict[str, Any]
    files: list[FigshareFile]


class Importer:
    """Imports DOI entries one by one; holds the run's shared state."""

    def __init__(self, feedback: Feedback | None = None) -> None:
        self.feedback = feedback or Feedback()
        self.session = _session()
        self.org: dict[str, Any] = {}
        #: checksums of depot files read in this run, by (device, inode,
        #: size, mtime): the completeness check and the import that may
        #: follow it read each file once
        self._checked: dict[tuple[int, int, int, int], Checksums] = {}

    def run(self, limit: int | None = None) -> Summary:
        path = config.figshare_dois_path()
        entries = read_doi_list(path)
        if limit is not None:
            entries = entries[:limit]
        summary = Summary()
        with _import_lock():
            # Downloads of killed runs stay otherwise.
            fsops.remove_stale_temps(config.tmp_dir(),
                                   kinds=frozenset({"figshare"}))
            self.org = ensure_organization()
            for entry in entries:
                self._one(entry, path, summary)
        return summary

    def _one(self, entry: DOIEntry, path: Path, summary: Summary) -> None:
        if not entry.valid:
            self._fail(summary, f"{path}:{entry.line_number}: malformed DOI "
                       f"{entry.text!r} (expected "
                       "10.6084/m9.figshare.ID.vVERSION)")
            return
        try:
            done = self.import_entry(entry)
        except _EXPECTED as exc:
            model.Session.rollback()
            self._fail(summary, f"{entry.doi}: {_error_text(exc)}")
            return
        except Exception as exc:
            # A bug must not stop the other DOIs; the log has the traceback.
            model.Session.rollback()
            log.exception("import of %s failed", entry.doi)
            self._fail(summary, f"{entry.doi}: unexpected error "
                       f"{type(exc).__name__}: {exc}")
            return
        if done:
            summary.imported += 1
        else:
            summary.skipped += 1

    def _fail(self, summary: Summary, message: str) -> None:
        summary.failed += 1
        summary.errors.append(message)
        self.feedback.error(message)

    def import_entry(self, entry: DOIEntry) -> bool:
        """Import one article version; False if it was already complete."""
        raw = fetch_article(self.session, entry.article_id, entry.version)
        data = dataset_dict(raw, entry, self.org["id"])
        candidates: list[FigshareFile] = []
        notes: list[str] = []
        for item in raw.get("files") or []:
            if item.get("is_link_only"):
                name = item.get("name") or item.get("download_url")
                notes.append(f"  {name}: link-only, skipped")
                continue
            fig = FigshareFile.from_api(item)
            if fig.md5_warning:
                self.feedback.warning(f"{entry.doi}: {fig.md5_warning}")
            candidates.append(fig)
        files, skipped = distinct_files(candidates)
        notes += skipped
        article = _Article(entry, data, files)
        # Copies of killed runs stay otherwise.
        fsops.remove_stale_temps(_article_folder(entry))

        dataset = _find_dataset(data)
        if dataset is not None and self._complete(dataset, article):
            self.feedback.info(f"{entry.doi}: complete, skipped")
            return False
        if dataset is None:
            dataset = tk.get_action("package_create")(
                ckan_data.site_context(), dict(data))
            self.feedback.info(f"{entry.doi}: created draft dataset "
                               f"{dataset['name']}")
        else:
            self.feedback.info(f"{entry.doi}: continuing dataset "
                               f"{dataset['name']} ({dataset['state']})")
        for note in notes:
            self.feedback.info(note)
        existing = {r["id"]: r for r in dataset.get("resources", [])}
        failures = []
        for fig in files:
            try:
                self._import_file(dataset, entry, fig, existing)
            except _EXPECTED as exc:
                # The other files are still worth fetching; the dataset
                # stays a draft until all are in.
                model.Session.rollback()
                failures.append(f"{fig.name}: {_error_text(exc)}")
        if failures:
            raise FigshareError("; ".join(failures)
                                + " (dataset left as draft)")
        if dataset["state"] != "active":
            # The public tags are set by the dataset-update hook now that
            # the dataset is active and public.
            tk.get_action("package_revise")(ckan_data.site_context(), {
                "match": {"id": dataset["id"]},
                "update": {"state": "active"},
            })
            self.feedback.info(f"{entry.doi}: dataset {dataset['name']} "
                               "is active")
        return True

    def _complete(self, dataset: dict[str, Any], article: _Article) -> bool:
        """Active with every resource, file and S3 copy in place.

        Each depot file is read and compared with figshare's MD5: a file
        of the right size may still hold other bytes.
        """
        if dataset["state"] != "active":
            return False
        resources = {r["id"]: r for r in dataset.get("resources", [])}
        for fig in article.files:
            rid = resource_id(dataset["id"], fig.md5)
            res = resources.get(rid)
            if res is None:
                return False
            target = _target(article.entry, fig)
            upload = layout.ckan_upload_path(rid)
            if not upload.is_symlink() or os.readlink(upload) != str(target):
                return False
            if config.s3_available() and not tk.asbool(
                    res.get("s3_available")):
                return False
            if self._verified(target, fig) is None:
                return False
        return True

    def _verified(self, path: Path, fig: FigshareFile) -> Checksums | None:
        """The checksums of ``path`` if it is a regular file with the bytes
        figshare describes, else None."""
        try:
            info = os.lstat(path)
        except FileNotFoundError:
            return None
        # A symlink or a file of the wrong size is not worth reading.
        if not stat.S_ISREG(info.st_mode) or info.st_size != fig.size:
            return None
        key = (info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns)
        if key not in self._checked:
            self._checked[key] = file_checksums(path)
        found = self._checked[key]
        return found if found.md5 == fig.md5 else None

    def _import_file(self, dataset: dict[str, Any], entry: DOIEntry,
                     fig: FigshareFile,
                     existing: dict[str, dict[str, Any]]) -> None:
        target = _target(entry, fig)
        rid = resource_id(dataset["id"], fig.md5)
        resource = existing.get(rid)
        if resource is None and model.Resource.get(rid) is not None:
            raise FigshareError(
                f"resource {rid} exists but is not an active resource of "
                f"{dataset['name']} (deleted?); not re-created")

        checksums = self._ensure_depot_file(fig, target)
        _link(layout.ckan_upload_path(rid), target)

        if resource is not None:
            if config.s3_available() and not tk.asbool(
                    resource.get("s3_available")):
                s3 = self._upload_s3(dataset, rid, target, fig,
                                     resource.get("sha256") or None)
                ckan_data.revise_resource(dataset["id"], rid, s3)
                self.feedback.info(f"  {fig.name}: copied to S3")
            return

        data: dict[str, Any] = {
            "id": rid,
            "package_id": dataset["id"],
            "name": fig.name,
            "url": fig.name,
            "url_type": "upload",
            "size": fig.size,
            "sha256": checksums.sha256,
        }
        if rtdc.claims_rtdc(fig.name):
            # Also covers a file that was in the depot before this run.
            rtdc.check_rtdc(target)
            data.update(mimetype=rtdc.RTDC_MIMETYPE,
                        format=rtdc.RTDC_FORMAT)
        if config.s3_available():
            data.update(self._upload_s3(dataset, rid, target, fig,
                                        checksums.sha256))
        tk.get_action("resource_create")(ckan_data.site_context(), data)
        existing[rid] = data
        self.feedback.info(f"  {fig.name}: resource {rid} created")

    def _ensure_depot_file(self, fig: FigshareFile,
                           target: Path) -> Checksums:
        """Make sure the depot holds the verified file; download if not."""
        found = self._verified(target, fig)
        if found is not None:
            self.feedback.info(f"  {fig.name}: already in the depot "
                               "(MD5 verified)")
            return found
        tmp_root = config.tmp_dir()
        tmp_root.mkdir(parents=True, exist_ok=True)
        tmp = fsops.create_temp(tmp_root, fig.name, "figshare")
        try:
            with self.feedback.progress(f"  {fig.name}", fig.size) as step:
                found = _download_to(self.session, fig, tmp, step)
            if found.md5 != fig.md5 or found.size != fig.size:
                raise FigshareError(
                    f"MD5 mismatch: figshare says {fig.md5} ({fig.size} "
                    f"bytes), downloaded {found.md5} ({found.size} bytes); "
                    "not added")
            if rtdc.claims_rtdc(fig.name):
                # Refused before it enters the depot (dclab recognises
                # HDF5 by its content, the temporary name does not matter).
                rtdc.check_rtdc(tmp)
            _place(tmp, target, fig.md5)
        finally:
            tmp.unlink(missing_ok=True)
        self.feedback.info(f"  {fig.name}: downloaded {found.size} bytes, "
                           "MD5 verified")
        return found

    def _upload_s3(self, dataset: dict[str, Any], rid: str, path: Path,
                   fig: FigshareFile, sha256: str | None) -> dict[str, Any]:
        bucket = object_store.bucket_name(dataset["owner_org"])
        key = layout.object_key(rid)
        with self.feedback.progress(f"  {fig.name} -> S3", fig.size) as step:
            result = transfer.upload_verified(
                path, bucket, key, expected_sha256=sha256,
                label=f"{dataset['name']} file {fig.name!r}", progress=step)
        # Right for drafts (closed) and for already active datasets; the
        # commit that activates the dataset opens the objects.
        visibility.reconcile([visibility.ObjectRef(
            dataset["owner_org"], dataset["id"], rid)])
        return {"s3_available": True,
                "s3_url": object_store.object_url(bucket, key),
                "sha256": result.sha256}


def import_figshare(limit: int | None = None,
                    feedback: Feedback | None = None) -> Summary:
    """Import the DOIs of the configured list (the first ``limit``)."""
    return Importer(feedback).run(limit)
