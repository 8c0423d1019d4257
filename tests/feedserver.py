"""A real HTTP server on 127.0.0.1 that serves the feed corpus, with the behaviours feeds show.

Paths:
  /<folder>/<file>          the corpus file, with ETag and Last-Modified; 304 on a match
  /gzip/<folder>/<file>     the same, gzip-encoded
  /moved/<folder>/<file>    301 to the file (a permanent redirect)
  /temporary/<folder>/<file>  302 to the file
  /gone                     410
  /error                    500
  /slow                     answers after `slow_seconds`
  /hang                     reads the request and never answers
"""

from __future__ import annotations

import gzip
import hashlib
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

LAST_MODIFIED = formatdate(1_700_000_000, usegmt=True)


@dataclass
class FeedServer:
    root: Path
    host: str
    port: int
    requests: list[tuple[str, dict[str, str]]] = field(default_factory=list)
    slow_seconds: float = 3.0
    release: threading.Event = field(default_factory=threading.Event)

    def url(self, path: str) -> str:
        return f"http://{self.host}:{self.port}/{path.lstrip('/')}"

    def count(self, path: str) -> int:
        return sum(1 for requested, _ in self.requests if requested == "/" + path.lstrip("/"))


def _handler(server_state: FeedServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: object) -> None:
            return

        def do_GET(self) -> None:
            server_state.requests.append((self.path, dict(self.headers.items())))
            path = self.path.split("?")[0]
            if path == "/hang":
                server_state.release.wait(30)
                return None
            if path == "/slow":
                time.sleep(server_state.slow_seconds)
            if path == "/gone":
                return self._reply(410, b"gone")
            if path == "/error":
                return self._reply(500, b"oops")
            for prefix, code in (("/moved/", 301), ("/temporary/", 302)):
                if path.startswith(prefix):
                    return self._reply(code, b"", {"Location": "/" + path[len(prefix) :]})
            compress = path.startswith("/gzip/")
            target = (server_state.root / path.removeprefix("/gzip/").lstrip("/")).resolve()
            if server_state.root not in target.parents or not target.is_file():
                return self._reply(404, b"not found")
            body = target.read_bytes()
            etag = '"' + hashlib.sha256(body).hexdigest()[:16] + '"'
            if (
                self.headers.get("If-None-Match") == etag
                or self.headers.get("If-Modified-Since") == LAST_MODIFIED
            ):
                return self._reply(304, b"", {"ETag": etag})
            headers = {
                "ETag": etag,
                "Last-Modified": LAST_MODIFIED,
                "Content-Type": "application/xml",
            }
            if compress:
                body = gzip.compress(body)
                headers["Content-Encoding"] = "gzip"
            return self._reply(200, body, headers)

        def _reply(self, code: int, body: bytes, headers: dict[str, str] | None = None) -> None:
            self.send_response(code)
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    return Handler


@contextmanager
def serve(root: Path) -> Iterator[FeedServer]:
    state = FeedServer(root.resolve(), "127.0.0.1", 0)
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    httpd.daemon_threads = True
    state.port = httpd.server_address[1]
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        state.release.set()
        httpd.shutdown()
        httpd.server_close()
