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
  /redirect?code=C&to=URL   C (302 unless given) to any URL: another server, file://, ...
  /trickle/<folder>/<file>  the file, one byte every `trickle_seconds` (at most 40 of them)
  /trickle-headers          its headers one byte every `trickle_seconds` (at most 40)
  /bomb                     gzip that inflates to 1 GiB of zeros (1 MB on the wire)
  /huge                     200 MB of feed-like bytes with a Content-Length
  /huge-unsized             the same 200 MB chunked, with no Content-Length
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import struct
import threading
import time
import zlib
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

LAST_MODIFIED = formatdate(1_700_000_000, usegmt=True)


@dataclass
class FeedServer:
    root: Path
    host: str
    port: int
    requests: list[tuple[str, dict[str, str]]] = field(default_factory=list)
    slow_seconds: float = 3.0
    trickle_seconds: float = 0.5
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

        def handle(self) -> None:
            with suppress(ConnectionError):  # a client that hung up: the fetch refusing a body
                super().handle()

        def do_GET(self) -> None:
            server_state.requests.append((self.path, dict(self.headers.items())))
            path = self.path.split("?")[0]
            if path == "/hang":
                server_state.release.wait(30)
                return None
            if path == "/slow":
                time.sleep(server_state.slow_seconds)
            if path == "/redirect":
                query = parse_qs(urlsplit(self.path).query)
                code = int(query.get("code", ["302"])[0])
                return self._reply(code, b"", {"Location": query["to"][0]})
            if path == "/trickle-headers":
                return self._trickle(b"HTTP/1.1 200 OK\r\nContent-Type: application/xml\r\n")
            if path in _HOSTILE:
                return _HOSTILE[path](self)
            if path == "/gone":
                return self._reply(410, b"gone")
            if path == "/error":
                return self._reply(500, b"oops")
            for prefix, code in (("/moved/", 301), ("/temporary/", 302)):
                if path.startswith(prefix):
                    return self._reply(code, b"", {"Location": "/" + path[len(prefix) :]})
            trickle = path.startswith("/trickle/")
            path = path.removeprefix("/trickle")
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
            if trickle:
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                return self._trickle(body)
            return self._reply(200, body, headers)

        def _trickle(self, data: bytes) -> None:
            """A byte at a time, each well within a read timeout, until the client gives up."""
            with suppress(OSError):
                for byte in data[:40]:
                    if server_state.release.wait(server_state.trickle_seconds):
                        return
                    self.wfile.write(bytes([byte]))
                    self.wfile.flush()

        def _reply(self, code: int, body: bytes, headers: dict[str, str] | None = None) -> None:
            self.send_response(code)
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    return Handler


MiB = 2**20
_FEED_START = b'<?xml version="1.0"?>\n<rss version="2.0"><channel>\n'
_FEED_LIKE = b"<!-- " + b"x" * (MiB - 10) + b" -->\n"  # 1 MiB of one long comment


def _bomb(handler: BaseHTTPRequestHandler) -> None:
    body = gzip_bomb()
    handler.send_response(200)
    handler.send_header("Content-Type", "application/xml")
    handler.send_header("Content-Encoding", "gzip")
    handler.send_header("Content-Length", str(len(body)))
    handler.end_headers()
    with suppress(OSError):  # the client hangs up once it has had enough
        handler.wfile.write(body)


def _huge(handler: BaseHTTPRequestHandler, *, sized: bool = True) -> None:
    """200 MB, written a MiB at a time: the test server itself stays small."""
    handler.send_response(200)
    handler.send_header("Content-Type", "application/xml")
    if sized:
        handler.send_header("Content-Length", str(len(_FEED_START) + 200 * MiB))
    else:
        handler.send_header("Transfer-Encoding", "chunked")
    handler.end_headers()
    with suppress(OSError):
        for piece in (_FEED_START, *[_FEED_LIKE] * 200, b""):
            handler.wfile.write(piece if sized else b"%x\r\n%s\r\n" % (len(piece), piece))


_HOSTILE = {
    "/bomb": _bomb,
    "/huge": _huge,
    "/huge-unsized": functools.partial(_huge, sized=False),
}


@functools.cache
def gzip_bomb(gib: int = 1) -> bytes:
    """A valid gzip member of `gib` GiB of zeros, about 1 MB, made in a fraction of a second.

    After a full flush the compressor starts afresh, so every MiB of zeros compresses to the
    same bytes: one of them is made, and repeated.
    """
    compressor = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    zeros = bytes(MiB)
    block = compressor.compress(zeros) + compressor.flush(zlib.Z_FULL_FLUSH)
    crc = 0
    for _ in range(1024 * gib):
        crc = zlib.crc32(zeros, crc)
    header = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x02\xff"
    trailer = struct.pack("<II", crc, (1024 * gib * MiB) & 0xFFFFFFFF)
    return header + block * (1024 * gib) + compressor.flush() + trailer


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
