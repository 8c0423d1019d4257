"""DKIM signatures (RFC 6376) with dkimpy. The key is read from a file, never from config.toml."""

from __future__ import annotations

from pathlib import Path

import dkim

from newsletter.errors import NewsletterError

# What receivers check most; Subject and From are the ones that matter for DMARC alignment.
SIGNED_HEADERS = (
    b"From",
    b"To",
    b"Subject",
    b"Date",
    b"Message-ID",
    b"List-Id",
    b"List-Unsubscribe",
    b"List-Unsubscribe-Post",
    b"MIME-Version",
    b"Content-Type",
)


class DkimSigner:
    def __init__(self, domain: str, selector: str, key_file: Path) -> None:
        try:
            self._key = key_file.read_bytes()
        except OSError as exc:
            raise NewsletterError(
                f"cannot read the DKIM key {key_file}: {exc.strerror}",
                hint="set [dkim] key_file to a PEM private key readable by this user",
            ) from None
        self._domain = domain.encode("ascii")
        self._selector = selector.encode("ascii")
        try:
            self.sign(b"From: a@example.com\r\nSubject: t\r\n\r\nt\r\n")
        except dkim.DKIMException as exc:
            raise NewsletterError(f"{key_file} is not a usable DKIM private key: {exc}") from None

    def sign(self, message: bytes) -> bytes:
        """The message with a DKIM-Signature header in front (relaxed/relaxed canonicalization)."""
        signature = dkim.sign(
            message,
            self._selector,
            self._domain,
            self._key,
            canonicalize=(b"relaxed", b"relaxed"),
            include_headers=list(SIGNED_HEADERS),
        )
        return bytes(signature) + message
