"""Why a recipient bounced: a status code and diagnostic text -> a reason, hard or soft.

Classifies the way sisimai does: by the reason found in the diagnostic text first, the status
code only as a fallback (5.2.2 "mailbox full" is soft; 4.1.1 "user unknown" is hard).
"""

from __future__ import annotations

import re
from typing import Literal

Kind = Literal["hard", "soft", "complaint", "none"]
HARD_REASONS = frozenset({"userunknown", "hostunknown", "hasmoved", "notaccept"})

STATUS_RE = re.compile(r"(?<![\d.])([245])\.(\d{1,3})\.(\d{1,3})(?![\d.])")

# Reasons by the words of the diagnostic, in the order they are tried.
REASON_PATTERNS: tuple[tuple[str, re.Pattern[str]], ...] = tuple(
    (reason, re.compile(pattern, re.IGNORECASE))
    for reason, pattern in (
        (
            "mailboxfull",
            r"mailbox (is )?full|over ?quota|quota (exceeded|exceed)|exceeded (the )?"
            r"(storage|quota)|insufficient (system )?storage|mailbox size limit|"
            r"disk quota|(user|recipient) has exceeded|full mailbox|mailbox.*\bfull\b",
        ),
        (
            "exceedlimit",
            r"message (size|length) exceeds|exceeds? .*size limit|message too large|"
            r"too big|size limit",
        ),
        (
            "suspend",
            r"suspended|account (is |has been )?disabled|is disabled|inactive(?! email)|"
            r"deactivated|not (currently )?active|mailbox disabled|disabled mailbox|temporarily "
            r"unavailable",
        ),
        ("hasmoved", r"has (been )?moved|no longer (at|with|valid)|address changed"),
        (
            "hostunknown",
            r"host (or domain name )?(not found|unknown)|domain (name )?(not found|"
            r"does not exist|unknown)|no such domain|unrouteable|unroutable|"
            r"name or service not known|nxdomain|(invalid|unknown|bad) domain|"
            r"domain (is )?not (valid|configured)|no (mx|mail exchanger)",
        ),
        (
            "userunknown",
            r"user unknown|unknown user|no such (user|mailbox|recipient|address)|does "
            r"not exist|doesn.t exist|invalid (recipient|mailbox|address|user)|"
            r"recipient (address )?rejected|unknown (recipient|address|local)|"
            r"recipient not found|recipientnotfound|mailbox not found|mailbox "
            r"unavailable|not our customer|no mailbox|user not found|(account|mailbox|"
            r"address) (is )?(invalid|not valid)|not a valid (mailbox|recipient|user)|"
            r"undeliverable address|user doesn|addressee unknown|no valid recipients|"
            r"unknown or illegal alias|recipient unknown|email account that you "
            r"tried to reach does not exist|not listed in|inactive email address|"
            r"no such person",
        ),
        ("spamdetected", r"spam|junk mail|bulk mail"),
        ("filtered", r"filter|content (rejected|refused)|not accepted for policy"),
        (
            "blocked",
            r"blocked|blacklist|block ?list|dnsbl|rbl|reputation|access denied|"
            r"client host rejected|poor reputation",
        ),
        ("authfailure", r"dmarc|spf|dkim|authentication"),
        (
            "expired",
            r"expired|retry time|delivery time|could not be delivered within|"
            r"timed? ?out|too long|giving up|give up",
        ),
    )
)
# By status code, when the text says nothing we recognize.
STATUS_REASONS = {
    "5.1.1": "userunknown",
    "5.1.0": "userunknown",
    "5.1.3": "userunknown",
    "5.1.10": "userunknown",
    "5.2.1": "suspend",
    "5.1.2": "hostunknown",
    "5.4.4": "hostunknown",
    "5.1.6": "hasmoved",
    "5.2.2": "mailboxfull",
    "4.2.2": "mailboxfull",
    "5.3.4": "exceedlimit",
    "5.2.3": "exceedlimit",
    "4.4.7": "expired",
    "4.4.1": "expired",
    "5.4.7": "expired",
}


def classify(status: str, diagnostic: str) -> tuple[str, Kind]:
    """(reason, hard | soft | none) for one recipient's status code and diagnostic text."""
    if status.startswith("2."):
        return "delivered", "none"
    for reason, pattern in REASON_PATTERNS:
        if pattern.search(diagnostic):
            return reason, "hard" if reason in HARD_REASONS else "soft"
    reason = STATUS_REASONS.get(status, "undefined")
    return reason, "hard" if reason in HARD_REASONS else "soft"


def status_code(value: str) -> str:
    """The first x.y.z status code in `value`, or "" when it has none."""
    match = STATUS_RE.search(value)
    return ".".join(match.groups()) if match else ""
