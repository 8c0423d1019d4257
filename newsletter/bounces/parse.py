"""Returned mail -> who bounced, how, and why.

Reads RFC 3464 delivery status notifications, RFC 5965 ARF complaints, Amazon SES notifications
and the plain-text bounces of common servers (qmail, Exim, Sendmail, ...). Classifies each
recipient the way sisimai does: by the reason found in the diagnostic text first, the status
code only as a fallback (5.2.2 "mailbox full" is soft; 4.1.1 "user unknown" is hard), and
auto-replies (RFC 3834) or successful delivery notifications are never bounces.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import Message
from email.utils import getaddresses, parseaddr
from typing import Literal

Kind = Literal["hard", "soft", "complaint", "none"]
HARD_REASONS = frozenset({"userunknown", "hostunknown", "hasmoved", "notaccept"})

_ADDRESS = r"[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?"
_ADDRESS_RE = re.compile(_ADDRESS)
_STATUS_RE = re.compile(r"(?<![\d.])([245])\.(\d{1,3})\.(\d{1,3})(?![\d.])")
_CUT = re.compile(
    r"^(-+ ?(this is a copy|below this line|original message|the original message)"
    r"|-+ ?original message|content-type: message/|return-path:|received:|message-id:)",
    re.IGNORECASE | re.MULTILINE,
)

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


def classify(status: str, diagnostic: str) -> tuple[str, Kind]:
    """(reason, hard | soft | none) for one recipient's status code and diagnostic text."""
    if status.startswith("2."):
        return "delivered", "none"
    for reason, pattern in REASON_PATTERNS:
        if pattern.search(diagnostic):
            return reason, "hard" if reason in HARD_REASONS else "soft"
    reason = STATUS_REASONS.get(status, "undefined")
    return reason, "hard" if reason in HARD_REASONS else "soft"


def parse_report(raw: bytes) -> Report:
    # CR-only and CRLF line endings alike.
    data = raw.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
    message = message_from_bytes(data, policy=policy.compat32)
    envelope_to = [
        address
        for _, address in getaddresses(
            message.get_all("Delivered-To", [])
            + message.get_all("X-Original-To", [])
            + message.get_all("To", [])
        )
        if address
    ]
    # Bounces come before auto-replies: Exim and Office 365 mark their bounces auto-replied too.
    report = (
        _arf(message)
        or _dsn(message)
        or _ses(message)
        or _plain_bounce(message)
        or _autoreply(message)
        or Report("unknown")
    )
    report.envelope_to = envelope_to
    report.original_return_path = _original_return_path(message)
    return report


def _original_return_path(message: Message) -> list[str]:
    original = _quoted_original(message)
    if original is None:
        return []
    headers = original.get_all("Return-Path", [])
    return [address for _, address in getaddresses(headers) if address]


def _quoted_original(message: Message) -> Message | None:
    """The headers of our message as a report quotes it, when it does."""
    original = next(
        (
            part
            for part in message.walk()
            if part.get_content_type() in ("message/rfc822", "text/rfc822-headers")
        ),
        None,
    )
    return None if original is None else _headers_of(original)


def _parts(message: Message) -> list[Message]:
    return [part for part in message.walk() if not part.is_multipart()]


def _text(part: Message) -> str:
    payload = part.get_payload(decode=True)
    if not isinstance(payload, bytes):
        return str(part.get_payload())
    charset = part.get_content_charset() or "utf-8"
    try:
        return payload.decode(charset, "replace")
    except LookupError:
        return payload.decode("utf-8", "replace")


def _arf(message: Message) -> Report | None:
    """RFC 5965 abuse reports: the people who pressed "spam"."""
    feedback = next(
        (part for part in message.walk() if part.get_content_type() == "message/feedback-report"),
        None,
    )
    if feedback is None:
        return None
    fields = _fields(feedback)
    addresses = [
        value for name, value in fields if name in ("original-rcpt-to", "removal-recipient")
    ]
    original = None if addresses else _quoted_original(message)
    if original is not None:
        addresses = [address for _, address in getaddresses(original.get_all("To", []))]
    return Report(
        "complaint",
        [
            Recipient(_bare(address), "complaint", "feedback")
            for address in dict.fromkeys(addresses)
            if "@" in address
        ],
    )


def _dsn(message: Message) -> Report | None:
    """RFC 3464 delivery status notifications."""
    status_parts = [
        part for part in message.walk() if part.get_content_type() == "message/delivery-status"
    ]
    if not status_parts:
        return None
    human = " ".join(
        _text(part) for part in _parts(message) if part.get_content_type() == "text/plain"
    )
    blocks = [block for part in status_parts for block in _status_blocks(part)[1:]]
    recipients: list[Recipient] = []
    for block in blocks:
        values = dict(block)
        address = next(
            (
                _bare(values[name])
                for name in ("final-recipient", "original-recipient", "x-actual-recipient")
                if name in values
                and "@" in values[name].split("@")[0] + "@"
                and _ADDRESS_RE.search(values[name])
            ),
            "",
        )
        if not address:
            address = _original_recipient(message)
        if "@" not in address:
            continue
        action = values.get("action", "").lower()
        status = _status(values.get("status", ""))
        diagnostic = " ".join(value for name, value in block if name == "diagnostic-code")
        if action in ("delivered", "deliverable", "relayed", "expanded"):
            recipients.append(Recipient(address, "none", "delivered", status, diagnostic))
            continue
        # The human-readable part often says more than the machine part.
        context = f"{diagnostic} {_near(human, address)}"
        reason, kind = classify(status, context)
        if action == "delayed" and kind == "hard":
            kind = "soft"
        recipients.append(Recipient(address, kind, reason, status, diagnostic.strip()[:500]))
    if not recipients:
        return None
    delivered = all(r.kind == "none" for r in recipients)
    return Report("delivered" if delivered else "bounce", recipients)


def _original_recipient(message: Message) -> str:
    """The To: of the returned original, when the report itself names nobody usable."""
    original = _quoted_original(message)
    if original is None:
        return ""
    addresses = getaddresses(original.get_all("To", []))
    return addresses[0][1].lower() if addresses else ""


def _ses(message: Message) -> Report | None:
    """Amazon SES notifications (JSON in the body, sometimes wrapped in an SNS envelope)."""
    text = " ".join(_text(part) for part in _parts(message)).strip()
    if '"notificationType"' not in text and '"eventType"' not in text:
        return None
    body = text[text.index("{") :]
    decoder = json.JSONDecoder(strict=False)  # mail wraps long JSON lines
    try:
        try:
            notice, _ = decoder.raw_decode(body)
        except ValueError:
            notice, _ = decoder.raw_decode(body.replace("\n", ""))
        if isinstance(notice.get("Message"), str):
            notice = json.loads(notice["Message"], strict=False)
    except (ValueError, KeyError, AttributeError):
        return None
    kind = notice.get("notificationType") or notice.get("eventType")
    if kind == "Complaint":
        people = notice.get("complaint", {}).get("complainedRecipients", [])
        return Report(
            "complaint", [Recipient(p["emailAddress"], "complaint", "feedback") for p in people]
        )
    if kind == "Delivery":
        people = notice.get("delivery", {}).get("recipients", [])
        return Report("delivered", [Recipient(p, "none", "delivered", "2.0.0") for p in people])
    if kind == "Bounce":
        bounce = notice.get("bounce", {})
        permanent = bounce.get("bounceType") == "Permanent"
        recipients = []
        for person in bounce.get("bouncedRecipients", []):
            status = _status(person.get("status", ""))
            diagnostic = person.get("diagnosticCode", "")
            reason, judged = classify(status, diagnostic)
            recipients.append(
                Recipient(
                    person["emailAddress"],
                    judged if permanent else "soft",
                    reason,
                    status,
                    diagnostic[:500],
                )
            )
        return Report("bounce", recipients)
    return None


_AUTOREPLY_SUBJECT = re.compile(
    r"^(auto(matic)?[ -]?(reply|response|antwort)|out of (the )?office|vacation|abwesen|"
    r"away from|i am away|autoreply|réponse automatique|respuesta autom)",
    re.IGNORECASE,
)


def _autoreply(message: Message) -> Report | None:
    """RFC 3834 auto-replies and vacation notices: never bounces."""
    auto = (message.get("Auto-Submitted", "") or "").lower()
    subject = _header(message, "Subject")
    if (
        auto.startswith("auto-replied")
        or message.get("X-Autoreply")
        or message.get("X-Autorespond")
        or (message.get("Precedence") or "").lower() == "auto_reply"
        or _AUTOREPLY_SUBJECT.search(subject)
    ):
        return Report("autoreply")
    return None


_BOUNCE_SENDER = re.compile(
    r"mailer-daemon|postmaster|mail delivery|mail administrator", re.IGNORECASE
)
_BOUNCE_SUBJECT = re.compile(
    r"undeliver|returned mail|delivery (status notification|failure|has failed|failed)|"
    r"failure notice|mail delivery failed|could not be delivered|non[- ]?delivery|"
    r"rejected|not delivered|delivery problem|error|エラー|不達",
    re.IGNORECASE,
)


def _plain_bounce(message: Message) -> Report | None:
    """Bounces in prose: find each failed address and the lines that say why."""
    sender = _header(message, "From")
    subject = _header(message, "Subject")
    is_report = (
        message.get_content_type() == "multipart/report"
        and message.get_param("report-type") == "delivery-status"
    )
    if not (is_report or _BOUNCE_SENDER.search(sender) or _BOUNCE_SUBJECT.search(subject)):
        return None
    human = "\n".join(
        _text(part) for part in _parts(message) if part.get_content_maintype() == "text"
    )
    cut = _CUT.search(human)
    human = human[: cut.start()] if cut else human
    own = {parseaddr(sender)[1].lower()}
    failed = [
        address.lower()
        for _, address in getaddresses(message.get_all("X-Failed-Recipients", []))
        if address
    ]
    mentions: list[tuple[int, str]] = []
    for match in _ADDRESS_RE.finditer(human):
        address = match.group(0).strip(".").lower()
        if address in own or _looks_like_daemon(address) or (failed and address not in failed):
            continue
        if not mentions or mentions[-1][1] != address:
            mentions.append((human.rfind("\n", 0, match.start()) + 1, address))
    for address in failed:
        if address not in {a for _, a in mentions}:
            mentions.append((len(human), address))
    recipients: list[Recipient] = []
    seen: set[str] = set()
    for index, (start, address) in enumerate(mentions):
        if address in seen:
            continue
        seen.add(address)
        # From this address to the next one named: the lines about this recipient alone.
        later = [s for s, other in mentions[index + 1 :] if other != address and s > start]
        context = human[start : later[0] if later else start + 1500] or human[:1500]
        status = next(iter(_STATUS_RE.findall(context)), None)
        status_text = ".".join(status) if status else ""
        reason, kind = classify(status_text, context)
        recipients.append(Recipient(address, kind, reason, status_text, context.strip()[:500]))
    return Report("bounce", recipients) if recipients else None


def _looks_like_daemon(address: str) -> bool:
    local = address.split("@")[0]
    return local in ("mailer-daemon", "postmaster", "root", "noreply", "no-reply")


def _near(text: str, address: str, lines: int = 3) -> str:
    """The lines from the one naming `address`, where servers put the reason."""
    position = text.lower().find(address.lower())
    if position < 0:
        return ""
    start = text.rfind("\n", 0, position) + 1
    end = start
    for _ in range(lines + 1):
        next_end = text.find("\n", end + 1)
        if next_end < 0:
            return text[start:]
        end = next_end
    return text[start:end]


def _status_blocks(part: Message) -> list[list[tuple[str, str]]]:
    """The field groups of a message/delivery-status part, however the parser stored them."""
    payload = part.get_payload()
    if isinstance(payload, list):
        return [_fields(block) for block in payload if isinstance(block, Message)]
    text = payload if isinstance(payload, str) else _text(part)
    blocks = []
    for chunk in re.split(r"\n\s*\n", text.strip()):
        blocks.append(
            _fields(message_from_bytes(chunk.encode("utf-8", "replace"), policy=policy.compat32))
        )
    return blocks


def _fields(part: Message) -> list[tuple[str, str]]:
    source = part
    if not part.keys() and isinstance(part.get_payload(), str):
        source = message_from_bytes(
            str(part.get_payload()).encode("utf-8", "replace"), policy=policy.compat32
        )
    elif part.get_content_type() == "message/feedback-report":
        body = part.get_payload()
        if isinstance(body, list) and body and isinstance(body[0], Message):
            source = body[0]
        elif isinstance(body, str):
            source = message_from_bytes(body.encode("utf-8", "replace"), policy=policy.compat32)
    return [(name.lower(), " ".join(str(value).split())) for name, value in source.items()]


def _headers_of(part: Message) -> Message:
    payload = part.get_payload()
    if isinstance(payload, list) and payload:
        inner = payload[0]
        assert isinstance(inner, Message)
        return inner
    return message_from_bytes(str(payload).encode("utf-8", "replace"), policy=policy.compat32)


def _status(value: str) -> str:
    match = _STATUS_RE.search(value)
    return ".".join(match.groups()) if match else ""


def _bare(value: str) -> str:
    """'rfc822; <Ada@Example.com>' -> 'ada@example.com'."""
    value = value.split(";", 1)[-1].strip().strip("<>").strip()
    match = _ADDRESS_RE.search(value)
    return match.group(0).lower() if match else value.lower()


def _header(message: Message, name: str) -> str:
    """A header as text, whether RFC 2047-encoded or raw 8-bit (as some Japanese servers send)."""
    for key, value in message.raw_items():
        if key.lower() == name.lower():
            raw = str(value).encode("utf-8", "surrogateescape")
            try:
                return _decoded(raw.decode("utf-8"))
            except UnicodeDecodeError:
                return raw.decode("latin-1")
    return ""


def _decoded(value: str) -> str:
    from email.header import decode_header, make_header

    try:
        return str(make_header(decode_header(value)))
    except (ValueError, LookupError, UnicodeDecodeError):
        return value
