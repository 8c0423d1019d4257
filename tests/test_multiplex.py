"""The multiplexed SMTP pool `newsletter send` uses, against a real SMTP server (aiosmtpd) on
127.0.0.1: messages arrive byte for byte, each refusal ends one message only, and connections
are reused, replaced and capped as a relay expects."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from aiosmtpd.controller import Controller

from newsletter.config_sections import Smtp
from newsletter.errors import DeliveryRefused, TransportError
from newsletter.send.message import Envelope as MailEnvelope
from newsletter.send.multiplex import IDLE_CHECK_AFTER, SmtpMultiplexer
from newsletter.send.pool import Failure
from tests.conftest import RecordingHandler, SmtpServer, free_port

MESSAGE = b"Subject: hello\r\n\r\nA short message.\r\n"


@contextmanager
def serving(idle_timeout: float = 300) -> Iterator[SmtpServer]:
    """A server that closes a session idle for `idle_timeout` seconds, as relays do."""
    handler = RecordingHandler()
    port = free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port, timeout=idle_timeout)
    controller.start()
    try:
        yield SmtpServer("127.0.0.1", port, handler)
    finally:
        controller.stop()


@pytest.fixture
def server() -> Iterator[SmtpServer]:
    with serving() as running:
        yield running


def pool_for(server: SmtpServer, size: int = 1, timeout: float = 10) -> SmtpMultiplexer[str]:
    return SmtpMultiplexer(Smtp(host=server.host, port=server.port, timeout=timeout), size=size)


def send(
    pool: SmtpMultiplexer[str], *recipients: str, message: bytes = MESSAGE, limit: float = 15
) -> dict[str, Failure | None]:
    """Each recipient's message through the pool, polled until all ended: each one's failure
    (None: delivered)."""
    ended: dict[str, Failure | None] = {}
    for recipient in recipients:
        while not pool.free():
            ended.update(pool.poll(0.5))
        pool.submit(recipient, MailEnvelope("briefings@example.com", recipient), message)
    deadline = time.monotonic() + limit
    while pool.busy():
        assert time.monotonic() < deadline, "the pool never finished"
        ended.update(pool.poll(0.5))
    return ended


def deliver(
    server: SmtpServer,
    *recipients: str,
    message: bytes = MESSAGE,
    size: int = 1,
    timeout: float = 10,
) -> dict[str, Failure | None]:
    """`send` through a pool of its own, closed after."""
    pool = pool_for(server, size, timeout)
    try:
        return send(pool, *recipients, message=message)
    finally:
        pool.close()


@pytest.mark.parametrize("pipelining", [True, False])
def test_lines_starting_with_a_dot_arrive_intact(server: SmtpServer, pipelining: bool) -> None:
    server.handler.pipelining = pipelining
    message = b"X: y\r\n.first line\r\nSubject: dots\r\n\r\n.\r\n..two\r\n.three\r\nend"
    assert deliver(server, "b@example.com", "c@example.com", message=message) == {
        "b@example.com": None,
        "c@example.com": None,
    }
    # SMTP ends every message with a line end; the rest arrives as it was.
    assert [r.data for r in server.handler.received] == [message + b"\r\n"] * 2
    assert server.handler.greetings == 1  # both on one connection


def test_a_refused_reader_ends_only_their_message_and_the_connection_carries_on(
    server: SmtpServer,
) -> None:
    server.handler.replies = {
        "gone@example.com": ["550 5.1.1 No such mailbox"],
        "full@example.com": ["452 4.2.2 Mailbox full"],
    }
    ended = deliver(
        server, "ada@example.com", "gone@example.com", "full@example.com", "bo@example.com"
    )
    assert ended["ada@example.com"] is None
    assert ended["bo@example.com"] is None
    gone, full = ended["gone@example.com"], ended["full@example.com"]
    assert isinstance(gone, DeliveryRefused)
    assert gone.permanent
    assert gone.code == 550
    assert "5.1.1 No such mailbox" in gone.message
    assert isinstance(full, DeliveryRefused)
    assert not full.permanent
    assert full.code == 452
    assert sorted(r.recipients[0] for r in server.handler.received) == [
        "ada@example.com",
        "bo@example.com",
    ]
    assert server.handler.greetings == 1  # RSET after each refusal, never a new connection


def test_a_dropped_connection_is_a_retry_for_that_reader_and_the_next_gets_a_new_one(
    server: SmtpServer,
) -> None:
    server.handler.drop_once = {"ada@example.com"}
    ended = deliver(server, "ada@example.com", "grace@example.com")
    dropped = ended["ada@example.com"]
    assert isinstance(dropped, DeliveryRefused)
    assert not dropped.permanent
    assert ended["grace@example.com"] is None
    assert [r.recipients for r in server.handler.received] == [["grace@example.com"]]
    assert server.handler.greetings == 2


def test_a_reply_that_never_comes_ends_the_message_at_the_timeout(server: SmtpServer) -> None:
    server.handler.data_delay = 3.0
    started = time.monotonic()
    ended = deliver(server, "ada@example.com", timeout=0.5)
    late = ended["ada@example.com"]
    assert isinstance(late, DeliveryRefused)
    assert not late.permanent
    assert "no reply in 0.5 s" in late.message
    assert time.monotonic() - started < 2.5


def test_the_sender_refused_stops_the_send(server: SmtpServer) -> None:
    server.handler.mail_from_reply = "553 5.7.1 Sender address rejected"
    refused = deliver(server, "ada@example.com")["ada@example.com"]
    assert isinstance(refused, TransportError)
    assert "refused the sender briefings@example.com" in str(refused)


def test_a_server_that_is_not_there_is_one_clear_error() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # bound, never listening: connections are refused
        pool: SmtpMultiplexer[str] = SmtpMultiplexer(Smtp(host="127.0.0.1", port=port), size=2)
        ended = send(pool, "ada@example.com")
        pool.close()
    failure = ended["ada@example.com"]
    assert isinstance(failure, TransportError)
    assert f"cannot connect to the SMTP server 127.0.0.1:{port}" in str(failure)


def test_never_more_connections_than_its_size(server: SmtpServer) -> None:
    server.handler.data_delay = 0.05  # slow enough that all three are busy at once
    pool = pool_for(server, size=3)
    recipients = [f"reader{n}@example.com" for n in range(12)]
    try:
        assert pool.free() == 3
        ended = send(pool, *recipients)
    finally:
        pool.close()
    assert ended == dict.fromkeys(recipients)
    assert server.handler.greetings == 3


def test_a_connection_the_relay_closed_while_idle_is_replaced_not_used() -> None:
    with serving(idle_timeout=0.3) as server:
        pool = pool_for(server)
        try:
            assert send(pool, "ada@example.com") == {"ada@example.com": None}
            time.sleep(max(0.8, IDLE_CHECK_AFTER + 0.2))  # closed meanwhile, unnoticed
            assert send(pool, "grace@example.com") == {"grace@example.com": None}
        finally:
            pool.close()
        assert [r.recipients for r in server.handler.received] == [
            ["ada@example.com"],
            ["grace@example.com"],
        ]
        assert server.handler.greetings == 2


def test_an_address_smtp_cannot_carry_fails_alone(server: SmtpServer) -> None:
    ended = deliver(server, "zoë@example.com", "ada@example.com")
    refused = ended["zoë@example.com"]
    assert isinstance(refused, DeliveryRefused)
    assert refused.permanent
    assert "not sent" in refused.message
    assert ended["ada@example.com"] is None
    assert [r.recipients for r in server.handler.received] == [["ada@example.com"]]
