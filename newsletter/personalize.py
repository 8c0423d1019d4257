"""The few per-recipient values in an otherwise shared message, and the markers that stand for them.

A digest is rendered once with these markers in place; the sender swaps in each recipient's
values as bytes. Markers use only characters that HTML escaping, MJML and text wrapping leave alone.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Placeholder(StrEnum):
    EMAIL = "[[nl:email]]"
    NAME = "[[nl:name]]"
    UNSUBSCRIBE_URL = "[[nl:unsubscribe_url]]"


@dataclass(frozen=True)
class Recipient:
    subscriber_id: int
    email: str
    name: str
    unsubscribe_url: str

    def value(self, placeholder: Placeholder) -> str:
        match placeholder:
            case Placeholder.EMAIL:
                return self.email
            case Placeholder.NAME:
                return self.name
            case Placeholder.UNSUBSCRIBE_URL:
                return self.unsubscribe_url
