"""A stand-in for Solr, for development and tests only.

Solr is not installable on the machines this project is developed on, and
CKAN indexes datasets synchronously, so dataset actions fail without a
search server. This stub keeps what CKAN sends to ``<core>/update`` in
memory (optionally saved to a JSON file, so a restarted stack still lists
its datasets) and answers the queries CKAN's pages and ``package_search``
make: ``q`` (free text or ``field:value``), ``fq`` (the ``+field:value``,
``field:"value"``, ``field:(a OR b)``, ``-field:value`` forms CKAN sends,
permission labels included), ``sort``, ``rows``, ``start``, ``fl`` and
facet counts. It does no relevance ranking, stemming or date math. The
plugin does not depend on it; production runs a real Solr.

Usage: python solr_stub.py PORT [PIDFILE [INDEX_FILE]]
"""
from __future__ import annotations

import json
import os
import re
import signal
import sys
import threading
import xml.etree.ElementTree as ElementTree
from collections import Counter
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

# CKAN 2.9-2.12 accept this schema name; 2.11 rejects "ckan-2.12".
SCHEMA_XML = (b'<?xml version="1.0"?>\n'
              b'<schema name="ckan-2.10" version="1.6"/>\n')
#: Fields a free-text term is looked for in (Solr copies them to "text").
TEXT_FIELDS = ("name", "title", "notes", "text", "tags", "groups",
               "organization", "res_name", "res_description", "author",
               "maintainer", "url")
#: Seconds between two saves of the index file (a test run sends many).
SAVE_INTERVAL = 10.0

Doc = dict[str, Any]
Predicate = Callable[[Doc], bool]
Params = dict[str, list[str]]

TOKEN_RE = re.compile(r"""
    (?P<space>\s+)
  | (?P<open>\()
  | (?P<close>\))
  | (?P<range>[\[{][^\]}]*[\]}])
  | (?P<quoted>"(?:[^"\\]|\\.)*")
  | (?P<word>(?:[^\s()"\\\[{]|\\.)+)
""", re.VERBOSE)
OPERATORS = {"AND": "and", "&&": "and", "OR": "or", "||": "or",
             "NOT": "not", "!": "not"}


# ------------------------------------------------------------ query parsing
def tokenize(query: str) -> list[tuple[str, str]]:
    """Split a Lucene-style query into (kind, text) tokens."""
    tokens: list[tuple[str, str]] = []
    for match in TOKEN_RE.finditer(query):
        kind, text = match.lastgroup or "space", match.group()
        if kind == "space":
            continue
        if kind == "word" and text in OPERATORS:
            tokens.append((OPERATORS[text], text))
            continue
        if kind == "word" and text[0] in "+-":
            tokens.append(("mod", text[0]))
            text = text[1:]
            if not text:
                continue
        tokens.append((kind, text))
    return tokens


def unescape(text: str) -> str:
    return re.sub(r"\\(.)", r"\1", text)


def split_field(word: str) -> tuple[str | None, str]:
    """``field:value`` -> (field, value); a bare word has no field."""
    match = re.match(r"((?:[^:\\]|\\.)+):(.*)$", word, re.DOTALL)
    if match is None:
        return None, word
    return match.group(1), match.group(2)


class QueryParser:
    """Lucene's standard syntax, as far as CKAN uses it (default AND)."""

    def __init__(self, query: str) -> None:
        self.tokens = tokenize(query)
        self.pos = 0

    def parse(self) -> Predicate:
        if not self.tokens:
            return lambda doc: True
        predicate = self.parse_or(None)
        if self.pos < len(self.tokens):
            raise ValueError(f"unexpected {self.tokens[self.pos][1]!r}")
        return predicate

    def peek(self) -> str | None:
        return self.tokens[self.pos][0] if self.pos < len(self.tokens) \
            else None

    def take(self) -> tuple[str, str]:
        if self.pos >= len(self.tokens):
            raise ValueError("query ends too early")
        self.pos += 1
        return self.tokens[self.pos - 1]

    def parse_or(self, field: str | None) -> Predicate:
        choices = [self.parse_and(field)]
        while self.peek() == "or":
            self.take()
            choices.append(self.parse_and(field))
        if len(choices) == 1:
            return choices[0]
        return lambda doc: any(choice(doc) for choice in choices)

    def parse_and(self, field: str | None) -> Predicate:
        parts = [self.parse_unary(field)]
        while self.peek() not in (None, "or", "close"):
            if self.peek() == "and":
                self.take()
            parts.append(self.parse_unary(field))
        if len(parts) == 1:
            return parts[0]
        return lambda doc: all(part(doc) for part in parts)

    def parse_unary(self, field: str | None) -> Predicate:
        kind, text = self.tokens[self.pos] if self.peek() else ("", "")
        if kind == "not" or (kind == "mod" and text == "-"):
            self.take()
            inner = self.parse_unary(field)
            return lambda doc: not inner(doc)
        if kind == "mod":
            self.take()
        return self.parse_primary(field)

    def parse_primary(self, field: str | None) -> Predicate:
        kind, text = self.take()
        if kind == "open":
            inner = self.parse_or(field)
            if self.take()[0] != "close":
                raise ValueError("unbalanced parentheses")
            return inner
        if kind == "quoted":
            return term_predicate(field, unescape(text[1:-1]), phrase=True)
        if kind == "range":
            return range_predicate(field, text)
        if kind != "word":
            raise ValueError(f"unexpected {text!r}")
        name, value = split_field(text)
        if name is None:
            return term_predicate(field, unescape(text))
        if value:
            return term_predicate(name, unescape(value))
        return self.parse_primary(unescape(name))


def parse_query(query: str) -> Predicate:
    return QueryParser(query).parse()


# ----------------------------------------------------------------- matching
def field_values(doc: Doc, field: str) -> list[str]:
    """A field's values as Solr would compare them (bools in lower case)."""
    value = doc.get(field)
    values = value if isinstance(value, list) else [value]
    return [str(v).lower() if isinstance(v, bool) else str(v)
            for v in values if v is not None and v != ""]


def text_of(doc: Doc) -> str:
    return " ".join(" ".join(field_values(doc, field))
                    for field in TEXT_FIELDS).lower()


def term_predicate(field: str | None, value: str,
                   phrase: bool = False) -> Predicate:
    """Exact match on a field (``*`` and ``prefix*`` allowed); free text
    (no field, or "text") matches a word or phrase case-insensitively."""
    if value == "*" and not phrase:
        if field in (None, "*"):
            return lambda doc: True
        return lambda doc: bool(field_values(doc, field))
    if field in (None, "text"):
        needle = value.lower().rstrip("*")
        return lambda doc: needle in text_of(doc)
    if field in ("title", "notes", "res_name", "res_description"):
        needle = value.lower()
        return lambda doc: any(needle in v.lower()
                               for v in field_values(doc, field))
    if value.endswith("*") and not phrase:
        prefix = value[:-1]
        return lambda doc: any(v.startswith(prefix)
                               for v in field_values(doc, field))
    return lambda doc: value in field_values(doc, field)


def range_predicate(field: str | None, text: str) -> Predicate:
    """``[low TO high]``, bounds inclusive; ``*`` and date math are open."""
    bounds = [unescape(b.strip().strip('"'))
              for b in text[1:-1].split(" TO ")]
    if field is None or len(bounds) != 2:
        raise ValueError(f"cannot read the range {text!r}")
    low, high = (None if b == "*" or "NOW" in b else b for b in bounds)

    def inside(value: str) -> bool:
        return (low is None or compare(value, low) >= 0) \
            and (high is None or compare(value, high) <= 0)
    return lambda doc: any(inside(v) for v in field_values(doc, field))


def compare(left: str, right: str) -> int:
    """Numbers as numbers, anything else (ISO dates too) as text."""
    try:
        difference = float(left) - float(right)
    except ValueError:
        return (left > right) - (left < right)
    return (difference > 0) - (difference < 0)


# ------------------------------------------------------------------- search
def sort_docs(docs: list[Doc], sort: str) -> list[Doc]:
    """Solr's ``sort``; "score" (no ranking here) means newest first."""
    keys = [part.split() for part in sort.split(",") if part.strip()]
    keys = [key for key in keys if key[0] != "score"] \
        or [["metadata_modified", "desc"]]
    ordered = list(docs)
    for key in reversed(keys):
        field = key[0]
        descending = len(key) > 1 and key[1].lower() == "desc"
        ordered.sort(key=lambda doc: sort_value(doc.get(field)),
                     reverse=descending)
    return ordered


def sort_value(value: Any) -> tuple[int, float, str]:
    if isinstance(value, list):
        value = value[0] if value else None
    if value is None:
        return (0, 0.0, "")
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return (1, float(value), "")
    return (2, 0.0, str(value))


def facet_counts(docs: list[Doc], params: Params) -> dict[str, list[Any]]:
    """Solr's flat ``[value, count, value, count, ...]`` per facet field."""
    fields: list[str] = []
    for value in params.get("facet.field", []):
        fields.extend(json.loads(value) if value.startswith("[")
                      else [value])
    limit = int(first(params, "facet.limit", "100"))
    mincount = int(first(params, "facet.mincount", "0"))
    result: dict[str, list[Any]] = {}
    for field in fields:
        counts = Counter(v for doc in docs for v in field_values(doc, field))
        ranked = sorted((item for item in counts.items()
                         if item[1] >= mincount),
                        key=lambda item: (-item[1], item[0]))
        if limit >= 0:
            ranked = ranked[:limit]
        result[field] = [x for item in ranked for x in item]
    return result


def select_fields(doc: Doc, fl: str) -> Doc:
    fields = [f for f in re.split(r"[\s,]+", fl) if f]
    if not fields or "*" in fields:
        return dict(doc)
    chosen = {f: doc[f] for f in fields if f in doc}
    if "score" in fields:
        chosen["score"] = 1.0
    return chosen


def first(params: Params, name: str, default: str) -> str:
    values = params.get(name)
    return values[0] if values and values[0] != "" else default


# -------------------------------------------------------------------- index
class Index:
    """The documents by Solr's unique key (CKAN's ``index_id``)."""

    def __init__(self, index_file: Path | None = None) -> None:
        self.docs: dict[str, Doc] = {}
        self.lock = threading.Lock()
        self.index_file = index_file
        self.unsaved = False
        if index_file is not None and index_file.exists():
            try:
                self.docs = json.loads(index_file.read_text("utf-8"))
            except ValueError as exc:  # a broken file: start empty
                print(f"{index_file}: {exc}; index empty", file=sys.stderr)

    def add(self, docs: list[Doc]) -> None:
        with self.lock:
            for doc in docs:
                key = str(doc.get("index_id") or doc.get("id"))
                self.docs[key] = doc
            self.unsaved = True

    def delete(self, message: bytes) -> None:
        """``<delete><id>…</id><query>…</query></delete>`` as pysolr sends
        it (a ``<commit/>`` needs nothing: every change is visible)."""
        root = ElementTree.fromstring(message)
        if root.tag != "delete":
            return
        keys = [el.text or "" for el in root.iter("id")]
        queries = [parse_query(el.text or "") for el in root.iter("query")]
        with self.lock:
            for key, doc in list(self.docs.items()):
                if key in keys or any(match(doc) for match in queries):
                    del self.docs[key]
            self.unsaved = True

    def search(self, params: Params) -> Doc:
        predicates = [parse_query(first(params, "q", "*:*"))]
        predicates += [parse_query(fq) for fq in params.get("fq", [])]
        with self.lock:
            found = [doc for doc in self.docs.values()
                     if all(match(doc) for match in predicates)]
        found = sort_docs(found, first(params, "sort", "score desc"))
        start = int(first(params, "start", "0"))
        rows = int(first(params, "rows", "10"))
        fl = first(params, "fl", "*")
        body: Doc = {
            "responseHeader": {"status": 0, "QTime": 0},
            "response": {"numFound": len(found), "start": start, "docs": [
                select_fields(doc, fl) for doc in found[start:start + rows]]},
        }
        if first(params, "facet", "false") == "true":
            body["facet_counts"] = {
                "facet_queries": {}, "facet_ranges": {},
                "facet_fields": facet_counts(found, params)}
        return body

    def save(self) -> None:
        """Write the index file (atomically), if there is one to write."""
        if self.index_file is None or not self.unsaved:
            return
        with self.lock:
            text = json.dumps(self.docs)
            self.unsaved = False
        partial = self.index_file.with_name(self.index_file.name + ".tmp")
        partial.write_text(text, encoding="utf-8")
        os.replace(partial, self.index_file)

    def save_regularly(self) -> None:
        while True:
            threading.Event().wait(SAVE_INTERVAL)
            self.save()


# --------------------------------------------------------------------- HTTP
class SolrStubHandler(BaseHTTPRequestHandler):
    index: Index  # set by make_server

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        payload = self.rfile.read(length) if length else b""
        url = urlparse(self.path)
        path = url.path.rstrip("/")
        params = parse_qs(url.query, keep_blank_values=True)
        if "form-urlencoded" in (self.headers.get("Content-Type") or ""):
            for name, values in parse_qs(payload.decode(),
                                         keep_blank_values=True).items():
                params.setdefault(name, []).extend(values)
        if path.endswith("/schema") or path.endswith("/admin/file"):
            self._send(200, SCHEMA_XML, "application/xml")
            return
        try:
            status, body = 200, self._route(path, params, payload)
        except (ValueError, ElementTree.ParseError) as exc:
            # Solr's shape of an error, which pysolr turns into SolrError.
            status, body = 400, {"responseHeader": {"status": 400},
                                 "error": {"msg": str(exc), "code": 400}}
        self._send(status, json.dumps(body).encode(), "application/json")

    def _route(self, path: str, params: Params, payload: bytes) -> Doc:
        body: Doc = {"responseHeader": {"status": 0, "QTime": 0}}
        if path.endswith("/select"):
            return self.index.search(params)
        if path.endswith("/update"):
            self._update(payload)
        elif path.endswith("/admin/ping"):
            body["status"] = "OK"
        return body

    def _update(self, payload: bytes) -> None:
        text = payload.strip()
        if text.startswith(b"["):
            self.index.add(json.loads(text))
        elif text.startswith(b"{"):  # Solr's JSON commands: {"add": {...}}
            command = json.loads(text)
            if "add" in command:
                self.index.add([command["add"].get("doc", command["add"])])
        elif text.startswith(b"<"):
            self.index.delete(text)

    def _send(self, status: int, data: bytes, ctype: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = _answer

    def log_message(self, fmt: str, *args: Any) -> None:
        pass  # quiet: CKAN queries on every page


def make_server(port: int, index: Index) -> ThreadingHTTPServer:
    """A stand-in on 127.0.0.1:PORT (0: a free port) serving ``index``."""
    handler = type("BoundHandler", (SolrStubHandler,), {"index": index})
    return ThreadingHTTPServer(("127.0.0.1", port), handler)


def main(argv: list[str]) -> None:
    index_file = Path(argv[3]) if len(argv) > 3 else None
    index = Index(index_file)
    server = make_server(int(argv[1]), index)
    if len(argv) > 2:
        Path(argv[2]).write_text(str(os.getpid()))
    threading.Thread(target=index.save_regularly, daemon=True).start()
    # stop.sh ends the stand-in with SIGTERM: save what came since.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        server.serve_forever()
    finally:
        index.save()


if __name__ == "__main__":
    main(sys.argv)
