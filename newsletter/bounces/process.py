"""Acting on returned mail: find the subscriber, record the bounce, suppress when it is time.

- hard bounce: the subscriber is suppressed (status bounced) at once;
- complaint: they are unsubscribed from every list and suppressed (status complained);
- soft bounce: counted; `soft_limit` of them within `soft_days` suppress the address;
- auto-replies and delivery notifications: nothing happens, ever.
The subscriber is found by the VERP return path first (bounces+<signed id>@bounce_domain: the
address the report came back to, or our message's Return-Path quoted in the report), then by the
addresses the report names.
"""

from __future__ import annotations

import hashlib
import mailbox
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Protocol

from sqlalchemy import func
from sqlmodel import Session, col, select

from newsletter.audience import lifecycle
from newsletter.audience.addresses import email_key
from newsletter.audience.tokens import SigningKey
from newsletter.bounces.parse import Recipient, Report, parse_report
from newsletter.config import Settings
from newsletter.errors import BadToken, NewsletterError
from newsletter.models import (
    Bounce,
    BounceKind,
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
    ignored: int = 0  # auto-replies and delivery notices
    unrecognized: list[str] = field(default_factory=list)  # left where they were


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
    """Act on every message of a source; handled ones move to `processed`, others stay."""
    report = ProcessReport()
    try:
        for item_key, raw in box.items():
            report.messages += 1
            parsed = parse_report(raw)
            if parsed.kind in ("autoreply", "delivered"):
                report.ignored += 1
                box.move_to_processed(item_key)
                continue
            acted = _act(session, settings, key, parsed, _report_id(raw), report)
            session.commit()  # recorded first: a crash may repeat a move, never lose a bounce
            if acted:
                box.move_to_processed(item_key)
            else:
                report.unrecognized.append(item_key)
    finally:
        box.close()
    return report


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


def _act(
    session: Session,
    settings: Settings,
    key: SigningKey,
    parsed: Report,
    report_id: str,
    report: ProcessReport,
) -> bool:
    """Record and act on one report; False when it names no subscriber of ours."""
    verp = _verp(settings, key, parsed)
    if verp is None and settings.publication.bounce_domain and parsed.kind == "bounce":
        # Every message we send has a signed return path: a bounce without one is not to our
        # mail, and anyone could write it to get an address suppressed. Complaints (feedback
        # loops) come to another address and are still matched by the reader's address.
        return False
    targets: list[tuple[Subscriber, Recipient, int | None]] = []
    if verp is not None:
        subscriber = session.get(Subscriber, verp[1])
        if subscriber is not None:
            # The report's own verdict for the one recipient, whatever address it gives.
            judged = next((r for r in parsed.recipients if r.kind != "none"), None)
            if judged is None and parsed.kind == "complaint":  # the feedback loop redacted it
                judged = Recipient(subscriber.email, "complaint", "feedback")
            if judged is not None:
                targets.append((subscriber, judged, verp[0]))
    else:
        for recipient in parsed.recipients:
            if recipient.kind == "none":
                continue
            subscriber = session.exec(
                select(Subscriber).where(Subscriber.email_key == email_key(recipient.address))
            ).first()
            if subscriber is not None:
                targets.append((subscriber, recipient, None))
    if not targets:
        return False
    for subscriber, recipient, digest_id in targets:
        assert subscriber.id is not None
        if (
            report_id
            and session.exec(
                select(Bounce.id).where(
                    Bounce.subscriber_id == subscriber.id, Bounce.report_id == report_id
                )
            ).first()
        ):
            continue  # the same returned mail seen twice changes nothing more
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
        if recipient.kind == "hard":
            report.hard += 1
        elif recipient.kind == "complaint":
            report.complaints += 1
        else:
            report.soft += 1
        if action.startswith("suppressed"):
            report.suppressed += 1
    return True


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
