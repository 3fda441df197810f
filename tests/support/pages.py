"""Web pages as the browser tests and the HTTP tests of the operator page
see them: a planted audit report, GETs with a user's token, table cells."""
from __future__ import annotations

import html
import re
from collections.abc import Iterator
from contextlib import contextmanager

import requests

from ckanext.dcor_depot.operations.audit import findings
from tests.support.access import Person

ADMIN_PAGE = "/ckan-admin/dcor-depot"


@contextmanager
def kept_reports() -> Iterator[None]:
    """Reports may be kept (``findings.keep``) or removed inside; the
    site's report from before is put back afterwards."""
    path = findings.last_report_path()
    earlier = path.read_bytes() if path.exists() else None
    try:
        yield
    finally:
        if earlier is None:
            path.unlink(missing_ok=True)
        else:
            path.write_bytes(earlier)


def get(url: str, who: Person | None = None) -> requests.Response:
    """A page as ``who`` sees it (anonymous without)."""
    headers = {"Authorization": who.token} if who else {}
    return requests.get(url, headers=headers, timeout=60,
                        allow_redirects=False)


def text_of(fragment: str) -> str:
    """The text a browser shows of an HTML fragment (tags dropped,
    entities decoded, white space collapsed)."""
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", fragment)).split())


def organization_row(page: str, name: str) -> dict[str, str]:
    """``{cell class: text}`` of an organization's row of the table."""
    found = re.search(rf'<tr data-organization="{re.escape(name)}">'
                      r"(.*?)</tr>", page, re.S)
    assert found, f"no row of {name}"
    return {cls: text_of(cell) for cls, cell in re.findall(
        r'<td class="(dcor-[\w-]+)[^"]*">(.*?)</td>', found.group(1), re.S)}


def storage_box(page: str) -> dict[str, str]:
    """``{cell class: text}`` of the resource page's "Data storage" box
    (empty: no box)."""
    found = re.search(r'<section class="module dcor-depot-storage">'
                      r"(.*?)</section>", page, re.S)
    if not found:
        return {}
    return {cls: text_of(cell) for cls, cell in re.findall(
        r'<td class="(dcor-[\w-]+)">(.*?)</td>', found.group(1), re.S)}


def finding_kinds(page: str) -> list[str]:
    """The kinds of the findings table's rows, top to bottom."""
    return re.findall(r'<tr data-kind="([\w-]+)">', page)
