"""What a figshare article version becomes in CKAN, without CKAN.

DOI parsing, license mapping, the dataset and resource ids derived from
the DOI and the files' MD5s, the ``package_create`` data of an article
version and the depot names of its files. Nothing here reads the CKAN
config or does I/O other than reading the DOI list, so it can be used
(and tested) anywhere.
"""
from __future__ import annotations

import collections
import dataclasses
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import html2text

from ckanext.dcor_depot import errors
from ckanext.dcor_depot.storage.fsops import NAME_MAX, safe_component
from ckanext.dcor_depot.storage.ids import reproducible_id

#: Hex digits of the MD5 that tell files with look-alike names apart.
MD5_TAG_LENGTH = 12

_DOI_RE = re.compile(
    r"^(?:doi:|https?://(?:dx\.)?doi\.org/)?"
    r"10\.6084/m9\.figshare\.(?P<id>[1-9][0-9]*)\.v(?P<version>[1-9][0-9]*)$",
    re.IGNORECASE)
_BARE_DOI_RE = re.compile(r"^10\.\d{4,9}/\S+$")
_EXTENSION_RE = re.compile(r"\.[A-Za-z0-9]{1,16}$")
_MD5_RE = re.compile(r"[0-9a-f]{32}")
_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]")
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


# ------------------------------------------------------------- DOI list
@dataclass(frozen=True)
class ArticleVersion:
    """One version of a figshare article, as a DOI names it."""

    article_id: int
    version: int

    @property
    def doi(self) -> str:
        return f"10.6084/m9.figshare.{self.article_id}.v{self.version}"


@dataclass(frozen=True)
class DOIEntry:
    """A line of the DOI list; ``article`` is None if it is malformed."""

    line_number: int
    text: str
    article: ArticleVersion | None = None


def parse_doi(text: str) -> ArticleVersion | None:
    """The article version a figshare DOI names, None if malformed."""
    match = _DOI_RE.match(text.strip())
    if not match:
        return None
    return ArticleVersion(int(match["id"]), int(match["version"]))


def read_doi_list(path: Path) -> list[DOIEntry]:
    """The entries of a DOI file; blank lines and ``#`` comments skipped."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise errors.SourceError(f"cannot read the DOI list {path}: "
                                 f"{getattr(exc, 'strerror', None) or exc}"
                                 ) from exc
    entries = []
    for number, raw in enumerate(lines, 1):
        text = raw.split("#", 1)[0].strip()
        if text:
            entries.append(DOIEntry(number, text, parse_doi(text)))
    return entries


# ------------------------------------------------------ dataset metadata
def dataset_name(article_id: int, version: int) -> str:
    return f"figshare-{article_id}-v{version}"


def dataset_id(doi: str, name: str) -> str:
    """Reproducible dataset id: of the DOI as figshare's API gives it
    (``doi`` of the article) and the dataset name (upstream's formula)."""
    return reproducible_id(doi, name)


def resource_id(dataset_uuid: str, supplied_md5: str) -> str:
    """Reproducible resource id: of the id of the dataset and the file's
    ``supplied_md5`` as figshare lists it (upstream's formula)."""
    return reproducible_id(dataset_uuid, supplied_md5)


def api_doi(article: dict[str, Any], version: ArticleVersion) -> str:
    """The article's DOI as the API gives it; the listed one if it gives
    none (upstream could not import such a record, no id to match)."""
    doi = article.get("doi")
    return doi if isinstance(doi, str) and doi else version.doi


def license_id(name: str) -> str:
    """CKAN license id of a figshare license name; SourceError if none."""
    normalized = re.sub(r"\s+", " ", (name or "").strip().upper())
    match = _CC_RE.match(normalized)
    if match:
        kind = re.sub(r"[\s-]+", "-", match["kind"])
        if kind in LICENSES:
            return LICENSES[kind]
    raise errors.SourceError(
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


def _extras(article: dict[str, Any], doi: str) -> list[dict[str, str]]:
    """DOI, authors and references, as CKAN extras."""
    authors = [(a.get("full_name") or "").strip()
               for a in article.get("authors") or []]
    references = [format_reference(r) for r in article.get("references") or []
                  if isinstance(r, str) and r.strip()]
    extras = [{"key": "doi", "value": doi}]
    if any(authors):
        extras.append({"key": "authors",
                       "value": ", ".join(a for a in authors if a)})
    if references:
        extras.append({"key": "references", "value": "\n".join(references)})
    return extras


def dataset_dict(article: dict[str, Any], version: ArticleVersion,
                 owner_org: str) -> dict[str, Any]:
    """The package_create data of an article version (draft, public)."""
    name = dataset_name(version.article_id, version.version)
    license_name = (article.get("license") or {}).get("name", "")
    return {
        "id": dataset_id(api_doi(article, version), name),
        "name": name,
        "title": (article.get("title") or "").strip() or name,
        "notes": html_to_markdown(article.get("description") or ""),
        "license_id": license_id(license_name),
        "url": f"https://doi.org/{version.doi}",
        "owner_org": owner_org,
        "private": False,
        "state": "draft",
        "extras": _extras(article, version.doi),
    }


# ----------------------------------------------------------------- files
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
    #: figshare's supplied_md5 verbatim (not normalized: it names the
    #: resource, see :attr:`id_md5`)
    supplied_md5: str = ""

    @property
    def id_md5(self) -> str:
        """The MD5 the resource id derives from: ``supplied_md5`` as
        figshare lists it (upstream's ids), ``computed_md5`` if figshare
        supplies none (upstream could not import such a file)."""
        return self.supplied_md5 or self.md5

    @classmethod
    def from_api(cls, data: dict[str, Any]) -> FigshareFile:
        # Control characters (NUL: PostgreSQL refuses it) are no part of
        # a name anybody can type; they become "_" as in the depot.
        name = _CONTROL_RE.sub("_", str(data.get("name") or ""))
        raw_supplied = data.get("supplied_md5")
        if not isinstance(raw_supplied, str):
            raw_supplied = ""
        computed = str(data.get("computed_md5") or "").strip().lower()
        supplied = raw_supplied.strip().lower()
        md5 = computed or supplied
        warning = ""
        if computed and supplied and computed != supplied:
            # computed_md5 is what figshare found in the bytes it serves;
            # supplied_md5 still names the resource (upstream's ids).
            warning = (f"file {name!r}: figshare's supplied_md5 {supplied} "
                       f"differs from its computed_md5 {computed}; "
                       "verifying against computed_md5")
        if not _MD5_RE.fullmatch(md5):
            raise errors.SourceError(
                f"file {name!r}: figshare gives no valid MD5 "
                f"({md5 or 'none'}), so it cannot be "
                "verified")
        if not data.get("download_url") or not isinstance(
                data["download_url"], str):
            raise errors.SourceError(f"file {name!r}: figshare gives no "
                                     "download_url")
        size = data.get("size")
        if isinstance(size, bool) or not isinstance(size, int) or size < 0:
            raise errors.SourceError(
                f"file {name!r}: figshare gives no valid "
                f"size ({size!r}), so it cannot be verified")
        return cls(name=name, size=size, md5=md5,
                   download_url=data["download_url"], md5_warning=warning,
                   supplied_md5=raw_supplied)


#: What the mapping reads from an API record, and as what.
_RECORD_TYPES: dict[str, type] = {
    "doi": str, "title": str, "description": str, "license": dict,
    "authors": list, "references": list, "files": list}


def check_record(article: dict[str, Any]) -> None:
    """SourceError unless the record's fields have the types figshare
    gives them (a malformed or hostile answer is one clear line, not an
    error deep in the mapping)."""
    for key, kind in _RECORD_TYPES.items():
        value = article.get(key)
        if value is not None and not isinstance(value, kind):
            raise errors.SourceError(
                f"malformed API record: {key!r} is a {type(value).__name__}"
                f", not a {kind.__name__}")
    for key in ("authors", "files"):
        if not all(isinstance(item, dict) for item in article.get(key) or []):
            raise errors.SourceError(
                f"malformed API record: an entry of {key!r} "
                "is not an object")
    names = [(article.get("license") or {}).get("name")] + [
        author.get("full_name") for author in article.get("authors") or []]
    if not all(name is None or isinstance(name, str) for name in names):
        raise errors.SourceError("malformed API record: a license or author "
                                 "name is not text")


def article_files(article: dict[str, Any],
                  warn: Callable[[str], Any]
                  ) -> tuple[list[FigshareFile], list[str]]:
    """The files of an article's API record that are to be imported, with
    their depot names, and a note per file skipped.

    Link-only files are skipped (their bytes are elsewhere); a file
    without a usable MD5 or download URL fails the whole article.
    ``warn`` hears of each file whose checksums figshare gives differently,
    as soon as it is read.
    """
    candidates: list[FigshareFile] = []
    notes: list[str] = []
    for item in article.get("files") or []:
        if item.get("is_link_only"):
            name = item.get("name") or item.get("download_url")
            notes.append(f"  {name}: link-only, skipped")
            continue
        fig = FigshareFile.from_api(item)
        if fig.md5_warning:
            warn(fig.md5_warning)
        candidates.append(fig)
    files, duplicates = distinct_files(candidates)
    return files, notes + duplicates


def distinct_files(candidates: list[FigshareFile]
                   ) -> tuple[list[FigshareFile], list[str]]:
    """The files of an article to import, with their depot names, and a
    note per file skipped.

    The same bytes are one resource, the file first by name (not by
    figshare's listing order, which may change between reruns, and with
    it the depot names). Distinct bytes listed with one ``supplied_md5``
    would share a resource id: SourceError.
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
    by_id: dict[str, list[str]] = collections.defaultdict(list)
    for fig in files:
        by_id[fig.id_md5].append(fig.name)
    clashes = [names for names in by_id.values() if len(names) > 1]
    if clashes:
        raise errors.SourceError(
            "files with different bytes have the same supplied_md5, so "
            "they would share a resource id: "
            + "; ".join(", ".join(repr(n) for n in sorted(names))
                        for names in clashes))
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
        raise errors.SourceError("the files of this article cannot be given "
                                 "distinct depot names: "
                                 + ", ".join(repr(f.name) for f in files))
    return names


def _is_plain(name: str) -> bool:
    return safe_component(name, fallback="file") == name


def _tagged_name(fig: FigshareFile) -> str:
    """``{stem}.{md5 start}{extension}``, a safe name of at most 255 bytes.

    The extension stays last (users and dclab recognise files by it).
    """
    name = fig.name.rstrip()
    match = _EXTENSION_RE.search(name)
    extension = match.group(0) if match else ""
    tag = f".{fig.md5[:MD5_TAG_LENGTH]}{extension}"
    stem = safe_component(name[:len(name) - len(extension)],
                          NAME_MAX - len(tag.encode()), fallback="file")
    return stem + tag
