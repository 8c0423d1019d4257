"""The seam between the dispatcher and its connections: a pool that takes a message while it has
room and reports each message's end. `multiplex.SmtpMultiplexer` is the SMTP one; `ThreadedPool`
runs any blocking `Transport` (a Maildir, a test's stand-in) in threads behind the same seam.
"""

from __future__ import annotations

import threading
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import Protocol, TypeVar

from newsletter.errors import DeliveryRefused, TransportError
from newsletter.send.message import Envelope
from newsletter.send.transport import Transport, TransportFactory

T = TypeVar("T")
Failure = DeliveryRefused | TransportError


class SendPool(Protocol[T]):
    """Messages in, endings out: `(ticket, None)` when the server took it, else its failure.
    A DeliveryRefused concerns that message; a TransportError stops the send."""

    def free(self) -> int:
        """How many more messages `submit` takes now."""
        ...

    def busy(self) -> int:
        """Messages submitted whose end `poll` has not reported yet."""
        ...

    def submit(
        self, ticket: T, envelope: Envelope, message: bytes, *, dot_free: bool = False
    ) -> None:
        """Send `message`; `dot_free`: no line of it starts with a dot (a hint for SMTP)."""
        ...

    def poll(self, timeout: float) -> list[tuple[T, Failure | None]]: ...

    def close(self) -> None: ...


class ThreadedPool(SendPool[T]):
    """`concurrency` threads, each with a transport of its own from `factory`; twice as many
    messages queued, so that no thread waits for the dispatcher."""

    def __init__(self, factory: TransportFactory, concurrency: int) -> None:
        self._factory = factory
        self._concurrency = concurrency
        self._executor = ThreadPoolExecutor(concurrency, thread_name_prefix="send")
        self._in_flight: dict[Future[Failure | None], T] = {}
        self._ready: list[tuple[T, Failure | None]] = []
        self._local = threading.local()
        self._transports: list[Transport] = []
        self._lock = threading.Lock()

    def free(self) -> int:
        return self._concurrency * 2 - len(self._in_flight)

    def busy(self) -> int:
        return len(self._in_flight) + len(self._ready)

    def submit(
        self, ticket: T, envelope: Envelope, message: bytes, *, dot_free: bool = False
    ) -> None:
        self._in_flight[self._executor.submit(self._send, envelope, message)] = ticket

    def poll(self, timeout: float) -> list[tuple[T, Failure | None]]:
        ended, self._ready = self._ready, []
        if ended or not self._in_flight:
            return ended
        done, _ = wait(self._in_flight, timeout=timeout, return_when=FIRST_COMPLETED)
        died: BaseException | None = None
        for future in done:
            ticket = self._in_flight.pop(future)
            try:
                ended.append((ticket, future.result()))
            except BaseException as exc:  # raised below, once the others are kept
                died = exc
        if died is not None:
            self._ready = ended  # the messages that did end are reported by the next poll
            raise died
        return ended

    def close(self) -> None:
        self._executor.shutdown(wait=True)
        with self._lock:
            for transport in self._transports:
                transport.close()

    def _transport(self) -> Transport:
        transport: Transport | None = getattr(self._local, "transport", None)
        if transport is None:
            transport = self._local.transport = self._factory()
            with self._lock:
                self._transports.append(transport)
        return transport

    def _send(self, envelope: Envelope, message: bytes) -> Failure | None:
        try:
            self._transport().send(envelope, message)
        except (DeliveryRefused, TransportError) as failure:
            return failure
        except Exception as exc:  # one bad address or value must never stop the send
            return DeliveryRefused(f"not sent: {exc!r}", code=None, permanent=True)
        return None
