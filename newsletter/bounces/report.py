"""What one returned message says: its recipients' verdicts, and what ties it to our own mail."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from newsletter.bounces.reasons import Kind

Format = Literal["arf", "dsn", "json", "prose", "autoreply", "none"]
# A report is about one message; a longer list of quoted Message-IDs is not worth looking up.
MAX_MESSAGE_IDS = 5
# Nor does it name hundreds of recipients: past these, a forged one would only cost time, and
# the prose reader's work grows with the square of the addresses it meets.
MAX_RECIPIENTS = 100
MAX_MENTIONS = 1000


@dataclass(frozen=True)
class Recipient:
    address: str
    kind: Kind
    reason: str
    status: str = ""
    diagnostic: str = ""


@dataclass
class Report:
    """What one returned message says. `kind` is for the message as a whole."""

    kind: Literal["bounce", "complaint", "autoreply", "delivered", "unknown"]
    recipients: list[Recipient] = field(default_factory=list)
    envelope_to: list[str] = field(default_factory=list)  # where it came back to (VERP)
    # The Return-Path of our message as the report quotes it: a VERP address that names the
    # reader even when a feedback loop redacts their address or forwards the report elsewhere.
    original_return_path: list[str] = field(default_factory=list)
    # The Message-ID of the original the report quotes (or the notice names), best first.
    original_message_ids: list[str] = field(default_factory=list)
    format: Format = "none"
    sender: str = ""  # the From address, as the report claims it
