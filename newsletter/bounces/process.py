"""Acting on returned mail: find the message of ours it is about, record it, suppress in time.

- hard bounce: the subscriber is suppressed (status bounced) at once;
- complaint: they are unsubscribed from every list and suppressed (status complained);
- soft bounce: counted; `soft_limit` of them within `soft_days` suppress the address;
- auto-replies and delivery notifications: nothing happens, ever.

Anyone can send us a report naming anyone, so the addresses a report names decide nothing. A
report acts only on the one reader a message of ours went to, found by
- the VERP return path (bounces+<signed digest.subscriber>@bounce_domain): the address the report
  came back to, or our message's Return-Path quoted in it; or
- the Message-ID of our message (`<nonce.subscriber@domain>`, kept in Delivery.message_id) as the
  report quotes it, or as an SES notice names it;
and only when that delivery is in the ledger with a Message-ID, i.e. was handed to a transport.
The report's verdict for that one reader is applied, whatever address it gives them (a
forwarding address, or none when a feedback loop redacts it). A report tied to no message of
ours changes nothing: it stays where it was and is listed in `ProcessReport.unrecognized`.
JSON notifications (Amazon SES) are believed only from a sender in `[bounces] json_senders`,
and then only under the same rule.

One message never stops the others: a message that cannot be read (parts nested more than
`mime.MAX_DEPTH` deep, or any other failure while reading or acting on it) is moved to the
`processed` folder like a handled one, with nothing of it recorded, and listed with the reason
in `ProcessReport.unreadable`, so a later run does not meet it again. A database error is not
the message's fault: it stops the run with the message left where it was, to be tried again.
"""

from __future__ import annotations

import hashlib
import mailbox
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Literal, Protocol

from sqlalchemy import func
from sqlalchemy.exc import SQLAlchemyError
from sqlmodel import Session, col, select

from newsletter.audience import lifecycle
from newsletter.audience.addresses import email_key
from newsletter.audience.tokens import SigningKey
from newsletter.bounces.mime import TooDeep
from newsletter.bounces.parse import parse_report
from newsletter.bounces.report import Recipient, Report
from newsletter.config import Settings
from newsletter.errors import BadToken, NewsletterError
from newsletter.models import (
    Bounce,
    BounceKind,
    Delivery,
    Digest,
    Subscriber,
    SubscriberStatus,
    utcnow,
)

PROCESSED = "processed"


@dataclass
class ProcessReport:
    messages: int = 0
    hard: int = 0
    soft: int = 0
    complaints: int = 0
    suppressed: int = 0
    ignored: int = 0  # auto-replies, delivery notices, reports of ours with nothing to act on
    unrecognized: list[str] = field(default_factory=list)  # tied to no message of ours: left
    unreadable: list[str] = field(default_factory=list)  # moved to processed, nothing recorded
    why: dict[str, str] = field(default_factory=dict)  # key -> one line, for both lists


class Source(Protocol):
    """Where returned mail is read from: a Maildir, an mbox or an IMAP folder."""

    def items(self) -> Iterator[tuple[str, bytes]]: ...

    def move_to_processed(self, key: str) -> None: ...

    def close(self) -> None: ...


class LocalBox:
    """A Maildir or an mbox, with a `processed` sibling the handled messages move to."""

    def __init__(self, path: Path) -> None:
        self.path = path
        if (path / "cur").is_dir() or (path / "new").is_dir():
            self.box: mailbox.Mailbox[mailbox.Message] = mailbox.Maildir(path, create=False)
            maildir = self.box
            assert isinstance(maildir, mailbox.Maildir)
            self.done: mailbox.Mailbox[mailbox.Message] = (
                maildir.get_folder(PROCESSED)
                if PROCESSED in maildir.list_folders()
                else maildir.add_folder(PROCESSED)
            )
        elif path.is_file():
            with path.open("rb") as handle:
                start = handle.read(5)
            if start and start != b"From ":
                raise NewsletterError(
                    f"{path}: not an mbox file (an mbox starts with a 'From ' line)",
                    hint="give an mbox file or a Maildir folder of returned mail",
                )
            self.box = mailbox.mbox(path, create=False)
            self.done = mailbox.mbox(path.with_name(f"{path.name}.{PROCESSED}"))
        elif not path.exists():
            raise NewsletterError(f"{path}: no such file or folder")
        else:
            raise NewsletterError(
                f"{path}: neither a Maildir nor an mbox file",
                hint="give the folder holding cur/ and new/, or an mbox file",
            )
        self.box.lock()

    def items(self) -> Iterator[tuple[str, bytes]]:
        # mbox keys are numbers, Maildir keys file names: report them as text
        self._keys = {str(key): key for key in self.box.keys()}  # noqa: SIM118 (iter gives messages)
        for name, key in self._keys.items():
            yield name, self.box.get_bytes(key)

    def move_to_processed(self, key: str) -> None:
        original = self._keys[key]
        self.done.add(self.box.get_bytes(original))
        self.box.remove(original)

    def close(self) -> None:
        self.box.flush()
        self.box.unlock()
        self.box.close()
        self.done.close()


def process_mailbox(
    session: Session, settings: Settings, key: SigningKey, box: Source
) -> ProcessReport:
    """Act on every message of a source; handled and unreadable ones move to `processed`, those
    tied to no message of ours stay."""
    report = ProcessReport()
    try:
        for item_key, raw in box.items():
            report.messages += 1
            try:
                outcome = _process_one(session, settings, key, raw)
                session.commit()  # recorded first: a crash may repeat a move, never lose a bounce
            except SQLAlchemyError:
                session.rollback()
                raise
            except Exception as exc:  # hostile mail may break anything it reaches: contained here
                session.rollback()
                report.unreadable.append(item_key)
                report.why[item_key] = _one_line(exc)
                box.move_to_processed(item_key)
                continue
            if isinstance(outcome, _NotOurs):
                report.unrecognized.append(item_key)
                report.why[item_key] = outcome.why
                continue
            _count(report, outcome)
            box.move_to_processed(item_key)
    finally:
        box.close()
    return report


@dataclass(frozen=True)
class _NotOurs:
    why: str


@dataclass(frozen=True)
class _Acted:
    kind: Literal["hard", "soft", "complaint", "none", "repeated"]
    suppressed: bool = False


def _count(report: ProcessReport, acted: _Acted) -> None:
    if acted.kind == "hard":
        report.hard += 1
    elif acted.kind == "soft":
        report.soft += 1
    elif acted.kind == "complaint":
        report.complaints += 1
    elif acted.kind == "none":
        report.ignored += 1
    report.suppressed += acted.suppressed


def _one_line(exc: Exception) -> str:
    text = " ".join(str(exc).split())
    # Anything but our own refusal is a failure the editor may want to report: name its type.
    return (text if isinstance(exc, TooDeep) else f"{type(exc).__name__}: {text}")[:200]


def _process_one(
    session: Session, settings: Settings, key: SigningKey, raw: bytes
) -> _Acted | _NotOurs:
    parsed = parse_report(raw)
    if parsed.kind in ("autoreply", "delivered"):
        return _Acted("none")
    if parsed.kind == "unknown":
        return _NotOurs("not a bounce or complaint that can be read")
    if parsed.format == "json" and not _json_sender(settings, parsed.sender):
        return _NotOurs(
            f"a JSON notice from {parsed.sender or 'no sender'}, "
            "who is not in [bounces] json_senders"
        )
    delivery = _our_delivery(session, settings, key, parsed)
    if delivery is None:
        return _NotOurs("names no message of ours (no signed return path, no Message-ID we sent)")
    subscriber = session.get(Subscriber, delivery.subscriber_id)
    assert subscriber is not None  # the ledger's foreign key
    verdict = _verdict(parsed, subscriber)
    if verdict is None:
        return _Acted("none")
    return _record(session, settings, subscriber, verdict, delivery.digest_id, _report_id(raw))


def _json_sender(settings: Settings, sender: str) -> bool:
    """Whether `sender` is one of `[bounces] json_senders` (an address, or "@domain")."""
    if "@" not in sender:
        return False
    domain = "@" + sender.rpartition("@")[2]
    return any(entry.strip().lower() in (sender, domain) for entry in settings.bounces.json_senders)


def _report_id(raw: bytes) -> str:
    """The returned mail's Message-ID, or a hash of it: the same report twice counts once."""
    head = raw.split(b"\n\n", 1)[0].split(b"\r\n\r\n", 1)[0]
    for line in head.splitlines():
        if line.lower().startswith(b"message-id:"):
            found = line.split(b":", 1)[1].strip().decode("ascii", "replace")[:300]
            if found:
                return found
    normalized = raw.replace(b"\r\n", b"\n").strip()
    return "sha256:" + hashlib.sha256(normalized).hexdigest()


def _verp(settings: Settings, key: SigningKey, parsed: Report) -> tuple[int, int] | None:
    domain = (settings.publication.bounce_domain or "").lower()
    if not domain:
        return None
    for address in [*parsed.envelope_to, *parsed.original_return_path]:
        local, _, host = address.rpartition("@")
        if host.lower() == domain and local.startswith("bounces+"):
            try:
                digest_id, subscriber_id = key.verify("bounce", local.removeprefix("bounces+"), 2)
            except BadToken:
                continue
            return digest_id, subscriber_id
    return None


# What PreparedMessage.message_id makes: the digest's nonce and the subscriber id.
# <nonce.subscriber.tag@domain>; the keyed tag makes another reader's unguessable (digests
# sent before it existed have none, and are matched as they were stored).
_OUR_MESSAGE_ID = re.compile(
    r"<([0-9A-Za-z]{1,64})\.([0-9]{1,18})(?:\.[a-z2-7]{16})?@[^<>\s]{1,253}>"
)


def _our_delivery(
    session: Session, settings: Settings, key: SigningKey, parsed: Report
) -> Delivery | None:
    """The one delivery of ours the report is about: by VERP, else by a quoted Message-ID."""
    verp = _verp(settings, key, parsed)
    if verp is not None:
        delivery = session.get(Delivery, verp)
        if delivery is not None and delivery.message_id:
            return delivery
    for message_id in parsed.original_message_ids:
        match = _OUR_MESSAGE_ID.fullmatch(message_id)
        if match is None:
            continue
        nonce, subscriber_id = match.groups()
        digest_id = session.exec(select(Digest.id).where(Digest.nonce == nonce)).first()
        if digest_id is None:
            continue
        delivery = session.get(Delivery, (digest_id, int(subscriber_id)))
        # The whole Message-ID as sent, not only its parts: the domain is ours too.
        if delivery is not None and delivery.message_id == message_id:
            return delivery
    return None


def _verdict(parsed: Report, subscriber: Subscriber) -> Recipient | None:
    """The report's verdict for the one reader our message went to: the recipient with their
    address, else the first it judges (a forwarding address, an alias), else, for a feedback
    loop that redacted every address, a complaint."""
    named = [r for r in parsed.recipients if email_key(r.address) == subscriber.email_key]
    if named:
        return named[0] if named[0].kind != "none" else None
    judged = next((r for r in parsed.recipients if r.kind != "none"), None)
    if judged is None and parsed.kind == "complaint":
        judged = Recipient(subscriber.email, "complaint", "feedback")
    return judged


def _record(
    session: Session,
    settings: Settings,
    subscriber: Subscriber,
    recipient: Recipient,
    digest_id: int,
    report_id: str,
) -> _Acted:
    assert subscriber.id is not None
    if session.exec(
        select(Bounce.id).where(
            Bounce.subscriber_id == subscriber.id, Bounce.report_id == report_id
        )
    ).first():
        return _Acted("repeated")  # the same returned mail seen twice changes nothing more
    kind = BounceKind(recipient.kind)
    action = _apply(session, settings, subscriber, kind)
    session.add(
        Bounce(
            subscriber_id=subscriber.id,
            digest_id=digest_id,
            kind=kind,
            status_code=recipient.status,
            reason=recipient.reason,
            diagnostic=recipient.diagnostic[:1000],
            action=action,
            report_id=report_id,
        )
    )
    return _Acted(kind.value, suppressed=action.startswith("suppressed"))


def _apply(session: Session, settings: Settings, subscriber: Subscriber, kind: BounceKind) -> str:
    """Change the subscriber's status as the report says; the action, as recorded."""
    now = utcnow()
    assert subscriber.id is not None
    if subscriber.status != SubscriberStatus.ACTIVE:
        return f"none (already {subscriber.status})"
    if kind == BounceKind.COMPLAINT:
        lifecycle.complain(session, subscriber.id, now)
        return "suppressed: complaint, unsubscribed from every list"
    if kind == BounceKind.HARD:
        lifecycle.mark_bounced(session, subscriber.id, now)
        return "suppressed: hard bounce"
    limits = settings.bounces
    recent = session.exec(
        select(func.count())
        .select_from(Bounce)
        .where(
            Bounce.subscriber_id == subscriber.id,
            Bounce.kind == BounceKind.SOFT,
            col(Bounce.received_at) > now - timedelta(days=limits.soft_days),
        )
    ).one()
    if recent + 1 >= limits.soft_limit:
        lifecycle.mark_bounced(session, subscriber.id, now)
        return f"suppressed: {recent + 1} soft bounces within {limits.soft_days} days"
    return f"counted: soft bounce {recent + 1} of {limits.soft_limit}"
