"""A local Maildir as the outbox: one file per message, written atomically (tmp/ -> new/), readable
by its owner only: each holds a reader's address and their signed unsubscribe link."""

from __future__ import annotations

import mailbox
import os
from pathlib import Path

from newsletter.errors import TransportError
from newsletter.send.message import Envelope


class MaildirTransport:
    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            self._maildir = mailbox.Maildir(path, create=True)
        except OSError as exc:
            raise TransportError(
                f"cannot use {path} as a Maildir outbox: {exc.strerror}",
                hint="set [delivery] maildir in config.toml to a writable folder",
            ) from None

    def send(self, envelope: Envelope, message: bytes) -> None:
        # What a local delivery agent adds, so the outbox shows the envelope too.
        trace = (
            f"Return-Path: <{envelope.sender}>\r\nDelivered-To: {envelope.recipient}\r\n"
        ).encode()
        try:
            key = self._maildir.add((trace + message).replace(b"\r\n", b"\n"))
            os.chmod(self.path / "new" / key, 0o600)
        except OSError as exc:
            raise TransportError(
                f"cannot write to the Maildir {self.path}: {exc.strerror}"
            ) from None

    def close(self) -> None:
        self._maildir.close()
