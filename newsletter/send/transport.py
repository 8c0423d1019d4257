"""The seam between the ledger and a mail system: one message, one recipient, at a time."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Protocol

from newsletter.send.message import Envelope

_ENHANCED_STATUS = re.compile(r"\b([245])\.(\d{1,3})\.(\d{1,3})\b")


class Transport(Protocol):
    """Delivers one message or raises DeliveryRefused (per message) or TransportError (all stop)."""

    def send(self, envelope: Envelope, message: bytes) -> None: ...

    def close(self) -> None: ...


TransportFactory = Callable[[], Transport]


def enhanced_status(reply: str) -> str | None:
    """The RFC 3463 status code in an SMTP reply text ("5.1.1"), if it has one."""
    match = _ENHANCED_STATUS.search(reply)
    return ".".join(match.groups()) if match else None
