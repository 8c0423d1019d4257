"""SMTP: one message's exchange with a server, and delivery over one reused blocking
connection. With `multiplex`, the only modules that speak SMTP."""

from __future__ import annotations

import smtplib
import ssl
from collections.abc import Generator
from dataclasses import dataclass
from pathlib import Path

from newsletter.config_sections import Smtp
from newsletter.errors import DeliveryRefused, TransportError
from newsletter.send.message import Envelope


def tls_context(ca_file: Path | None) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(ca_file) if ca_file else None)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


Reply = tuple[int, bytes]
# What one message's exchange asks of its connection, step by step: these bytes written, then
# this many replies read and sent back in. Blocking (SmtpTransport) or multiplexed
# (multiplex.SmtpMultiplexer), the conversation is the same.
Exchange = Generator[tuple[list[bytes], int], list[Reply], "Ending"]


@dataclass(frozen=True)
class Ending:
    """How one message's exchange ended: delivered (no failure) or not, and whether its
    connection may carry the next message."""

    failure: DeliveryRefused | TransportError | None = None
    drop: bool = False


def dot_stuffed(message: bytes) -> list[bytes]:
    """The message as DATA carries it, in pieces to write as they are: every dot that starts a
    line doubled (RFC 5321 4.5.2; bytes.replace is 25x a regex and copies nothing when there
    is no such dot), then the terminating line."""
    stuffed = message.replace(b"\r\n.", b"\r\n..")
    if stuffed.startswith(b"."):
        stuffed = b"." + stuffed
    return [stuffed, b".\r\n" if stuffed.endswith(b"\r\n") else b"\r\n.\r\n"]


def exchange(
    envelope: Envelope, message: bytes, pipelining: bool, *, dot_free: bool = False
) -> Exchange:
    """MAIL, RCPT and DATA, in one write when the server pipelines (RFC 2920: two round trips,
    not four), then the message; a refusal is followed by RSET, unless the connection is lost.

    `dot_free`: no line of `message` starts with a dot (as `PreparedMessage.render` makes
    them), so it is written as it is, not searched for dots to double."""
    commands = [
        f"MAIL FROM:<{envelope.sender}>\r\n".encode("ascii"),
        f"RCPT TO:<{envelope.recipient}>\r\n".encode("ascii"),
        b"DATA\r\n",
    ]
    replies: list[Reply]
    if pipelining:
        replies = yield [b"".join(commands)], 3
    else:
        replies = []
        for command, accepted in zip(commands, ((250,), (250, 251), (354,)), strict=True):
            replies += yield [command], 1
            if replies[-1][0] not in accepted:
                break
    (mail, mail_reply), *rest = replies
    rcpt, rcpt_reply = rest[0] if rest else (0, b"")
    data, data_reply = rest[1] if len(rest) > 1 else (0, b"")
    if data == 354:
        if mail == 250 and rcpt in (250, 251):
            if dot_free:
                data_lines = [message, b".\r\n" if message.endswith(b"\r\n") else b"\r\n.\r\n"]
            else:
                data_lines = dot_stuffed(message)
            ((code, reply),) = yield data_lines, 1
            if code == 250:
                return Ending()
            return (yield from _refused(code, reply))
        yield [b".\r\n"], 1  # a server that took DATA anyway: end an empty message
    if mail != 250:
        return Ending(sender_refused(envelope.sender, mail, mail_reply), drop=True)
    if rcpt not in (250, 251):
        return (yield from _refused(rcpt, rcpt_reply))
    return (yield from _refused(data, data_reply))


def _refused(code: int, reply: bytes) -> Exchange:
    refusal = DeliveryRefused(f"{code} {reply_text(reply)}", code=code, permanent=500 <= code < 600)
    if code == 421:  # the server is closing the connection
        return Ending(refusal, drop=True)
    ((reset, _),) = yield [b"RSET\r\n"], 1
    return Ending(refusal, drop=reset != 250)


def open_client(smtp: Smtp, password: str, ca_file: Path | None) -> smtplib.SMTP:
    """A connection greeted, secured and logged in as `[smtp]` says, ready for MAIL FROM."""
    where = f"{smtp.host}:{smtp.port}"
    try:
        client: smtplib.SMTP
        if smtp.security == "tls":
            client = smtplib.SMTP_SSL(
                smtp.host, smtp.port, timeout=smtp.timeout, context=tls_context(ca_file)
            )
        else:
            client = smtplib.SMTP(smtp.host, smtp.port, timeout=smtp.timeout)
        client.ehlo_or_helo_if_needed()
        if smtp.security == "starttls":
            client.starttls(context=tls_context(ca_file))
            client.ehlo()
        if smtp.username:
            client.login(smtp.username, password)
    except smtplib.SMTPAuthenticationError as exc:
        raise TransportError(
            f"SMTP server {where} refused the login for {smtp.username!r}: {exc.smtp_code}",
            hint="check [smtp] username and the NEWSLETTER_SMTP_PASSWORD variable",
        ) from None
    except ssl.SSLError as exc:
        raise TransportError(
            f"TLS with {where} failed: {exc.reason}",
            hint="check [smtp] security and, for a private CA, [smtp] ca_file",
        ) from None
    except (OSError, smtplib.SMTPException) as exc:
        raise TransportError(
            f"cannot connect to the SMTP server {where}: {exc}",
            hint="check [smtp] host and port in config.toml and that the server runs",
        ) from None
    return client


def sender_refused(sender: str, code: int, reply: bytes | str) -> DeliveryRefused | TransportError:
    """Refusing our own MAIL FROM is about the sending setup, never about this reader: a 4xx
    is retried later, a 5xx stops the send."""
    if 400 <= code < 500:
        return DeliveryRefused(f"{code} {reply_text(reply)}", code=code, permanent=False)
    return TransportError(
        f"the SMTP server refused the sender {sender}: {code} {reply_text(reply)}",
        hint="check [publication] from and the server's relay rules; "
        "everyone not yet sent stays queued for the next `newsletter send`",
    )


def reply_text(reply: bytes | str) -> str:
    return reply.decode("utf-8", "replace") if isinstance(reply, bytes) else reply


class SmtpTransport:
    """Opens its connection on first use and keeps it for every message after."""

    def __init__(self, settings: Smtp, password: str = "", ca_file: Path | None = None) -> None:
        self.settings = settings
        self._password = password
        self._ca_file = ca_file
        self._client: smtplib.SMTP | None = None

    def send(self, envelope: Envelope, message: bytes) -> None:
        if self._client is None:
            self._client = open_client(self.settings, self._password, self._ca_file)
        client = self._client
        steps = exchange(envelope, message, client.has_extn("pipelining"))
        try:
            writes, count = next(steps)
            while True:
                client.send(b"".join(writes))
                writes, count = steps.send([client.getreply() for _ in range(count)])
        except StopIteration as stopped:
            ending: Ending = stopped.value
        except (smtplib.SMTPServerDisconnected, OSError) as exc:
            self._drop()
            raise DeliveryRefused(f"connection lost: {exc}", code=None, permanent=False) from None
        if ending.drop:
            self._drop()
        if ending.failure is not None:
            raise ending.failure

    def _drop(self) -> None:
        if self._client is not None:
            try:
                self._client.close()
            finally:
                self._client = None

    def close(self) -> None:
        if self._client is not None:
            try:
                self._client.quit()
            except (smtplib.SMTPException, OSError):
                pass
            finally:
                self._drop()
