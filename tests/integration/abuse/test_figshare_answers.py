"""Hostile and malformed answers of the figshare API.

The figshare stand-in (``tests/support/figshare.py``) serves what each
test plants; an endless stream comes from a second server made here. Every
case ends with exit code 1, one clear line naming the DOI, no traceback,
nothing created and no temporary file left.

Already covered in ``tests/integration/operations/figshare/test_importer.py``:
download URLs of other schemes (``test_download_url_must_be_http_or_
https``), downloads redirected to file:// (``test_redirect_to_another_
scheme_is_refused``, which also follows an http redirect), a download
larger than announced (``test_download_stops_at_the_announced_size``),
MD5 mismatches (``test_md5_mismatch_then_resume``), unknown licenses,
malformed DOI lines, 5xx and 404 answers, look-alike and long names.
"""
from __future__ import annotations

import hashlib
import http.server
import json
import threading

import pytest

from ckanext.dcor_depot.operations.figshare import client
from tests.support.figshare import (
    FakeFigshare,
    dataset_missing,
    doi_of,
    files_below,
    name_of,
    show,
)

LIMIT = client.MAX_RECORD_BYTES


def assert_refused(result, article: dict, *phrases: str) -> None:
    assert result.exit_code == 1, result.output
    assert "0 imported, 0 skipped, 1 failed" in result.stdout
    assert article["doi"] in result.stderr
    for phrase in phrases:
        assert phrase in result.stderr, result.stderr
    assert "Traceback" not in result.output
    assert "unexpected error" not in result.stderr


def plant_record(figshare_site, article: dict, body: bytes) -> str:
    """Serve ``body`` as the API record of ``article``."""
    path = FakeFigshare.article_path(article)
    del figshare_site.fake.articles[path]
    figshare_site.fake.files[path] = body
    return path


class EndlessServer:
    """Answers every GET with 200 and an endless body without
    Content-Length (closed-delimited, as HTTP/1.0 allows)."""

    def __init__(self) -> None:
        self.sent = 0
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 (http.server's naming)
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                piece = b'{"pad": "' + b"x" * 65536
                try:
                    while owner.sent < 1024 * 2**20:  # a safety stop
                        self.wfile.write(piece)
                        owner.sent += len(piece)
                except (BrokenPipeError, ConnectionResetError):
                    pass
                self.close_connection = True

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0),
                                                      Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"


@pytest.fixture
def endless():
    server = EndlessServer()
    thread = threading.Thread(target=server.server.serve_forever,
                              daemon=True)
    thread.start()
    yield server
    server.server.shutdown()
    server.server.server_close()


# ---------------------------------------------------------- huge answers
def test_a_huge_announced_record_is_refused_before_reading(figshare_site):
    art = figshare_site.fake.add_article([{"name": "x.txt", "data": b"x"}])
    body = b'{"id": 1, "pad": "' + b"x" * (4 * LIMIT) + b'"}'
    path = plant_record(figshare_site, art, body)
    figshare_site.write_dois(doi_of(art))

    result = figshare_site.run()

    assert_refused(result, art, f"more than {LIMIT} bytes")
    # refused on the announced length: it hung up almost at once
    assert figshare_site.fake.sent[path] < LIMIT
    assert dataset_missing(art)
    assert figshare_site.fake.downloads() == []


def test_an_endless_record_is_cut_at_the_limit(figshare_site, endless,
                                               monkeypatch, ckan_config):
    art = figshare_site.fake.add_article([{"name": "x.txt", "data": b"x"}])
    # The same DOI, asked of a server whose answer never ends.
    monkeypatch.setitem(ckan_config, "ckanext.dcor_depot.figshare_api_url",
                        endless.url)
    figshare_site.write_dois(doi_of(art))

    result = figshare_site.run()

    assert_refused(result, art, f"more than {LIMIT} bytes")
    # read up to the limit (plus what the sockets buffered), not more
    assert endless.sent < 2 * LIMIT
    assert dataset_missing(art)


@pytest.mark.parametrize("body", [
    b"[" * 200_000 + b"]" * 200_000,  # deeper than the parser's stack
    b"<html>maintenance</html>",
    b"\xff\xfe not even text",
    b'["a", "list"]',
], ids=["nested", "html", "binary", "list"])
def test_answers_that_are_no_record_are_refused(figshare_site, body):
    art = figshare_site.fake.add_article([{"name": "x.txt", "data": b"x"}])
    plant_record(figshare_site, art, body)
    figshare_site.write_dois(doi_of(art))

    result = figshare_site.run()

    assert_refused(result, art, "article")
    assert dataset_missing(art)


# ------------------------------------------------------ malformed records
def broken(article: dict, **changes) -> bytes:
    return json.dumps({**article, **changes}).encode()


def file_changed(article: dict, **changes) -> list[dict]:
    return [{**article["files"][0], **changes}]


@pytest.mark.parametrize("change, phrase", [
    (lambda a: {"files": {"0": a["files"][0]}}, "'files' is a dict"),
    (lambda a: {"files": ["x.txt"]}, "entry of 'files'"),
    (lambda a: {"license": "CC0"}, "'license' is a str"),
    (lambda a: {"authors": [{"full_name": 7}]}, "author name"),
    (lambda a: {"authors": ["Ann"]}, "entry of 'authors'"),
    (lambda a: {"title": ["t"]}, "'title' is a list"),
    (lambda a: {"id": a["id"] + 1}, "the API answered with article"),
    (lambda a: {"files": file_changed(a, size=-1)}, "no valid size (-1)"),
    (lambda a: {"files": file_changed(a, size="10")}, "no valid size"),
    (lambda a: {"files": file_changed(a, size=1e3)}, "no valid size"),
    (lambda a: {"files": file_changed(a, size=True)}, "no valid size"),
    (lambda a: {"files": file_changed(a, size=None)}, "no valid size"),
    (lambda a: {"files": file_changed(a, download_url=["x"])},
     "no download_url"),
], ids=["files-dict", "files-str", "license-str", "author-int",
        "author-str", "title-list", "other-article", "size-negative",
        "size-text", "size-float", "size-bool", "size-none", "url-list"])
def test_malformed_records_are_refused(figshare_site, change, phrase):
    art = figshare_site.fake.add_article([{"name": "x.txt", "data": b"x"}])
    plant_record(figshare_site, art, broken(art, **change(art)))
    figshare_site.write_dois(doi_of(art))

    result = figshare_site.run()

    assert_refused(result, art, phrase)
    assert dataset_missing(art)
    assert figshare_site.fake.downloads() == []


# -------------------------------------------------------- wrong sizes
def test_a_file_shorter_than_announced_is_refused(figshare_site):
    data = b"short file"
    art = figshare_site.fake.add_article([{"name": "s.txt", "data": data,
                                           "size": len(data) + 100}])
    figshare_site.write_dois(doi_of(art))

    result = figshare_site.run()

    assert result.exit_code == 1
    assert "MD5 mismatch" in result.stderr
    assert f"({len(data) + 100} bytes)" in result.stderr
    assert f"({len(data)} bytes)" in result.stderr
    assert show(name_of(art))["resources"] == []
    assert files_below(figshare_site.tmp_dir) == []


# ------------------------------------------------------------- redirects
@pytest.mark.parametrize("location", [
    "file:///etc/passwd", "ftp://127.0.0.1/record.json",
    "gopher://127.0.0.1:70/1"])
def test_a_record_redirected_to_another_scheme_is_refused(figshare_site,
                                                          location):
    art = figshare_site.fake.add_article([{"name": "x.txt", "data": b"x"}])
    figshare_site.fake.redirects[FakeFigshare.article_path(art)] = location
    figshare_site.write_dois(doi_of(art))

    result = figshare_site.run()

    assert_refused(result, art, location, "only http and https")
    assert dataset_missing(art)


def test_a_redirect_loop_ends_with_a_clear_error(figshare_site):
    art = figshare_site.fake.add_article([{"name": "x.txt", "data": b"x"}])
    path = FakeFigshare.article_path(art)
    figshare_site.fake.redirects[path] = figshare_site.fake.url + path
    figshare_site.write_dois(doi_of(art))

    result = figshare_site.run()

    assert_refused(result, art, "redirects")
    assert dataset_missing(art)


def test_a_download_redirected_to_another_host_is_verified(figshare_site):
    """figshare's downloads redirect to another host (its file store);
    that is followed, and the bytes found there are checked."""
    good, bad = b"the real bytes", b"other bytes!!"
    art = figshare_site.fake.add_article([
        {"name": "good.txt", "data": good},
        {"name": "bad.txt", "data": bad,
         "md5": hashlib.md5(b"x" * len(bad)).hexdigest()}])
    other_host = figshare_site.fake.url.replace("127.0.0.1", "localhost")
    for entry in art["files"]:
        path = entry["download_url"].removeprefix(figshare_site.fake.url)
        figshare_site.fake.files["/store" + path] = \
            figshare_site.fake.files[path]
        figshare_site.fake.redirects[path] = other_host + "/store" + path
    figshare_site.write_dois(doi_of(art))

    result = figshare_site.run()

    assert result.exit_code == 1
    assert "bad.txt" in result.stderr and "MD5 mismatch" in result.stderr
    assert [r["name"] for r in show(name_of(art))["resources"]] \
        == ["good.txt"]


# ------------------------------------------------------------ file names
def test_control_characters_in_a_file_name_become_underscores(figshare_site):
    art = figshare_site.fake.add_article([{"name": "cells\x00\r\nday 1.txt",
                                           "data": b"cells"}])
    figshare_site.write_dois(doi_of(art))

    result = figshare_site.run()

    assert result.exit_code == 0, result.output
    [res] = show(name_of(art))["resources"]
    assert res["name"] == "cells___day 1.txt"
