"""Many SMTP connections driven by one thread: each message's `smtp.exchange`, its writes and
replies multiplexed with `selectors`, so that a send costs a few system calls a message and no
thread hand-offs.

A connection is set up (greeting, STARTTLS, login) by smtplib, blocking, then its socket is
made non-blocking and kept for every message after. A refusal, a lost connection or a timeout
ends that message only; the dispatcher decides what happens to its reader.
"""

from __future__ import annotations

import contextlib
import select
import selectors
import smtplib
import socket
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Generic, TypeVar

from newsletter.config_sections import Smtp
from newsletter.errors import DeliveryRefused, TransportError
from newsletter.send.message import Envelope
from newsletter.send.smtp import Ending, Exchange, Reply, exchange, open_client

T = TypeVar("T")
Failure = DeliveryRefused | TransportError
_READ, _WRITE = selectors.EVENT_READ, selectors.EVENT_WRITE
IDLE_CHECK_AFTER = 1.0  # seconds idle after which a connection is checked before reuse


@dataclass(eq=False)
class _Connection(Generic[T]):
    client: smtplib.SMTP
    sock: socket.socket
    pipelining: bool
    ticket: T | None = None
    steps: Exchange | None = None
    unsent: list[memoryview] = field(default_factory=list)
    inbox: bytearray = field(default_factory=bytearray)
    replies: list[Reply] = field(default_factory=list)
    awaited: int = 0  # replies the exchange waits for
    deadline: float = 0.0
    events: int = _READ
    idle_since: float = 0.0


class SmtpMultiplexer(Generic[T]):
    """Up to `size` connections to `[smtp]`'s server; `submit` starts a message on an idle
    one, `poll` moves every exchange on and hands back the messages that ended, each with its
    ticket and its failure (None: the server took it)."""

    def __init__(
        self,
        settings: Smtp,
        password: str = "",
        ca_file: Path | None = None,
        size: int = 1,
        connect: Callable[[], smtplib.SMTP] | None = None,
    ) -> None:
        self.settings = settings
        self.size = size
        self._connect = connect or (lambda: open_client(settings, password, ca_file))
        self._selector = selectors.DefaultSelector()
        self._idle: list[_Connection[T]] = []
        self._busy: set[_Connection[T]] = set()
        self._ended: list[tuple[T, Failure | None]] = []

    def free(self) -> int:
        return self.size - len(self._busy)

    def busy(self) -> int:
        return len(self._busy) + len(self._ended)

    def submit(
        self, ticket: T, envelope: Envelope, message: bytes, *, dot_free: bool = False
    ) -> None:
        """Start sending `message` on an idle connection (opening one if none is left);
        `dot_free` as `smtp.exchange` takes it."""
        assert self.free() > 0, "submit only while free() says there is room"
        try:
            connection = self._reusable() or self._open()
        except TransportError as exc:
            self._ended.append((ticket, exc))
            return
        connection.ticket = ticket
        connection.steps = exchange(envelope, message, connection.pipelining, dot_free=dot_free)
        self._busy.add(connection)
        try:
            self._ask(connection, next(connection.steps))
        except UnicodeEncodeError as exc:  # an address SMTP cannot carry without SMTPUTF8
            self._end(
                connection, Ending(DeliveryRefused(f"not sent: {exc}", code=None, permanent=True))
            )

    def poll(self, timeout: float) -> list[tuple[T, Failure | None]]:
        """Wait up to `timeout` seconds for any exchange to move; the messages that ended."""
        if not self._ended:
            if self._busy:  # wake no later than the first exchange gives up
                first = min(connection.deadline for connection in self._busy)
                timeout = max(0.0, min(timeout, first - time.monotonic()))
            for key, events in self._selector.select(timeout if self._busy else 0):
                connection: _Connection[T] = key.data
                if events & _WRITE:
                    self._write(connection)
                if events & _READ and connection.client.sock is not None:
                    self._read(connection)
            now = time.monotonic()
            for connection in [c for c in self._busy if c.deadline < now]:
                self._lost(connection, f"no reply in {self.settings.timeout:g} s")
        ended, self._ended = self._ended, []
        return ended

    def close(self) -> None:
        """QUIT every connection (ending what is in flight as lost)."""
        for connection in list(self._busy):
            self._lost(connection, "the send is closing")
        self._ended.clear()
        for connection in self._idle:
            self._unregister(connection)
            try:
                connection.sock.settimeout(self.settings.timeout)
                connection.client.quit()
            except (smtplib.SMTPException, OSError):
                connection.client.close()
        self._idle.clear()
        self._selector.close()

    # -- one connection -------------------------------------------------------------------------

    def _open(self) -> _Connection[T]:
        client = self._connect()
        sock = client.sock
        assert sock is not None
        sock.setblocking(False)
        connection: _Connection[T] = _Connection(client, sock, client.has_extn("pipelining"))
        self._selector.register(sock, _READ, connection)
        return connection

    def _reusable(self) -> _Connection[T] | None:
        """An idle connection to carry the next message; one idle a while is first looked at
        (a relay closes those it finds idle, with or without a 421), so that no reader's
        attempt is spent on a dead one."""
        while self._idle:
            connection = self._idle.pop()
            if time.monotonic() - connection.idle_since < IDLE_CHECK_AFTER:
                return connection
            readable, _, _ = select.select([connection.sock], [], [], 0)
            if not readable:
                return connection
            self._discard(connection)  # closed, or about to be: it spoke unasked
        return None

    def _ask(self, connection: _Connection[T], ask: tuple[list[bytes], int]) -> None:
        writes, connection.awaited = ask
        connection.unsent = [memoryview(data) for data in writes]
        connection.deadline = time.monotonic() + self.settings.timeout
        self._write(connection)

    def _write(self, connection: _Connection[T]) -> None:
        sock, unsent = connection.sock, connection.unsent
        try:
            while unsent:
                if isinstance(sock, ssl.SSLSocket):  # no sendmsg through TLS
                    written = sock.send(unsent[0])
                else:
                    written = sock.sendmsg(unsent)
                while written and written >= len(unsent[0]):
                    written -= len(unsent.pop(0))
                if written:
                    unsent[0] = unsent[0][written:]
        except (BlockingIOError, ssl.SSLWantWriteError, ssl.SSLWantReadError):
            pass
        except OSError as exc:
            self._lost(connection, str(exc))
            return
        self._watch(connection, _READ | _WRITE if unsent else _READ)

    def _read(self, connection: _Connection[T]) -> None:
        sock = connection.sock
        try:
            while True:
                data = sock.recv(65536)
                if not data:
                    self._lost(connection, "the server closed the connection")
                    return
                connection.inbox += data
                if not isinstance(sock, ssl.SSLSocket) or not sock.pending():
                    break
        except (BlockingIOError, ssl.SSLWantReadError, ssl.SSLWantWriteError):
            pass
        except OSError as exc:
            self._lost(connection, str(exc))
            return
        if connection.steps is None:  # an idle connection spoke: a timeout notice, a 421
            self._lost(connection, "the server spoke unasked")
            return
        connection.deadline = time.monotonic() + self.settings.timeout
        while len(connection.replies) < connection.awaited:
            reply = _take_reply(connection.inbox)
            if reply is None:
                return
            connection.replies.append(reply)
        replies, connection.replies = connection.replies, []
        try:
            self._ask(connection, connection.steps.send(replies))
        except StopIteration as stopped:
            self._end(connection, stopped.value)

    def _end(self, connection: _Connection[T], ending: Ending) -> None:
        ticket = connection.ticket
        assert ticket is not None
        self._ended.append((ticket, ending.failure))
        self._busy.discard(connection)
        connection.ticket, connection.steps, connection.awaited = None, None, 0
        connection.unsent, connection.replies = [], []
        if ending.drop:
            self._discard(connection)
        else:
            connection.idle_since = time.monotonic()
            self._idle.append(connection)

    def _lost(self, connection: _Connection[T], why: str) -> None:
        if connection.steps is None:  # idle: nobody's message was on it
            self._idle.remove(connection)
            self._discard(connection)
            return
        refusal = DeliveryRefused(f"connection lost: {why}", code=None, permanent=False)
        self._end(connection, Ending(refusal, drop=True))

    def _discard(self, connection: _Connection[T]) -> None:
        self._unregister(connection)
        connection.client.close()

    def _watch(self, connection: _Connection[T], events: int) -> None:
        if events != connection.events:
            self._selector.modify(connection.sock, events, connection)
            connection.events = events

    def _unregister(self, connection: _Connection[T]) -> None:
        with contextlib.suppress(KeyError, ValueError):
            self._selector.unregister(connection.sock)


def _take_reply(inbox: bytearray) -> Reply | None:
    """The first whole reply in `inbox` (removed from it), as smtplib reads one: the code, and
    the lines' texts joined by newlines; None until its last line has arrived."""
    lines: list[bytes] = []
    start = 0
    while True:
        end = inbox.find(b"\n", start)  # CRLF, or LF alone from a lax server
        if end < 0:
            return None
        line = bytes(inbox[start:end]).rstrip(b"\r")
        lines.append(line[4:].strip())
        start = end + 1
        if line[3:4] != b"-":
            break
    del inbox[:start]
    try:
        code = int(line[:3])
    except ValueError:
        code = -1
    return code, b"\n".join(lines)
