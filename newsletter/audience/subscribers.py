"""Subscribers and subscriptions: CSV import, add, remove. The database is the truth for status."""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from pathlib import Path

import idna
from email_validator import EmailNotValidError, validate_email
from sqlmodel import Session, select

from newsletter.errors import ImportFileError, NewsletterError
from newsletter.feeds.sanitize import single_line
from newsletter.models import (
    MailingList,
    Subscriber,
    SubscriberStatus,
    Subscription,
    SubscriptionStatus,
    utcnow,
)


class AddressError(NewsletterError):
    """An e-mail address that cannot be used."""


def normalize_email(raw: str) -> str:
    """The spelling we store: domain lower-cased and IDNA-checked, local part kept as given."""
    try:
        result = validate_email(raw.strip(), check_deliverability=False)
    except EmailNotValidError as exc:
        raise AddressError(f"{raw.strip()!r} is not a valid e-mail address: {exc}") from None
    if result.smtputf8:
        raise AddressError(
            f"{raw.strip()!r} has non-ASCII letters before the @, which only SMTPUTF8 mail "
            "servers accept; this sender does not use SMTPUTF8 yet"
        )
    return str(result.normalized)


def ascii_address(email: str) -> str:
    """The form that goes on the wire: an internationalized domain in punycode (IDNA 2008)."""
    local, _, domain = email.rpartition("@")
    if domain.isascii():
        return email
    return f"{local}@{idna.encode(domain, uts46=True).decode('ascii')}"


@dataclass
class ImportReport:
    added: int = 0
    unchanged: int = 0
    suppressed: int = 0
    skipped: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class _Row:
    line: int
    email: str
    name: str


def read_subscriber_csv(path: Path) -> tuple[list[_Row], list[str]]:
    """Rows and `FILE:LINE: reason` problems; case variants of one address are one row."""
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except FileNotFoundError:
        raise ImportFileError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise ImportFileError(f"{path}: is a folder", hint="name the CSV file itself") from None
    except OSError as exc:
        raise ImportFileError(f"{path}: cannot read: {exc.strerror}") from None
    except UnicodeDecodeError as exc:
        raise ImportFileError(
            f"{path}: not UTF-8 text (byte {exc.start})", hint="save the file as UTF-8 CSV"
        ) from None
    try:
        dialect: type[csv.Dialect] | csv.Dialect = csv.Sniffer().sniff(
            text[:4096], delimiters=",;\t"
        )
    except csv.Error:
        dialect = csv.excel
    reader = csv.reader(io.StringIO(text, newline=""), dialect)
    header = [column.strip().lower() for column in next(reader, [])]
    if "email" not in header:
        raise ImportFileError(
            f"{path}:1: the header row has no 'email' column",
            hint="the first row must name the columns, e.g. email,name",
        )
    email_at, name_at = header.index("email"), header.index("name") if "name" in header else None
    rows: dict[str, _Row] = {}
    problems: list[str] = []
    for values in reader:
        line = reader.line_num
        if not any(value.strip() for value in values):
            continue
        raw = values[email_at] if email_at < len(values) else ""
        try:
            email = normalize_email(raw)
        except AddressError as exc:
            problems.append(f"{path}:{line}: {exc.message}")
            continue
        name = single_line(values[name_at]) if name_at is not None and name_at < len(values) else ""
        rows.setdefault(email_key(email), _Row(line, email, name))
    return list(rows.values()), problems


def import_subscribers(
    session: Session, mailing_list: MailingList, path: Path, *, skip_invalid: bool = False
) -> ImportReport:
    """Import a CSV into a list in one transaction; a bad row writes nothing unless skip_invalid."""
    rows, problems = read_subscriber_csv(path)
    if problems and not skip_invalid:
        raise ImportFileError(
            "\n".join(problems),
            hint=f"{len(problems)} bad row(s), nothing imported; fix them or use --skip-invalid",
        )
    report = ImportReport(skipped=problems)
    origin = f"import:{path.name}"
    for row in rows:
        outcome = subscribe(session, mailing_list, row.email, row.name, origin=origin)
        setattr(report, outcome, getattr(report, outcome) + 1)
    session.commit()
    return report


def _find(session: Session, email: str) -> Subscriber | None:
    return session.exec(select(Subscriber).where(Subscriber.email_key == email_key(email))).first()


def email_key(email: str) -> str:
    return email.casefold()


def subscribe(
    session: Session, mailing_list: MailingList, email: str, name: str, *, origin: str
) -> str:
    """Add one address to a list; returns added / unchanged / suppressed.

    Someone who unsubscribed, bounced or complained is never re-subscribed by this path.
    """
    now = utcnow()
    subscriber = _find(session, email)
    if subscriber is None:
        subscriber = Subscriber(email=email, email_key=email_key(email), name=name, created_at=now)
        session.add(subscriber)
        session.flush()
    elif subscriber.status != SubscriberStatus.ACTIVE:
        return "suppressed"
    elif name and subscriber.name != name:
        subscriber.name = name
    assert subscriber.id is not None
    assert mailing_list.id is not None
    subscription = session.get(Subscription, (mailing_list.id, subscriber.id))
    if subscription is None:
        session.add(
            Subscription(
                list_id=mailing_list.id,
                subscriber_id=subscriber.id,
                status=SubscriptionStatus.ACTIVE,
                origin=origin,
                created_at=now,
                updated_at=now,
            )
        )
        return "added"
    if subscription.status == SubscriptionStatus.UNSUBSCRIBED:
        return "suppressed"
    return "unchanged"


def unsubscribe(
    session: Session, mailing_list: MailingList, subscriber_id: int, *, origin: str
) -> bool:
    """Mark one subscription unsubscribed; True if it changed. Repeating it is harmless."""
    assert mailing_list.id is not None
    subscription = session.get(Subscription, (mailing_list.id, subscriber_id))
    if subscription is None or subscription.status == SubscriptionStatus.UNSUBSCRIBED:
        return False
    subscription.status = SubscriptionStatus.UNSUBSCRIBED
    subscription.origin = origin
    subscription.updated_at = utcnow()
    session.add(subscription)
    session.commit()
    return True


def remove_subscriber(session: Session, mailing_list: MailingList, email: str) -> bool:
    """Unsubscribe an address from a list by hand (`subscribers remove`)."""
    subscriber = _find(session, normalize_email(email))
    if subscriber is None or subscriber.id is None:
        raise AddressError(
            f"{email} is not a subscriber",
            hint="check the spelling; addresses match whatever their case",
        )
    return unsubscribe(session, mailing_list, subscriber.id, origin="cli")
