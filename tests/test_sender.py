"""The sender against real servers: TLS, AUTH, VERP, DKIM, rate limits, flaky and slow relays."""

from __future__ import annotations

import ssl
import time
from collections.abc import Iterator
from email.utils import getaddresses
from pathlib import Path

import dkim
import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword, Session
from aiosmtpd.smtp import Envelope as AiosmtpdEnvelope

from newsletter.audience.tokens import SigningKey
from tests.certs import Certificates, make_certificates, make_dkim_key
from tests.conftest import Project, RecordingHandler, SmtpServer, free_port
from tests.postfix import postfix_relay

KEY = SigningKey(b"test-key-0123456789abcdef0123456789", "environment")


def publish(project: Project, *, expect: int = 0) -> str:
    project.cli("fetch")
    project.cli("subscribers", "import", "subscribers/weekly.csv", "--list", "weekly")
    return str(project.cli("send", "--list", "weekly", "--yes", expect=expect).output)


def test_verp_return_path_feedback_id_and_dkim(
    smtp_project: Project, smtp_server: SmtpServer, tmp_path: Path
) -> None:
    public_key = make_dkim_key(smtp_project.folder / "dkim.pem")
    smtp_project.update("publication", bounce_domain="bounces.signaldesk.example")
    data = smtp_project.config()
    data["dkim"] = {"domain": "signaldesk.example", "selector": "nl2026", "key_file": "dkim.pem"}
    smtp_project.write_config(data)
    publish(smtp_project)
    record = b"v=DKIM1; k=rsa; p=" + public_key

    def dns(name: bytes, timeout: int = 5) -> bytes:
        assert name == b"nl2026._domainkey.signaldesk.example."
        return record

    seen: set[int] = set()
    for received in smtp_server.received:
        local, _, domain = received.sender.partition("@")
        assert domain == "bounces.signaldesk.example"
        digest_id, subscriber_id = KEY.verify("bounce", local.removeprefix("bounces+"), 2)
        assert digest_id == 1
        seen.add(subscriber_id)
        assert received.message["Feedback-ID"] == "1:weekly:digest:signaldesk.example"
        assert received.data.startswith(b"DKIM-Signature: ")
        assert dkim.verify(received.data, dnsfunc=dns)
        assert not dkim.verify(
            received.data.replace(b"SIGNALDESK WEEKLY", b"SIGNALDESK WEEKLX"), dnsfunc=dns
        )
    assert len(seen) == 6  # one return path per reader


def test_header_injection_from_a_feed_title_is_impossible(
    smtp_project: Project, smtp_server: SmtpServer
) -> None:
    feed = smtp_project.folder / "samples" / "briefings.xml"
    feed.write_text(
        feed.read_text().replace(
            "<title>Nordvale Bank restricts",
            "<title>Evil&#13;&#10;Bcc: victim@example.org&#13;&#10;&#13;&#10;"
            "Nordvale Bank restricts",
        )
    )
    publish(smtp_project)
    for received in smtp_server.received:
        head = received.data.split(b"\r\n\r\n", 1)[0]
        assert b"\r\nBcc:" not in head
        assert received.message["Bcc"] is None
        assert received.recipients != ["victim@example.org"]
    assert "Evil Bcc: victim@example.org" in str(smtp_server.received[0].message["Subject"])


def test_dropped_connections_and_slow_replies_are_retried(
    smtp_project: Project, smtp_server: SmtpServer
) -> None:
    smtp_project.update("smtp", timeout=0.5)
    smtp_project.update("delivery", retry_base_seconds=0.05, max_attempts=2)
    handler = smtp_server.handler
    handler.drop_once = {"ada@example.com", "grace@example.com"}
    handler.data_delay = 1.0  # every answer to DATA comes after the client has given up
    assert "0 sent, 0 failed, 6 deferred" in publish(smtp_project)
    # Each reader was tried again: Ada and Grace after the dropped connection, then like
    # everyone after the reply that came too late.
    assert len(handler.rcpt_attempts) == 6
    assert set(handler.rcpt_attempts.values()) == {2}
    assert smtp_server.received == []  # hanging up before the 250 takes no message
    assert "active 6" in smtp_project.cli("lists").output  # a slow server is nobody's bounce
    handler.data_delay = 0.1  # still slow, but within the timeout: waited for, not retried
    again = smtp_project.cli("send", "--list", "weekly", "--yes").output
    assert "Retried deferred deliveries of digest 1." in again
    assert "6 sent, 0 failed, 0 deferred" in again
    assert set(handler.rcpt_attempts.values()) == {3}
    assert sorted(r.recipients[0] for r in smtp_server.received) == sorted(handler.rcpt_attempts)


def test_rate_limit_spaces_messages(smtp_project: Project, smtp_server: SmtpServer) -> None:
    """Timed where the limiter acts, between the messages' arrivals at the server: the fetch,
    the import, rendering and connecting around them take as long with no limit at all."""
    smtp_project.update("smtp", rate_per_second=10)
    arrivals: list[float] = []
    accept = smtp_server.handler.handle_DATA

    async def timed(server: SMTP, session: Session, envelope: AiosmtpdEnvelope) -> str:
        arrivals.append(time.monotonic())
        return await accept(server, session, envelope)

    smtp_server.handler.handle_DATA = timed  # type: ignore[method-assign]
    publish(smtp_project)
    assert len(smtp_server.received) == len(arrivals) == 6
    # Six messages at 10/s are 0.5 s from first to last; the first one's connect may eat into
    # that, never a whole interval. Without the limiter the six arrive within a few ms.
    assert arrivals[-1] - arrivals[0] >= 4 / 10


def test_test_copy_goes_to_one_address_outside_the_ledger(
    smtp_project: Project, smtp_server: SmtpServer
) -> None:
    smtp_project.cli("fetch")
    smtp_project.cli("subscribers", "import", "subscribers/weekly.csv", "--list", "weekly")
    dry = smtp_project.cli("send", "--list", "weekly", "--to", "editor@example.com", "--dry-run")
    assert "Dry run: a test copy of “SignalDesk Weekly:" in dry.output
    assert smtp_server.received == []
    output = smtp_project.cli("send", "--list", "weekly", "--to", "editor@example.com").output
    assert "Test copy of “SignalDesk Weekly:" in output
    assert [r.recipients for r in smtp_server.received] == [["editor@example.com"]]
    assert smtp_server.received[0].message["Subject"].startswith("[Test] SignalDesk Weekly: ")
    assert "No digests yet." in smtp_project.cli("status").output
    assert "6 sent" in smtp_project.cli("send", "--list", "weekly", "--yes").output


@pytest.fixture
def certificates(tmp_path: Path) -> Certificates:
    return make_certificates(tmp_path)


def server_context(certs: Certificates) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(certs.cert_file, certs.key_file)
    return context


def authenticate(
    server: object, session: object, envelope: object, mechanism: str, data: object
) -> AuthResult:
    ok = isinstance(data, LoginPassword) and (data.login, data.password) == (
        b"newsletter",
        b"s3cret-from-env",
    )
    return AuthResult(success=ok)


@pytest.fixture
def tls_server(certificates: Certificates) -> Iterator[SmtpServer]:
    handler = RecordingHandler()
    port = free_port()
    controller = Controller(
        handler,
        hostname="127.0.0.1",
        port=port,
        tls_context=server_context(certificates),
        require_starttls=True,
        authenticator=authenticate,
        auth_required=True,
    )
    controller.start()
    try:
        yield SmtpServer("127.0.0.1", port, handler)
    finally:
        controller.stop()


def test_starttls_with_a_private_ca_and_auth(
    project: Project,
    tls_server: SmtpServer,
    certificates: Certificates,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    project.update("delivery", transport="smtp")
    project.update(
        "smtp",
        host="127.0.0.1",
        port=tls_server.port,
        security="starttls",
        username="newsletter",
        ca_file=str(certificates.ca_file),
        timeout=10,
    )
    monkeypatch.setenv("NEWSLETTER_SMTP_PASSWORD", "s3cret-from-env")
    assert "6 sent" in publish(project)
    assert len(tls_server.received) == 6
    assert "s3cret" not in (project.folder / "config.toml").read_text()


def test_an_unknown_ca_or_a_wrong_password_stops_with_a_clear_error(
    project: Project, tls_server: SmtpServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    project.update("delivery", transport="smtp")
    project.update(
        "smtp",
        host="127.0.0.1",
        port=tls_server.port,
        security="starttls",
        username="newsletter",
        timeout=10,
    )
    monkeypatch.setenv("NEWSLETTER_SMTP_PASSWORD", "s3cret-from-env")
    output = publish(project, expect=1)
    assert "TLS with 127.0.0.1" in output
    assert "ca_file" in output
    assert tls_server.received == []


def test_implicit_tls(project: Project, certificates: Certificates) -> None:
    handler = RecordingHandler()
    port = free_port()
    controller = Controller(
        handler, hostname="127.0.0.1", port=port, ssl_context=server_context(certificates)
    )
    controller.start()
    try:
        project.update("delivery", transport="smtp")
        project.update(
            "smtp",
            host="127.0.0.1",
            port=port,
            security="tls",
            ca_file=str(certificates.ca_file),
            timeout=10,
        )
        assert "6 sent" in publish(project)
        assert (
            sorted(getaddresses([str(r.message["To"])])[0][1] for r in handler.received)[0]
            == "ada@example.com"
        )
    finally:
        controller.stop()


def test_through_a_real_postfix_relay(project: Project, smtp_server: SmtpServer) -> None:
    """Our SMTP client against Postfix's smtpd; Postfix relays on to the sink."""
    listen = free_port()
    with postfix_relay(listen, smtp_server.port) as root:
        project.update("delivery", transport="smtp")
        project.update("smtp", host="127.0.0.1", port=listen, timeout=20)
        assert "6 sent, 0 failed" in publish(project)
        deadline = time.monotonic() + 30
        while len(smtp_server.received) < 6:
            assert time.monotonic() < deadline, (root / "maillog").read_text()
            time.sleep(0.1)
    messages = [received.message for received in smtp_server.received]
    assert sorted(getaddresses([str(m["To"])])[0][1] for m in messages) == sorted(
        received.recipients[0] for received in smtp_server.received
    )
    for message in messages:
        assert message["Received"]  # Postfix added its trace header
        assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        assert message.get_content_type() == "multipart/alternative"


@pytest.mark.parametrize("pipelining", [True, False])
def test_lines_starting_with_a_dot_arrive_intact(smtp_server: SmtpServer, pipelining: bool) -> None:
    """Both ways of sending: pipelined (as to Postfix) and one command at a time."""
    from newsletter.config_sections import Smtp
    from newsletter.send.message import Envelope
    from newsletter.send.smtp import SmtpTransport

    smtp_server.handler.pipelining = pipelining
    transport = SmtpTransport(Smtp(host=smtp_server.host, port=smtp_server.port, timeout=10))
    message = b".first line\r\nSubject: dots\r\n\r\n.\r\n..two\r\n.three\r\nend\r\n"
    try:
        for recipient in ("b@example.com", "c@example.com"):
            transport.send(Envelope("a@example.com", recipient), b"X: y\r\n" + message)
        client = transport._client
        assert client is not None
        assert client.has_extn("pipelining") is pipelining
    finally:
        transport.close()
    assert [r.data for r in smtp_server.received] == [b"X: y\r\n" + message] * 2
