"""Returned mail -> who bounced, how, and why, and which message of ours it is about.

Reads RFC 3464 delivery status notifications, RFC 5965 ARF complaints, Amazon SES notifications
and the plain-text bounces of common servers (qmail, Exim, Sendmail, ...). Auto-replies
(RFC 3834) and successful delivery notifications are never bounces. Each recipient's reason and
hard/soft kind come from `newsletter.bounces.reasons`; the MIME digging from
`newsletter.bounces.mime`; SES notices from `newsletter.bounces.ses`; the types from
`newsletter.bounces.report`.

A report says what its sender wants it to say: the addresses it names prove nothing. So it is
also read for what ties it to our own mail (the address it came back to, the Return-Path and
Message-ID of the original it quotes), and for who sent it and in which format; deciding what to
believe is `newsletter.bounces.process`'s.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from email.message import Message
from email.utils import getaddresses, parseaddr

from newsletter.bounces.mime import (
    ADDRESS_RE,
    bare_address,
    fields_of,
    header_text,
    leaf_parts,
    parse_bytes,
    part_text,
    quoted_original,
    status_blocks,
)
from newsletter.bounces.reasons import STATUS_RE, classify, status_code
from newsletter.bounces.report import (
    MAX_MENTIONS,
    MAX_MESSAGE_IDS,
    MAX_RECIPIENTS,
    Format,
    Recipient,
    Report,
)
from newsletter.bounces.ses import ses_notice


def parse_report(raw: bytes) -> Report:
    """Raises mime.TooDeep for parts nested deeper than any returned mail is."""
    # CR-only and CRLF line endings alike.
    data = raw.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
    message = parse_bytes(data)
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
    readers: tuple[tuple[Format, Callable[[Message], Report | None]], ...] = (
        ("arf", _arf),
        ("dsn", _dsn),
        ("json", ses_notice),
        ("prose", _plain_bounce),
        ("autoreply", _autoreply),
    )
    report = Report("unknown")
    for form, reader in readers:
        found = reader(message)
        if found is not None:
            report = found
            report.format = form
            break
    report.envelope_to = envelope_to
    report.sender = parseaddr(header_text(message, "From"))[1].lower()
    original = quoted_original(message)
    if original is not None:
        report.original_return_path += _addresses(original.get_all("Return-Path", []))
        report.original_message_ids[:0] = original.get_all("Message-ID", [])
    report.original_message_ids += _copied_message_ids(message)
    report.original_message_ids = list(
        dict.fromkeys(" ".join(str(value).split()) for value in report.original_message_ids)
    )[:MAX_MESSAGE_IDS]
    return report


def _addresses(headers: list[str]) -> list[str]:
    return [address for _, address in getaddresses(headers) if address]


# A header line of our message where a prose bounce copies it into its text (qmail, Exim).
_COPIED_MESSAGE_ID = re.compile(
    r"^Message-ID:[ \t]*(<[^<>\s]{1,250}>)", re.IGNORECASE | re.MULTILINE
)


def _copied_message_ids(message: Message) -> list[str]:
    return [
        found
        for part in leaf_parts(message)
        if part.get_content_maintype() == "text"
        for found in _COPIED_MESSAGE_ID.findall(part_text(part))
    ]


def _arf(message: Message) -> Report | None:
    """RFC 5965 abuse reports: the people who pressed "spam"."""
    feedback = next(
        (part for part in message.walk() if part.get_content_type() == "message/feedback-report"),
        None,
    )
    if feedback is None:
        return None
    fields = fields_of(feedback)
    addresses = [
        value for name, value in fields if name in ("original-rcpt-to", "removal-recipient")
    ]
    original = None if addresses else quoted_original(message)
    if original is not None:
        addresses = [address for _, address in getaddresses(original.get_all("To", []))]
    return Report(
        "complaint",
        [
            Recipient(bare_address(address), "complaint", "feedback")
            for address in list(dict.fromkeys(addresses))[:MAX_RECIPIENTS]
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
        part_text(part) for part in leaf_parts(message) if part.get_content_type() == "text/plain"
    )
    blocks = [block for part in status_parts for block in status_blocks(part)[1:]]
    blocks = blocks[:MAX_RECIPIENTS]
    recipients: list[Recipient] = []
    for block in blocks:
        values = dict(block)
        address = next(
            (
                bare_address(values[name])
                for name in ("final-recipient", "original-recipient", "x-actual-recipient")
                if name in values
                and "@" in values[name].split("@")[0] + "@"
                and ADDRESS_RE.search(values[name])
            ),
            "",
        )
        if not address:
            address = _original_recipient(message)
        if "@" not in address:
            continue
        action = values.get("action", "").lower()
        status = status_code(values.get("status", ""))
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
    original = quoted_original(message)
    if original is None:
        return ""
    addresses = getaddresses(original.get_all("To", []))
    return addresses[0][1].lower() if addresses else ""


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


_AUTOREPLY_SUBJECT = re.compile(
    r"^(auto(matic)?[ -]?(reply|response|antwort)|out of (the )?office|vacation|abwesen|"
    r"away from|i am away|autoreply|réponse automatique|respuesta autom)",
    re.IGNORECASE,
)


def _autoreply(message: Message) -> Report | None:
    """RFC 3834 auto-replies and vacation notices: never bounces."""
    auto = (message.get("Auto-Submitted", "") or "").lower()
    subject = header_text(message, "Subject")
    if (
        auto.startswith("auto-replied")
        or message.get("X-Autoreply")
        or message.get("X-Autorespond")
        or (message.get("Precedence") or "").lower() == "auto_reply"
        or _AUTOREPLY_SUBJECT.search(subject)
    ):
        return Report("autoreply")
    return None


# Where a prose bounce starts quoting our message: addresses past it are ours, not failures.
_CUT = re.compile(
    r"^(-+ ?(this is a copy|below this line|original message|the original message)"
    r"|-+ ?original message|content-type: message/|return-path:|received:|message-id:)",
    re.IGNORECASE | re.MULTILINE,
)
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
    sender = header_text(message, "From")
    subject = header_text(message, "Subject")
    is_report = (
        message.get_content_type() == "multipart/report"
        and message.get_param("report-type") == "delivery-status"
    )
    if not (is_report or _BOUNCE_SENDER.search(sender) or _BOUNCE_SUBJECT.search(subject)):
        return None
    human = "\n".join(
        part_text(part) for part in leaf_parts(message) if part.get_content_maintype() == "text"
    )
    cut = _CUT.search(human)
    human = human[: cut.start()] if cut else human
    own = {parseaddr(sender)[1].lower()}
    failed = list(
        dict.fromkeys(
            address.lower()
            for _, address in getaddresses(message.get_all("X-Failed-Recipients", []))
            if address
        )
    )[:MAX_RECIPIENTS]
    mentions: list[tuple[int, str]] = []
    named: set[str] = set()
    for match in ADDRESS_RE.finditer(human):
        address = match.group(0).strip(".").lower()
        if address in own or _looks_like_daemon(address) or (failed and address not in failed):
            continue
        # One address past the last judged is kept: where it starts ends that one's lines.
        if len(mentions) == MAX_MENTIONS or (address not in named and len(named) > MAX_RECIPIENTS):
            break
        named.add(address)
        if not mentions or mentions[-1][1] != address:
            mentions.append((human.rfind("\n", 0, match.start()) + 1, address))
    for address in failed:
        if address not in named:
            named.add(address)
            mentions.append((len(human), address))
    recipients: list[Recipient] = []
    seen: set[str] = set()
    for index, (start, address) in enumerate(mentions):
        if address in seen:
            continue
        if len(seen) == MAX_RECIPIENTS:
            break
        seen.add(address)
        # From this address to the next one named: the lines about this recipient alone.
        later = [s for s, other in mentions[index + 1 :] if other != address and s > start]
        context = human[start : later[0] if later else start + 1500] or human[:1500]
        status = next(iter(STATUS_RE.findall(context)), None)
        status_text = ".".join(status) if status else ""
        reason, kind = classify(status_text, context)
        recipients.append(Recipient(address, kind, reason, status_text, context.strip()[:500]))
    return Report("bounce", recipients) if recipients else None


def _looks_like_daemon(address: str) -> bool:
    local = address.split("@")[0]
    return local in ("mailer-daemon", "postmaster", "root", "noreply", "no-reply")
