"""Returned mail from an IMAP folder. The only module that imports imaplib."""

from __future__ import annotations

import imaplib
import os
import ssl
from collections.abc import Iterator
from pathlib import Path

from newsletter.config import IMAP_PASSWORD_ENV
from newsletter.config_sections import Imap
from newsletter.errors import ImapError


def _quoted(folder: str) -> str:
    return '"' + folder.replace("\\", "\\\\").replace('"', '\\"') + '"'


class ImapBox:
    """The same interface as the local mailboxes: items(), move_to_processed(), close()."""

    def __init__(self, settings: Imap, ca_file: Path | None) -> None:
        self.settings = settings
        where = f"{settings.host}:{settings.port}"
        context = ssl.create_default_context(cafile=str(ca_file) if ca_file else None)
        try:
            client: imaplib.IMAP4
            if settings.security == "tls":
                client = imaplib.IMAP4_SSL(
                    settings.host, settings.port, ssl_context=context, timeout=settings.timeout
                )
            else:
                client = imaplib.IMAP4(settings.host, settings.port, timeout=settings.timeout)
                if settings.security == "starttls":
                    client.starttls(ssl_context=context)
            client.login(settings.username, os.environ.get(IMAP_PASSWORD_ENV, ""))
            status, _ = client.select(_quoted(settings.folder))
            if status != "OK":
                raise ImapError(f"IMAP folder {settings.folder!r} on {where} cannot be opened")
            client.create(_quoted(settings.processed_folder))  # fails harmlessly when it exists
        except imaplib.IMAP4.error as exc:
            raise ImapError(
                f"IMAP server {where} refused us: {exc}",
                hint=f"check [bounces.imap] and {IMAP_PASSWORD_ENV}",
            ) from None
        except (OSError, ssl.SSLError) as exc:
            raise ImapError(
                f"cannot reach the IMAP server {where}: {exc}",
                hint="check [bounces.imap] host, port and security",
            ) from None
        self.client = client
        self.path = where

    def items(self) -> Iterator[tuple[str, bytes]]:
        status, data = self.client.uid("SEARCH", "ALL")
        if status != "OK" or not data or not data[0]:
            return
        for uid in data[0].split():
            status, parts = self.client.uid("FETCH", uid, "(BODY.PEEK[])")
            for part in parts or []:
                if isinstance(part, tuple):
                    yield uid.decode(), part[1]

    def move_to_processed(self, key: str) -> None:
        folder = _quoted(self.settings.processed_folder)
        status, _ = self.client.uid("COPY", key, folder)
        if status == "OK":
            self.client.uid("STORE", key, "+FLAGS", r"(\Deleted)")

    def close(self) -> None:
        try:
            self.client.expunge()
            self.client.close()
            self.client.logout()
        except (imaplib.IMAP4.error, OSError):
            pass
