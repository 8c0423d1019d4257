"""Getting feed bytes: http(s) with conditional GET, or a local file."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal
from urllib.parse import urlsplit
from urllib.request import url2pathname

import httpx

from newsletter import USER_AGENT
from newsletter.errors import FeedError

FetchStatus = Literal["ok", "not_modified", "gone"]
_PERMANENT_REDIRECTS = frozenset({301, 308})
MAX_FEED_BYTES = 20 * 1024 * 1024


@dataclass(frozen=True)
class FetchResult:
    status: FetchStatus
    url: str
    content: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    etag: str | None = None
    last_modified: str | None = None
    moved_to: str | None = None  # set when every redirect on the way was permanent


HttpClient = httpx.Client


def http_client(timeout: float = 20.0) -> httpx.Client:
    return httpx.Client(
        timeout=httpx.Timeout(timeout),
        headers={"User-Agent": USER_AGENT, "Accept-Encoding": "gzip, deflate"},
        follow_redirects=True,
        max_redirects=5,
    )


def fetch(
    name: str,
    url: str,
    *,
    client: httpx.Client,
    etag: str | None = None,
    last_modified: str | None = None,
) -> FetchResult:
    scheme = urlsplit(url).scheme.lower()
    if scheme == "file":
        return _read_file(name, url)
    if scheme not in ("http", "https"):
        raise FeedError(
            f"feed {name!r}: unsupported URL {url!r}",
            hint="use an http(s) URL, a file:// URL or a path relative to config.toml",
        )
    conditional = {}
    if etag:
        conditional["If-None-Match"] = etag
    if last_modified:
        conditional["If-Modified-Since"] = last_modified
    try:
        response = client.get(url, headers=conditional)
    except httpx.TimeoutException:
        raise FeedError(
            f"feed {name!r}: {url} did not answer in time",
            hint="the server may be down; it will be tried again on the next fetch",
        ) from None
    except httpx.TooManyRedirects:
        raise FeedError(f"feed {name!r}: {url} redirects too many times") from None
    except httpx.HTTPError as exc:
        raise FeedError(
            f"feed {name!r}: cannot reach {url}: {exc}",
            hint="check the URL in config.toml and the network",
        ) from None
    moved_to = None
    if response.history and all(r.status_code in _PERMANENT_REDIRECTS for r in response.history):
        moved_to = str(response.url)
    final_url = str(response.url)
    if response.status_code == 304:
        return FetchResult(
            "not_modified", final_url, etag=etag, last_modified=last_modified, moved_to=moved_to
        )
    if response.status_code == 410:
        return FetchResult("gone", final_url, moved_to=moved_to)
    if response.status_code >= 400:
        raise FeedError(
            f"feed {name!r}: {url} answered HTTP {response.status_code}",
            hint="check the URL in config.toml"
            if response.status_code < 500
            else "the server has a problem; it will be tried again on the next fetch",
        )
    content = response.content
    if len(content) > MAX_FEED_BYTES:
        raise FeedError(f"feed {name!r}: {url} is larger than {MAX_FEED_BYTES // 2**20} MiB")
    return FetchResult(
        "ok",
        final_url,
        content=content,
        headers={
            k.lower(): v for k, v in response.headers.items() if k.lower() != "content-encoding"
        },
        etag=response.headers.get("etag"),
        last_modified=response.headers.get("last-modified"),
        moved_to=moved_to,
    )


def _read_file(name: str, url: str) -> FetchResult:
    path = url2pathname(urlsplit(url).path)
    try:
        with open(path, "rb") as handle:
            content = handle.read(MAX_FEED_BYTES + 1)
    except FileNotFoundError:
        raise FeedError(
            f"feed {name!r}: no such file {path}",
            hint="fix the feed's url in config.toml (relative paths start at its folder)",
        ) from None
    except OSError as exc:
        raise FeedError(f"feed {name!r}: cannot read {path}: {exc.strerror}") from None
    if len(content) > MAX_FEED_BYTES:
        raise FeedError(f"feed {name!r}: {path} is larger than {MAX_FEED_BYTES // 2**20} MiB")
    return FetchResult("ok", url, content=content)
