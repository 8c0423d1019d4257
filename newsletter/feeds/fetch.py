"""Getting feed bytes: http(s) with conditional GET, or a local file.

A feed's server is not trusted: its body is capped after decompression, its download has a
deadline however slowly it trickles, and neither it nor its redirects reach an address in the
local network that config.toml does not name.
"""

from __future__ import annotations

import ipaddress
import re
import socket
import time
import zlib
from collections.abc import Iterable, Iterator
from contextlib import suppress
from dataclasses import dataclass, field
from typing import Literal, TypeVar
from urllib.parse import urlsplit
from urllib.request import url2pathname

import httpx

from newsletter import USER_AGENT
from newsletter.errors import ConfigError, FeedError
from newsletter.feeds.network import DeadlineTransport, Download, current_download, host_key

FetchStatus = Literal["ok", "not_modified", "gone"]
_PERMANENT_REDIRECTS = frozenset({301, 308})
MAX_FEED_BYTES = 20 * 1024 * 1024
MAX_REDIRECTS = 5
_DEFAULT_PORTS = {"http": 80, "https": 443}
_ALLOW_SETTING = "[fetch] allow_private_hosts"

T = TypeVar("T")
Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True)
class FetchResult:
    status: FetchStatus
    url: str
    content: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    etag: str | None = None
    last_modified: str | None = None
    moved_to: str | None = None  # set when every redirect on the way was permanent


_HOST_NAME = re.compile(r"^[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?(\.[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?)*$")


@dataclass(frozen=True)
class FetchRules:
    """What every download keeps to, from [fetch] in config.toml."""

    deadline: float = 60.0  # seconds for the whole of one feed's download, redirects too
    allowed_names: frozenset[str] = frozenset()
    allowed_networks: tuple[Network, ...] = ()

    @classmethod
    def of(cls, deadline: float, allow_private_hosts: Iterable[str]) -> FetchRules:
        names: set[str] = set()
        networks: list[Network] = []
        for entry in allow_private_hosts:
            try:
                networks.append(ipaddress.ip_network(entry.strip(), strict=False))
                continue
            except ValueError:
                name = host_key(entry)
            if not _HOST_NAME.match(name):
                raise ConfigError(
                    f"{_ALLOW_SETTING}: {entry!r} is not a host name, an IP address or a network",
                    hint='write names like "feeds.internal", addresses or "10.0.0.0/8"',
                )
            names.add(name)
        return cls(deadline, frozenset(names), tuple(networks))

    def allows(self, address: Address) -> bool:
        return any(address in network for network in self.allowed_networks)


HttpClient = httpx.Client


def http_client(timeout: float = 20.0) -> httpx.Client:
    return httpx.Client(
        transport=DeadlineTransport(),
        timeout=httpx.Timeout(timeout),
        headers={"User-Agent": USER_AGENT, "Accept-Encoding": "gzip, deflate"},
        follow_redirects=False,  # followed one hop at a time, each checked: see check_reach
    )


def fetch(
    name: str,
    url: str,
    *,
    client: httpx.Client,
    etag: str | None = None,
    last_modified: str | None = None,
    configured: str | None = None,
    rules: FetchRules = FetchRules(),
) -> FetchResult:
    """Fetch a feed from `url`; `configured` is the URL config.toml gives (default: `url`).

    Only that URL's host and port are the editor's own choice; every other request (the first
    one too, once the feed has moved) goes only to public addresses or to allowed hosts.
    """
    scheme = urlsplit(url).scheme.lower()
    if scheme == "file":
        return _read_file(name, url)
    if scheme not in _DEFAULT_PORTS:
        raise FeedError(
            f"feed {name!r}: unsupported URL {url!r}",
            hint="use an http(s) URL, a file:// URL or a path relative to config.toml",
        )
    conditional = {}
    if etag:
        conditional["If-None-Match"] = etag
    if last_modified:
        conditional["If-Modified-Since"] = last_modified
    download = Download(time.monotonic() + rules.deadline, _origin(configured or url), rules)
    started = current_download.set(download)
    try:
        return _fetch_http(name, url, client, conditional, download, etag, last_modified)
    except httpx.TimeoutException:
        if download.overran:
            raise FeedError(
                f"feed {name!r}: {url} took longer than the {rules.deadline:g} s a feed's "
                "download may take",
                hint="if the server is only slow, raise [fetch] deadline in config.toml",
            ) from None
        raise FeedError(
            f"feed {name!r}: {url} did not answer in time",
            hint="the server may be down; it will be tried again on the next fetch",
        ) from None
    except httpx.DecodingError:
        raise FeedError(
            f"feed {name!r}: {url} sent a compressed body that does not decompress",
            hint="the server has a problem; it will be tried again on the next fetch",
        ) from None
    except httpx.HTTPError as exc:
        raise FeedError(
            f"feed {name!r}: cannot reach {url}: {exc}",
            hint="check the URL in config.toml and the network",
        ) from None
    except httpx.InvalidURL as exc:
        raise FeedError(f"feed {name!r}: {url} is not a URL that can be fetched: {exc}") from None
    finally:
        current_download.reset(started)


def _fetch_http(
    name: str,
    url: str,
    client: httpx.Client,
    conditional: dict[str, str],
    download: Download,
    etag: str | None,
    last_modified: str | None,
) -> FetchResult:
    target = httpx.URL(url)
    permanent = True
    for hop in range(MAX_REDIRECTS + 1):
        check_reach(name, url, target, download, redirected=hop > 0)
        with client.stream("GET", target, headers=conditional) as response:
            if not response.has_redirect_location:
                moved_to = str(target) if hop and permanent else None
                return _result(name, url, response, etag, last_modified, moved_to)
            permanent = permanent and response.status_code in _PERMANENT_REDIRECTS
            location = response.headers["location"]
            _drain(response)
        target = redirect_target(name, url, target, location)
    raise FeedError(
        f"feed {name!r}: {url} redirects more than {MAX_REDIRECTS} times",
        hint="open the URL in a browser to see where it leads, and put that in config.toml",
    )


def _result(
    name: str,
    url: str,
    response: httpx.Response,
    etag: str | None,
    last_modified: str | None,
    moved_to: str | None,
) -> FetchResult:
    final_url = str(response.url)
    if response.status_code in (304, 410) or response.status_code >= 400:
        _drain(response)
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
    return FetchResult(
        "ok",
        final_url,
        content=_capped_body(name, url, response),
        headers={
            k.lower(): v for k, v in response.headers.items() if k.lower() != "content-encoding"
        },
        etag=response.headers.get("etag"),
        last_modified=response.headers.get("last-modified"),
        moved_to=moved_to,
    )


def _capped_body(name: str, url: str, response: httpx.Response) -> bytes:
    """The body, decompressed no further than the cap allows: a small gzip can inflate a lot."""
    declared = response.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_FEED_BYTES:
        raise _too_large(name, url)
    chunks: list[bytes] = []
    size = 0
    for chunk in decompressed(response):
        size += len(chunk)
        if size > MAX_FEED_BYTES:
            raise _too_large(name, url)
        chunks.append(chunk)
    return b"".join(chunks)


_PIECE = 2**16  # what one step of decompression may produce at most


def decompressed(response: httpx.Response) -> Iterator[bytes]:
    """The body in pieces of at most _PIECE bytes.

    httpx inflates each chunk from the network whole: 64 KiB of gzip became 64 MiB at once.
    """
    encoding = response.headers.get("content-encoding", "").strip().lower()
    if encoding not in ("gzip", "x-gzip", "deflate"):
        yield from response.iter_raw()  # as httpx does with an encoding it does not know
        return
    inflater = zlib.decompressobj(zlib.MAX_WBITS | 32)  # gzip or zlib: told by the header
    started = False
    for data in response.iter_raw():
        while data:
            try:
                piece = inflater.decompress(data, _PIECE)
            except zlib.error as exc:
                if started or encoding != "deflate":
                    raise httpx.DecodingError(str(exc)) from None
                # Some servers send "deflate" without zlib's header: raw deflate.
                inflater = zlib.decompressobj(-zlib.MAX_WBITS)
                continue
            started = True
            data = inflater.unconsumed_tail
            yield piece
    yield inflater.flush()


def _drain(response: httpx.Response) -> None:
    """Read a short body to its end, so that the connection serves the next feed.

    Closing a response half read closes its connection: with every 304 doing that, new
    connections came faster than a small server's listen queue took them, and each one it
    dropped waited a second for its retry. A long body is left (and its connection closed).
    """
    with suppress(httpx.HTTPError):
        read = 0
        for chunk in response.iter_raw():
            read += len(chunk)
            if read > _PIECE:
                return


def _too_large(name: str, where: str) -> FeedError:
    return FeedError(
        f"feed {name!r}: {where} is larger than {MAX_FEED_BYTES // 2**20} MiB, more than any feed",
        hint="check the feed's URL in config.toml",
    )


def redirect_target(name: str, url: str, current: httpx.URL, location: str) -> httpx.URL:
    try:
        target = current.join(location)
    except httpx.InvalidURL:
        target = None
    if target is None or target.scheme not in _DEFAULT_PORTS:
        raise FeedError(
            f"feed {name!r}: {url} redirects to {location}, which is not an http(s) URL",
            hint="check the URL in config.toml",
        )
    return target


def _origin(url: str) -> tuple[str, int] | None:
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL:
        return None
    if parsed.scheme not in _DEFAULT_PORTS:
        return None
    return host_key(parsed.raw_host.decode("ascii")), parsed.port or _DEFAULT_PORTS[parsed.scheme]


def check_reach(
    name: str, url: str, target: httpx.URL, download: Download, *, redirected: bool
) -> None:
    """Refuse a request to a non-public address, unless config.toml names it.

    The host is resolved here, and the connection made to the addresses checked (see
    _Backend): a name that resolves again to something else cannot slip past.
    """
    origin = _origin(str(target))
    if origin is None or origin == download.configured:
        return
    host, port = origin
    if host in download.rules.allowed_names:
        return
    try:
        found = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise FeedError(
            f"feed {name!r}: cannot reach {target}: {host} does not resolve ({exc})",
            hint="check the URL in config.toml and the network",
        ) from None
    addresses = list(dict.fromkeys(str(info[4][0]) for info in found))
    for address in addresses:
        kind = _non_public(ipaddress.ip_address(address.partition("%")[0]), download.rules)
        if kind:
            where = f"redirects to {target}, which is" if redirected else "is"
            resolved = "" if address == host else f" ({address})"
            raise FeedError(
                f"feed {name!r}: {url} {where} on {host}{resolved}, a {kind} address",
                hint=f'to fetch it anyway, add "{host}" to {_ALLOW_SETTING} in config.toml',
            )
    download.pinned[(host, port)] = addresses


def _non_public(address: Address, rules: FetchRules) -> str:
    """What kind of address this is when it is not public and not allowed, else ""."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        address = address.ipv4_mapped
    if (address.is_global and not address.is_multicast) or rules.allows(address):
        return ""
    if address.is_loopback:
        return "loopback"
    if address.is_link_local:
        return "link-local"
    return "private" if address.is_private else "non-public"


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
        raise _too_large(name, path)
    return FetchResult("ok", url, content=content)
