"""The few per-recipient values in an otherwise shared message, and the markers that stand for them.

A digest is rendered once with markers in place; the sender swaps in each recipient's values as
bytes. A marker carries the digest's random nonce, so text from a feed cannot forge one and
have a reader's address or unsubscribe link filled into it. Markers use only characters that
HTML escaping, MJML and text wrapping leave alone.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum


class Placeholder(StrEnum):
    EMAIL = "email"
    NAME = "name"
    UNSUBSCRIBE_URL = "unsubscribe_url"
    PREFERENCES_URL = "preferences_url"


def new_nonce() -> str:
    return secrets.token_hex(8)


@dataclass(frozen=True)
class Recipient:
    subscriber_id: int
    email: str
    name: str
    unsubscribe_url: str
    preferences_url: str = ""  # the reader's preference centre; a preview's leads to /subscribe

    def value(self, placeholder: Placeholder) -> str:
        match placeholder:
            case Placeholder.EMAIL:
                return self.email
            case Placeholder.NAME:
                return self.name
            case Placeholder.UNSUBSCRIBE_URL:
                return self.unsubscribe_url
            case Placeholder.PREFERENCES_URL:
                return self.preferences_url


@dataclass(frozen=True)
class Markers:
    """The markers of one digest: `[[nl-<nonce>:email]]` and so on."""

    nonce: str

    def __post_init__(self) -> None:
        if not re.fullmatch(r"[0-9a-z]{1,32}", self.nonce):
            raise ValueError(f"a marker nonce is letters and digits, not {self.nonce!r}")

    def marker(self, placeholder: Placeholder) -> str:
        return f"[[nl-{self.nonce}:{placeholder.value}]]"

    @property
    def context(self) -> dict[str, str]:
        """What templates see as `recipient.email` and so on."""
        return {placeholder.value: self.marker(placeholder) for placeholder in Placeholder}

    @property
    def pattern(self) -> re.Pattern[str]:
        return re.compile(rf"\[\[nl-{self.nonce}:({'|'.join(p.value for p in Placeholder)})\]\]")

    def fill(self, body: str, recipient: Recipient, escape: Callable[[str], str] = str) -> str:
        return self.pattern.sub(lambda m: escape(recipient.value(Placeholder(m.group(1)))), body)
