"""The network under a feed's download: connections that keep to the download's total deadline
(httpx's own timeouts are per read, and a server trickling a byte a second never trips them),
and that go only to the addresses the fetch checked, so a name that resolves again to something
else between the check and the connection cannot slip past."""

from __future__ import annotations

import ssl
import time
from collections.abc import Callable, Iterable
from contextvars import ContextVar
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING, Any, TypeVar

import httpcore
import httpx

if TYPE_CHECKING:
    from newsletter.feeds.fetch import FetchRules

T = TypeVar("T")


def host_key(host: str) -> str:
    return host.strip().lower().rstrip(".")


@dataclass
class Download:
    """One feed's download, as the network code sees it from the thread that runs it."""

    ends_at: float  # time.monotonic()
    configured: tuple[str, int] | None  # the host and port config.toml gives
    rules: FetchRules
    pinned: dict[tuple[str, int], list[str]] = field(default_factory=dict)
    overran: bool = False  # a timeout came from the deadline, not from [fetch] timeout


current_download: ContextVar[Download | None] = ContextVar("download", default=None)


def bounded(call: Callable[[float | None], T], timeout: float | None, late: type[Exception]) -> T:
    """Run a network step with its timeout cut to what is left of the download's deadline.

    httpx's timeouts are per read: a server that sends a byte a second never trips them.
    """
    download = current_download.get()
    if download is None:
        return call(timeout)
    left = download.ends_at - time.monotonic()
    if left <= 0:
        download.overran = True
        raise late("the download's deadline has passed")
    if timeout is not None and timeout <= left:
        return call(timeout)
    try:
        return call(left)
    except httpcore.TimeoutException:
        download.overran = True
        raise


class _BoundedStream(httpcore.NetworkStream):
    def __init__(self, stream: httpcore.NetworkStream) -> None:
        self._stream = stream

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return bounded(
            lambda left: self._stream.read(max_bytes, left), timeout, httpcore.ReadTimeout
        )

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        bounded(partial(self._stream.write, buffer), timeout, httpcore.WriteTimeout)

    def close(self) -> None:
        self._stream.close()

    def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.NetworkStream:
        secure = bounded(
            lambda left: self._stream.start_tls(ssl_context, server_hostname, left),
            timeout,
            httpcore.ConnectTimeout,
        )
        return _BoundedStream(secure)

    def get_extra_info(self, info: str) -> Any:
        return self._stream.get_extra_info(info)


class _Backend(httpcore.SyncBackend):
    """Connections that keep to the download's deadline and go to the addresses checked."""

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        download = current_download.get()
        pinned = download.pinned.get((host_key(host), port)) if download else None
        connect = super().connect_tcp
        failure: httpcore.ConnectError | None = None
        for address in pinned or [host]:
            try:
                attempt = partial(
                    connect,
                    address,
                    port,
                    local_address=local_address,
                    socket_options=socket_options,
                )
                stream = bounded(attempt, timeout, httpcore.ConnectTimeout)
            except httpcore.ConnectError as exc:  # a name's other addresses may answer
                failure = exc
                continue
            return _BoundedStream(stream)
        assert failure is not None
        raise failure


class DeadlineTransport(httpx.HTTPTransport):
    def __init__(self) -> None:
        ssl_context = httpx.create_ssl_context()
        super().__init__(verify=ssl_context)
        # httpx takes no network backend of its own: the pool it made is replaced by the same
        # pool (httpx's default limits) on ours.
        self._pool = httpcore.ConnectionPool(
            ssl_context=ssl_context,
            max_connections=100,
            max_keepalive_connections=20,
            keepalive_expiry=5.0,
            network_backend=_Backend(),
        )
