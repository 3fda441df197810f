"""The figshare API as the importer meets it in the tests: a stand-in
HTTP server on 127.0.0.1 (figshare itself cannot be reached) serving the
articles and files a test plants, and helpers naming what an import
makes of them."""
from __future__ import annotations

import hashlib
import http.server
import itertools
import json
import random
from pathlib import Path

import ckan.plugins.toolkit as tk
from ckan.tests import helpers

from ckanext.dcor_depot import config


class FakeFigshare:
    """Articles and files served like the figshare API (v2) does."""

    def __init__(self) -> None:
        self.articles: dict[str, dict] = {}
        self.files: dict[str, bytes] = {}
        #: paths of all GET requests, in order
        self.requests: list[str] = []
        #: path -> status codes to answer with before answering properly
        self.failures: dict[str, list[int]] = {}
        #: path -> Location of a redirect (302) answered instead
        self.redirects: dict[str, str] = {}
        #: path -> bytes of the body written before the client went away
        self.sent: dict[str, int] = {}
        self._ids = itertools.count(random.randint(10**6, 10**7))
        handler = self._handler()
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0),
                                                      handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def _handler(self):
        fake = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 (http.server's naming)
                fake.requests.append(self.path)
                pending = fake.failures.get(self.path)
                if pending:
                    self.send(pending.pop(0), b"temporary failure")
                elif self.path in fake.redirects:
                    self.send_response(302)
                    self.send_header("Location", fake.redirects[self.path])
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                elif self.path in fake.articles:
                    self.send(200, json.dumps(fake.articles[self.path])
                              .encode(), "application/json")
                elif self.path in fake.files:
                    self.send(200, fake.files[self.path],
                              "application/octet-stream")
                else:
                    self.send(404, b'{"message": "Entity not found"}',
                              "application/json")

            def send(self, status, body, ctype="text/plain"):
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                # In pieces, counting what the client took before it hung
                # up (a download that stops early).
                fake.sent[self.path] = 0
                step = 64 * 1024
                try:
                    for start in range(0, len(body), step):
                        self.wfile.write(body[start:start + step])
                        fake.sent[self.path] += len(body[start:start + step])
                except (BrokenPipeError, ConnectionResetError):
                    self.close_connection = True

            def log_message(self, *args):
                pass

        return Handler

    def add_article(self, files: list[dict], license: str = "CC0",
                    **fields) -> dict:
        """An article version; ``files`` items: name and data (bytes) or
        link_only True."""
        article_id = next(self._ids)
        version = fields.pop("version", 2)
        doi = f"10.6084/m9.figshare.{article_id}.v{version}"
        entries = []
        for item in files:
            file_id = next(self._ids)
            if item.get("link_only"):
                entries.append({
                    "id": file_id, "name": item["name"], "size": 0,
                    "is_link_only": True,
                    "download_url": "https://example.org/elsewhere",
                    "supplied_md5": "", "computed_md5": ""})
                continue
            data = item["data"]
            path = f"/files/{file_id}"
            self.files[path] = data
            md5 = item.get("md5") or hashlib.md5(data).hexdigest()
            entries.append({
                "id": file_id, "name": item["name"],
                "size": item.get("size", len(data)),
                "is_link_only": False,
                "download_url": item.get("download_url", self.url + path),
                # figshare lists the uploader's MD5 (usually the same)
                "supplied_md5": item.get("supplied_md5", md5),
                "computed_md5": md5})
        article = {
            "id": article_id,
            "version": version,
            "doi": doi,
            "title": fields.get("title", f"Measurement {article_id}"),
            "description": fields.get(
                "description", "<p>Blood cells in <b>flow</b>.</p>"),
            "authors": [{"full_name": n}
                        for n in fields.get("authors", ["Ann Alpha"])],
            "references": fields.get("references", []),
            "license": {"value": 1, "name": license,
                        "url": "https://creativecommons.org/"},
            "files": entries,
        }
        self.articles[self.article_path(article)] = article
        return article

    @staticmethod
    def article_path(article: dict) -> str:
        return f"/articles/{article['id']}/versions/{article['version']}"

    def downloads(self) -> list[str]:
        return [p for p in self.requests if p.startswith("/files/")]


def doi_of(article: dict) -> str:
    return article["doi"]


def show(name: str) -> dict:
    return helpers.call_action("package_show", id=name)


def name_of(article: dict) -> str:
    return f"figshare-{article['id']}-v{article['version']}"


def depot_file(article: dict, name: str) -> Path:
    return (config.depots_path() / "figshare" / str(article["id"])
            / f"v{article['version']}" / name)


def dataset_missing(article: dict) -> bool:
    try:
        show(name_of(article))
    except tk.ObjectNotFound:
        return True
    return False


def files_below(path: Path) -> list[Path]:
    return [p for p in path.rglob("*") if p.is_file()] if path.exists() \
        else []
