"""A stand-in for Solr, for development and tests only.

Solr is not installable on the machines this project is developed on, and
CKAN indexes datasets synchronously, so dataset actions fail without a
search server. This stub accepts every index update and answers every
search with zero hits. The plugin does not use search; production runs a
real Solr. Usage: python solr_stub.py PORT PIDFILE
"""
import json
import os
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlparse

# CKAN 2.9-2.12 accept this schema name; 2.11 rejects "ckan-2.12".
SCHEMA_XML = (b'<?xml version="1.0"?>\n'
              b'<schema name="ckan-2.10" version="1.6"/>\n')


class SolrStubHandler(BaseHTTPRequestHandler):
    def _answer(self):
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        path = urlparse(self.path).path.rstrip("/")
        if path.endswith("/schema") or path.endswith("/admin/file"):
            self._send(SCHEMA_XML, "application/xml")
            return
        body = {"responseHeader": {"status": 0, "QTime": 0}}
        if path.endswith("/select"):
            body["response"] = {"numFound": 0, "start": 0, "docs": []}
            body["facet_counts"] = {"facet_fields": {}, "facet_queries": {},
                                    "facet_ranges": {}}
        elif path.endswith("/admin/ping"):
            body["status"] = "OK"
        self._send(json.dumps(body).encode(), "application/json")

    def _send(self, data, ctype):
        self.send_response(200)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = _answer

    def log_message(self, fmt, *args):  # quiet
        pass


def main():
    port = int(sys.argv[1])
    server = ThreadingHTTPServer(("127.0.0.1", port), SolrStubHandler)
    if len(sys.argv) > 2:
        with open(sys.argv[2], "w") as fd:
            fd.write(str(os.getpid()))
    server.serve_forever()


if __name__ == "__main__":
    main()
