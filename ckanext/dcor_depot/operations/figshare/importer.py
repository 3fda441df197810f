"""Mirror figshare articles as datasets of the organization figshare-import.

For every DOI ``10.6084/m9.figshare.{id}.v{version}`` of the DOI list the
article version is read from the figshare API, a draft dataset is created,
every file that is not link-only is downloaded into the figshare depot
(verified against figshare's MD5) and added as a resource whose CKAN upload
path is a symlink to the depot file, the file is copied to S3 when S3 is
configured, and finally the dataset is made active.

Everything derives from figshare's record (upstream's formulas): the
dataset id (of DOI and name), the resource ids (of the dataset's id and
supplied_md5; the dataset is found by name) and the depot paths (distinct
for distinct files, see :func:`.metadata.depot_names`). A second run
therefore finds what the first one did, downloads nothing that is complete
(each depot file is checked against figshare's MD5), and continues where an
interrupted run stopped.

What an article becomes is decided in :mod:`.metadata`, the HTTP side is
:mod:`.client`; this module puts files into the depot and records into
CKAN.
"""
from __future__ import annotations

import contextlib
import errno
import fcntl
import logging
import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import ckan.model as model
import ckan.plugins.toolkit as tk
import requests

from ckanext.dcor_depot import config, errors, names
from ckanext.dcor_depot.operations import visibility
from ckanext.dcor_depot.operations.figshare import client
from ckanext.dcor_depot.operations.figshare.client import Checksums
from ckanext.dcor_depot.operations.figshare.metadata import (
    ArticleVersion,
    DOIEntry,
    FigshareFile,
    article_files,
    check_record,
    dataset_dict,
    read_doi_list,
    resource_id,
)
from ckanext.dcor_depot.progress import ProgressBars, no_bars
from ckanext.dcor_depot.records import ckan_data
from ckanext.dcor_depot.storage import (
    fsops,
    layout,
    object_store,
    rtdc,
    transfer,
)

log = logging.getLogger(__name__)

ORGANIZATION_NAME = names.FIGSHARE_ORGANIZATION
ORGANIZATION_TITLE = "Figshare mirror"
ORGANIZATION_DESCRIPTION = (
    "Datasets mirrored from figshare by `ckan import-figshare`. Each "
    "dataset is one version of a figshare article; its files are kept in "
    "the figshare depot of this site.")


# --------------------------------------------------------------- feedback
class Feedback:
    """Where the import reports to; the CLI prints, the default logs."""

    def info(self, message: str) -> None:
        log.info(message)

    def warning(self, message: str) -> None:
        log.warning(message)

    def error(self, message: str) -> None:
        log.error(message)


@dataclass
class Summary:
    imported: int = 0
    skipped: int = 0
    failed: int = 0
    errors: list[str] = field(default_factory=list)


# ----------------------------------------------------------------- depot
def _place(tmp: Path, target: Path, sha256: str) -> None:
    """Move a verified download into the depot, atomically.

    Across filesystems the file is copied next to the target, flushed and
    verified against the download's SHA256 before it is renamed into
    place.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.replace(tmp, target)
    except OSError as exc:
        if exc.errno != errno.EXDEV:
            raise
        part = fsops.temp_for(target, "part")
        try:
            _, found = fsops.copy_verified(tmp, part)
            if found != sha256:
                raise errors.SourceError(
                    f"copy of {tmp} at {part} is corrupt: expected SHA256 "
                    f"{sha256}, found {found}")
            os.replace(part, target)
        finally:
            part.unlink(missing_ok=True)
        tmp.unlink(missing_ok=True)
    fsops.fsync_dir(target.parent)


def _target(article: ArticleVersion, fig: FigshareFile) -> Path:
    """The depot path of a file of an article version."""
    return layout.figshare_depot_path(article.article_id, article.version,
                                      fig.depot_name)


def _article_folder(article: ArticleVersion) -> Path:
    """The depot folder of an article version (any name gives it)."""
    return layout.figshare_depot_path(article.article_id, article.version,
                                      "file").parent


def _link(upload_path: Path, target: Path) -> None:
    """Make CKAN's upload path a symlink to the depot file."""
    if upload_path.is_symlink():
        if os.readlink(upload_path) == str(target):
            return
    elif upload_path.exists():
        # Never replace data we did not put there.
        raise errors.SourceError(f"{upload_path} exists and is not a symlink; "
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
            raise errors.SourceError(
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
    """The dataset of an article version, by name as upstream: its id,
    whatever it is, names the resources. None if there is none yet."""
    try:
        dataset = ckan_data.package_show(data["name"])
    except tk.ObjectNotFound:
        _check_id_free(data)
        return None
    if dataset.get("owner_org") != data["owner_org"]:  # somebody else's
        raise errors.SourceError(
            f"a dataset named {data['name']} exists outside "
            f"{ORGANIZATION_NAME}; not touched")
    if dataset["state"] == "deleted":
        raise errors.SourceError(
            f"dataset {data['name']} was deleted; purge it (ckan dataset "
            "purge) to import it again")
    return dataset


def _check_id_free(data: dict[str, Any]) -> None:
    """SourceError if another dataset has the id derived for this one."""
    try:
        other = ckan_data.package_show(data["id"])
    except tk.ObjectNotFound:
        return
    raise errors.SourceError(
        f"dataset {other['name']} has the id {data['id']} "
        f"derived for {data['name']}; not touched")


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
_EXPECTED = (errors.SourceError, errors.StoreError, tk.ValidationError,
             tk.ObjectNotFound, requests.RequestException, OSError)


@dataclass
class _Article:
    version: ArticleVersion
    #: the package_create data
    data: dict[str, Any]
    files: list[FigshareFile]
    #: one line per file skipped
    notes: list[str]


class Importer:
    """Imports DOI entries one by one; holds the run's shared state."""

    def __init__(self, feedback: Feedback | None = None,
                 bars: ProgressBars = no_bars) -> None:
        self.feedback = feedback or Feedback()
        self.bars = bars
        self.session = client.new_session()
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
                                     kinds=frozenset({client.TEMP_KIND}))
            self.org = ensure_organization()
            for entry in entries:
                self._one(entry, path, summary)
        return summary

    def _one(self, entry: DOIEntry, path: Path, summary: Summary) -> None:
        article = entry.article
        if article is None:
            self._fail(summary, f"{path}:{entry.line_number}: malformed DOI "
                       f"{entry.text!r} (expected "
                       "10.6084/m9.figshare.ID.vVERSION)")
            return
        try:
            done = self.import_entry(article)
        except _EXPECTED as exc:
            model.Session.rollback()
            self._fail(summary, f"{article.doi}: {_error_text(exc)}")
            return
        except Exception as exc:
            # A bug must not stop the other DOIs; the log has the traceback.
            model.Session.rollback()
            log.exception("import of %s failed", article.doi)
            self._fail(summary, f"{article.doi}: unexpected error "
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

    def import_entry(self, version: ArticleVersion) -> bool:
        """Import one article version; False if it was already complete."""
        article = self._read(version)
        # Copies of killed runs stay otherwise.
        fsops.remove_stale_temps(_article_folder(version))

        dataset = _find_dataset(article.data)
        if dataset is not None and self._complete(dataset, article):
            self.feedback.info(f"{version.doi}: complete, skipped")
            return False
        dataset = self._open_dataset(dataset, article)
        self._import_files(dataset, article)
        if dataset["state"] != "active":
            # The public tags are set by the dataset-update hook now that
            # the dataset is active and public.
            tk.get_action("package_revise")(ckan_data.site_context(), {
                "match": {"id": dataset["id"]},
                "update": {"state": "active"},
            })
            self.feedback.info(f"{version.doi}: dataset {dataset['name']} "
                               "is active")
        return True

    def _read(self, version: ArticleVersion) -> _Article:
        """The article version as figshare describes it."""
        raw = client.fetch_article(self.session, version)
        check_record(raw)
        data = dataset_dict(raw, version, self.org["id"])
        files, notes = article_files(
            raw, lambda warning: self.feedback.warning(
                f"{version.doi}: {warning}"))
        return _Article(version, data, files, notes)

    def _open_dataset(self, dataset: dict[str, Any] | None,
                      article: _Article) -> dict[str, Any]:
        """The dataset of ``article``, created as a draft if missing."""
        doi = article.version.doi
        if dataset is None:
            dataset = tk.get_action("package_create")(
                ckan_data.site_context(), dict(article.data))
            self.feedback.info(f"{doi}: created draft dataset "
                               f"{dataset['name']}")
        else:
            self.feedback.info(f"{doi}: continuing dataset "
                               f"{dataset['name']} ({dataset['state']})")
        for note in article.notes:
            self.feedback.info(note)
        return dataset

    def _import_files(self, dataset: dict[str, Any],
                      article: _Article) -> None:
        """Every file of ``article`` in depot, CKAN (and S3); SourceError
        naming those that failed."""
        existing = {r["id"]: r for r in dataset.get("resources", [])}
        failures = []
        for fig in article.files:
            try:
                self._import_file(dataset, article.version, fig, existing)
            except _EXPECTED as exc:
                # The other files are still worth fetching; the dataset
                # stays a draft until all are in.
                model.Session.rollback()
                failures.append(f"{fig.name}: {_error_text(exc)}")
        if failures:
            raise errors.SourceError("; ".join(failures)
                                     + " (dataset left as draft)")

    def _complete(self, dataset: dict[str, Any], article: _Article) -> bool:
        """Active with every resource, file and S3 copy in place.

        Each depot file is read and compared with figshare's MD5: a file
        of the right size may still hold other bytes.
        """
        if dataset["state"] != "active":
            return False
        resources = {r["id"]: r for r in dataset.get("resources", [])}
        for fig in article.files:
            rid = resource_id(dataset["id"], fig.id_md5)
            res = resources.get(rid)
            if res is None:
                return False
            target = _target(article.version, fig)
            upload = layout.ckan_upload_path(rid)
            if not upload.is_symlink() or os.readlink(upload) != str(target):
                return False
            if _lacks_s3_copy(res):
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
            self._checked[key] = client.file_checksums(path)
        found = self._checked[key]
        return found if found.md5 == fig.md5 else None

    def _import_file(self, dataset: dict[str, Any], version: ArticleVersion,
                     fig: FigshareFile,
                     existing: dict[str, dict[str, Any]]) -> None:
        target = _target(version, fig)
        rid = resource_id(dataset["id"], fig.id_md5)
        resource = existing.get(rid)
        if resource is None and model.Resource.get(rid) is not None:
            raise errors.SourceError(
                f"resource {rid} exists but is not an active resource of "
                f"{dataset['name']} (deleted?); not re-created")

        checksums = self._ensure_depot_file(fig, target)
        _link(layout.ckan_upload_path(rid), target)

        if resource is not None:
            if _lacks_s3_copy(resource):
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
        with client.downloaded(self.session, fig, config.tmp_dir(),
                               self.bars, f"  {fig.name}"
                               ) as (tmp, fetched):
            if rtdc.claims_rtdc(fig.name):
                # Refused before it enters the depot (dclab recognises
                # HDF5 by its content, the temporary name does not matter).
                rtdc.check_rtdc(tmp)
            _place(tmp, target, fetched.sha256)
        self.feedback.info(f"  {fig.name}: downloaded {fetched.size} bytes, "
                           "MD5 verified")
        return fetched

    def _upload_s3(self, dataset: dict[str, Any], rid: str, path: Path,
                   fig: FigshareFile, sha256: str | None) -> dict[str, Any]:
        bucket = object_store.bucket_name(dataset["owner_org"])
        key = layout.object_key(rid)
        with self.bars(f"  {fig.name} -> S3", fig.size) as step:
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


def _lacks_s3_copy(resource: dict[str, Any]) -> bool:
    """S3 is configured but the resource has no verified copy there."""
    return config.s3_available() and not tk.asbool(
        resource.get("s3_available"))


def import_figshare(limit: int | None = None,
                    feedback: Feedback | None = None,
                    bars: ProgressBars = no_bars) -> Summary:
    """Import the DOIs of the configured list (the first ``limit``)."""
    return Importer(feedback, bars).run(limit)
