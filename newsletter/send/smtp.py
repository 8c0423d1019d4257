"""SMTP delivery over one reused connection. The only module that imports the SMTP client."""

from __future__ import annotations

import smtplib
import ssl
from pathlib import Path

from newsletter.config_sections import Smtp
from newsletter.errors import DeliveryRefused, TransportError
from newsletter.send.message import Envelope


def tls_context(ca_file: Path | None) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(ca_file) if ca_file else None)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


def _dot_stuffed(message: bytes) -> bytes:
    """Double every dot that starts a line (RFC 5321 4.5.2); bytes.replace is 25x a regex here."""
    stuffed = message.replace(b"\r\n.", b"\r\n..")
    return b"." + stuffed if stuffed.startswith(b".") else stuffed


def _pipelined_send(client: smtplib.SMTP, envelope: Envelope, message: bytes) -> None:
    """MAIL, RCPT and DATA in one write (RFC 2920), then the message: two round trips, not four.

    Raises the same smtplib exceptions as SMTP.sendmail, so callers treat both alike.
    """
    client.send(
        f"MAIL FROM:<{envelope.sender}>\r\nRCPT TO:<{envelope.recipient}>\r\nDATA\r\n".encode(
            "ascii"
        )
    )
    mail_code, mail_reply = client.getreply()
    rcpt_code, rcpt_reply = client.getreply()
    data_code, data_reply = client.getreply()
    if data_code == 354:
        if mail_code == 250 and rcpt_code in (250, 251):
            body = _dot_stuffed(message)
            if not body.endswith(b"\r\n"):
                body += b"\r\n"
            client.send(body + b".\r\n")
            code, reply = client.getreply()
            if code != 250:
                client.rset()
                raise smtplib.SMTPDataError(code, reply)
            return
        client.send(b".\r\n")  # a server that took DATA anyway: end an empty message
        client.getreply()
    client.rset()
    if mail_code != 250:
        raise smtplib.SMTPSenderRefused(mail_code, mail_reply, envelope.sender)
    if rcpt_code not in (250, 251):
        raise smtplib.SMTPRecipientsRefused({envelope.recipient: (rcpt_code, rcpt_reply)})
    raise smtplib.SMTPDataError(data_code, data_reply)


def _text(reply: bytes | str) -> str:
    return reply.decode("utf-8", "replace") if isinstance(reply, bytes) else reply


class SmtpTransport:
    """Opens its connection on first use and keeps it for every message after."""

    def __init__(self, settings: Smtp, password: str = "", ca_file: Path | None = None) -> None:
        self.settings = settings
        self._password = password
        self._ca_file = ca_file
        self._client: smtplib.SMTP | None = None

    def _connect(self) -> smtplib.SMTP:
        smtp = self.settings
        where = f"{smtp.host}:{smtp.port}"
        try:
            client: smtplib.SMTP
            if smtp.security == "tls":
                client = smtplib.SMTP_SSL(
                    smtp.host, smtp.port, timeout=smtp.timeout, context=tls_context(self._ca_file)
                )
            else:
                client = smtplib.SMTP(smtp.host, smtp.port, timeout=smtp.timeout)
            client.ehlo_or_helo_if_needed()
            if smtp.security == "starttls":
                client.starttls(context=tls_context(self._ca_file))
                client.ehlo()
            if smtp.username:
                client.login(smtp.username, self._password)
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

    def send(self, envelope: Envelope, message: bytes) -> None:
        if self._client is None:
            self._client = self._connect()
        try:
            if self._client.has_extn("pipelining"):
                _pipelined_send(self._client, envelope, message)
            else:
                self._client.sendmail(envelope.sender, [envelope.recipient], message)
        except smtplib.SMTPRecipientsRefused as exc:
            code, reply = next(iter(exc.recipients.values()))
            self._refused(code, reply)
        except smtplib.SMTPSenderRefused as exc:
            # Refusing our own MAIL FROM is about the sending setup, never about this reader.
            self._drop()
            if 400 <= exc.smtp_code < 500:
                raise DeliveryRefused(
                    f"{exc.smtp_code} {_text(exc.smtp_error)}", code=exc.smtp_code, permanent=False
                ) from None
            raise TransportError(
                f"the SMTP server refused the sender {envelope.sender}: "
                f"{exc.smtp_code} {_text(exc.smtp_error)}",
                hint="check [publication] from and the server's relay rules; "
                "everyone not yet sent stays queued for the next `newsletter send`",
            ) from None
        except smtplib.SMTPResponseException as exc:
            self._refused(exc.smtp_code, exc.smtp_error)
        except (smtplib.SMTPServerDisconnected, OSError) as exc:
            self._drop()
            raise DeliveryRefused(f"connection lost: {exc}", code=None, permanent=False) from None

    def _refused(self, code: int, reply: bytes | str) -> None:
        text = _text(reply)
        if code == 421:
            self._drop()
        elif self._client is not None:
            try:
                self._client.rset()
            except (smtplib.SMTPException, OSError):
                self._drop()
        raise DeliveryRefused(f"{code} {text}", code=code, permanent=500 <= code < 600)

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
