"""Subscribers and subscriptions: import, add, remove, list, show, export, forget.

The database is the truth for status: an import never re-subscribes someone who unsubscribed,
bounced, complained or asked to be forgotten.
"""

from __future__ import annotations

import csv
import io
import json
import os
from collections import Counter
from collections.abc import Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TextIO, TypeVar

from sqlalchemy import bindparam, func, update
from sqlalchemy import select as core_select
from sqlmodel import Session, col, delete, select

from newsletter.audience.addresses import (
    AddressCheck,
    AddressError,
    check_address,
    email_hash,
    email_key,
    normalize_email,
)
from newsletter.db import bulk_insert
from newsletter.errors import ImportFileError
from newsletter.feeds.sanitize import single_line
from newsletter.models import (
    Bounce,
    Delivery,
    MailingList,
    Subscriber,
    SubscriberStatus,
    Subscription,
    SubscriptionStatus,
    Suppression,
    utcnow,
)

__all__ = ["AddressError", "ImportReport", "import_subscribers", "subscribe"]

T = TypeVar("T")
_CHUNK = 500  # keys per IN (...) query: far below every database's parameter limit
MAX_NAME = 200  # characters: a name goes into the To: header of every message
MAX_ATTRIBUTE = 1000


def _chunks(items: Sequence[T], size: int = _CHUNK) -> Iterator[Sequence[T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


@dataclass(frozen=True)
class Row:
    line: int
    email: str
    name: str
    attributes: dict[str, str]
    status: str = ""  # from a `status` column (an export's): who left stays out
    consent: str = ""  # from a `consent` column: where the consent was first given


@dataclass
class ImportReport:
    added: int = 0  # new on this list (active, or pending on a double opt-in list)
    unchanged: int = 0  # already on the list
    updated: int = 0  # already on the list, with a new name or attributes from the file
    repeated: list[str] = field(default_factory=list)  # "FILE:LINE: ..." for a second row
    suppressed: int = 0
    skipped: list[str] = field(default_factory=list)
    pending: list[int] = field(default_factory=list)  # subscriber ids awaiting confirmation


_PARALLEL_FROM = 20_000  # rows; below this a process pool costs more than it saves


def check_addresses(raws: Sequence[str]) -> list[AddressCheck]:
    """Check many addresses (spreadsheet padding stripped), on every core for big files."""
    padded = [raw.strip(" \t") for raw in raws]
    workers = os.cpu_count() or 1
    if len(padded) < _PARALLEL_FROM or workers < 2:
        return [check_address(raw) for raw in padded]
    size = -(-len(padded) // (workers * 4))
    with ProcessPoolExecutor(workers) as pool:
        chunks = pool.map(_check_chunk, _chunks(padded, size))
        return [check for chunk in chunks for check in chunk]


def _check_chunk(raws: Sequence[str]) -> list[AddressCheck]:
    return [check_address(raw) for raw in raws]


def read_subscriber_csv(path: Path) -> tuple[list[Row], list[str], list[str]]:
    """Rows, `FILE:LINE: reason` problems, and notes on rows that repeat an address (case
    variants of one address are one reader: the first row counts)."""
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
    first_line = text.split("\n", 1)[0]
    delimiter = max(",;\t", key=first_line.count)
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    header = [column.strip().lower() for column in next(reader, [])]
    if "email" not in header:
        raise ImportFileError(
            f"{path}:1: the header row has no 'email' column",
            hint="the first row must name the columns, e.g. email,name",
        )
    email_at = header.index("email")
    name_at = header.index("name") if "name" in header else None
    status_at = header.index("status") if "status" in header else None
    consent_at = header.index("consent") if "consent" in header else None
    # An export's own columns: `since` is the date of that consent, not an attribute.
    extra = [
        (index, name)
        for index, name in enumerate(header)
        if index not in (email_at, name_at, status_at, consent_at) and name and name != "since"
    ]
    try:
        records = [
            (reader.line_num, values) for values in reader if any(value.strip() for value in values)
        ]
    except csv.Error as exc:
        raise ImportFileError(
            f"{path}:{reader.line_num}: not readable as CSV: {exc}",
            hint="check the quotes on that line",
        ) from None
    raws = [values[email_at] if email_at < len(values) else "" for _, values in records]
    rows: dict[str, Row] = {}
    problems: list[str] = []
    repeated: list[str] = []
    for (line, values), raw, check in zip(records, raws, check_addresses(raws), strict=True):
        if check.verdict != "valid":
            problem = (
                f"{raw.strip()!r} is not an address we can mail: {check.reason}"
                if raw.strip()
                else "the email column is empty"
            )
            problems.append(f"{path}:{line}: {problem}")
            continue
        status = _cell_at(values, status_at).lower()
        if status not in ("", *STATUSES):
            problems.append(f"{path}:{line}: status {status!r} is not one of {', '.join(STATUSES)}")
            continue
        name = _cell_at(values, name_at)[:MAX_NAME]
        attributes = {
            name_: single_line(values[index])[:MAX_ATTRIBUTE]
            for index, name_ in extra
            if index < len(values) and values[index].strip()
        }
        key = email_key(check.normalized)
        if key in rows:
            repeated.append(f"{path}:{line}: the address of line {rows[key].line} again; not used")
            continue
        rows[key] = Row(
            line, check.normalized, name, attributes, status, _cell_at(values, consent_at)
        )
    return list(rows.values()), problems, repeated


def _consent(path: Path, row: Row) -> str:
    """Where a subscription's consent comes from: the file's line, and an export's own record."""
    return f"{path.name}:{row.line}" + (f" (earlier: {row.consent})" if row.consent else "")


def _cell_at(values: Sequence[str], index: int | None) -> str:
    return single_line(values[index]) if index is not None and index < len(values) else ""


def import_subscribers(
    session: Session,
    mailing_list: MailingList,
    path: Path,
    *,
    double_opt_in: bool = False,
    skip_invalid: bool = False,
) -> ImportReport:
    """Import a CSV into a list in one transaction; a bad row writes nothing unless skip_invalid.

    Set-based: a few queries per 500 rows, so 100,000 rows take seconds, not minutes.
    """
    rows, problems, repeated = read_subscriber_csv(path)
    if problems and not skip_invalid:
        raise ImportFileError(
            "\n".join(problems),
            hint=f"{len(problems)} bad row(s), nothing imported; fix them or use --skip-invalid",
        )
    report = ImportReport(skipped=problems, repeated=repeated)
    list_id = mailing_list.id
    assert list_id is not None
    now = utcnow()
    stamp = now.replace(tzinfo=None)  # database form of a time, for bulk_insert
    known = _subscribers_by_key(session, [email_key(row.email) for row in rows])
    forgotten = _suppressed_hashes(session, [email_hash(row.email) for row in rows])
    fresh = [
        row
        for row in rows
        if email_key(row.email) not in known and email_hash(row.email) not in forgotten
    ]
    if fresh:
        newest = session.execute(core_select(func.max(Subscriber.id))).scalar() or 0
        bulk_insert(
            session,
            "subscriber",
            ("email", "email_key", "name", "status", "attributes", "created_at", "updated_at"),
            (
                (
                    row.email,
                    email_key(row.email),
                    row.name,
                    row.status if row.status in PERSON_SUPPRESSIONS else SubscriberStatus.ACTIVE,
                    json.dumps(row.attributes),
                    stamp,
                    stamp,
                )
                for row in fresh
            ),
        )
        known.update(_subscribers_after(session, newest))

    memberships = _subscriptions(session, list_id)
    joining: list[tuple[Any, ...]] = []
    edits: list[dict[str, Any]] = []
    leaving_people: list[dict[str, Any]] = []
    leaving_list: list[dict[str, Any]] = []
    for row in rows:
        subscriber = known.get(email_key(row.email))
        left = row.status in LEFT  # the file says so: an export from another list or tool
        if subscriber is None or subscriber.status != SubscriberStatus.ACTIVE or left:
            report.suppressed += 1
            if subscriber is None or not left:  # forgotten, or already left: nothing to add
                continue
            if row.status in PERSON_SUPPRESSIONS and subscriber.status == SubscriberStatus.ACTIVE:
                leaving_people.append(
                    {"subscriber_id": subscriber.id, "status": row.status, "updated_at": now}
                )
            membership = memberships.get(subscriber.id)
            reason = f"{row.status} before the import of {path.name}"
            if membership is None:  # on the list as someone who left, so they stay out
                joining.append(
                    (list_id, subscriber.id, SubscriptionStatus.UNSUBSCRIBED, "import",
                     _consent(path, row), stamp, stamp, None, stamp, reason)
                )  # fmt: skip
            elif membership != SubscriptionStatus.UNSUBSCRIBED:
                leaving_list.append({"member": subscriber.id, "reason": reason, "now": now})
            continue
        membership = memberships.get(subscriber.id)
        if membership == SubscriptionStatus.UNSUBSCRIBED:
            report.suppressed += 1
        elif membership is not None:
            merged = {**subscriber.attributes, **row.attributes}
            if (row.name and row.name != subscriber.name) or merged != subscriber.attributes:
                report.updated += 1
                edits.append(
                    {
                        "subscriber_id": subscriber.id,
                        "name": row.name or subscriber.name,
                        "attributes": merged,
                        "updated_at": now,
                    }
                )
            else:
                report.unchanged += 1
        else:
            # Someone an earlier list had as pending never confirmed: pending here too.
            pending = double_opt_in or row.status == SubscriptionStatus.PENDING
            joining.append(
                (
                    list_id,
                    subscriber.id,
                    SubscriptionStatus.PENDING if pending else SubscriptionStatus.ACTIVE,
                    "import",
                    _consent(path, row),
                    stamp,
                    stamp,
                    None if pending else stamp,
                    None,
                    "",
                )
            )
            report.added += 1
            if double_opt_in:
                report.pending.append(subscriber.id)
    if joining:
        bulk_insert(
            session,
            "subscription",
            (
                "list_id",
                "subscriber_id",
                "status",
                "origin",
                "consent",
                "created_at",
                "updated_at",
                "confirmed_at",
                "unsubscribed_at",
                "unsubscribe_reason",
            ),
            joining,
        )
    if leaving_people:
        session.connection().execute(
            update(Subscriber)
            .where(col(Subscriber.id) == bindparam("subscriber_id"))
            .values(status=bindparam("status"), updated_at=bindparam("updated_at")),
            leaving_people,
        )
    if leaving_list:
        session.connection().execute(
            update(Subscription)
            .where(
                col(Subscription.list_id) == list_id,
                col(Subscription.subscriber_id) == bindparam("member"),
            )
            .values(
                status=SubscriptionStatus.UNSUBSCRIBED,
                unsubscribe_reason=bindparam("reason"),
                unsubscribed_at=bindparam("now"),
                updated_at=bindparam("now"),
            ),
            leaving_list,
        )
    if edits:
        session.connection().execute(
            update(Subscriber)
            .where(col(Subscriber.id) == bindparam("subscriber_id"))
            .values(
                name=bindparam("name"),
                attributes=bindparam("attributes"),
                updated_at=bindparam("updated_at"),
            ),
            edits,
        )
    session.commit()
    return report


@dataclass(frozen=True)
class _Known:
    id: int
    status: str
    name: str
    attributes: dict[str, str]


def _subscribers_by_key(session: Session, keys: Sequence[str]) -> dict[str, _Known]:
    found: dict[str, _Known] = {}
    columns = (
        Subscriber.email_key,
        Subscriber.id,
        Subscriber.status,
        Subscriber.name,
        Subscriber.attributes,
    )
    for chunk in _chunks(keys):
        query = core_select(*(col(column) for column in columns))
        for key, id_, status, name, attributes in session.execute(
            query.where(col(Subscriber.email_key).in_(chunk))
        ).all():
            found[key] = _Known(id_, status, name, attributes or {})
    return found


def _suppressed_hashes(session: Session, hashes: Sequence[str]) -> set[str]:
    found: set[str] = set()
    for chunk in _chunks(hashes):
        found.update(
            session.exec(
                select(Suppression.email_hash).where(col(Suppression.email_hash).in_(chunk))
            ).all()
        )
    return found


def _subscribers_after(session: Session, newest: int) -> dict[str, _Known]:
    """Subscribers added after id `newest`: the ones an import just inserted. Their names and
    attributes are not read back: they are new, so nothing compares against them."""
    query = core_select(col(Subscriber.email_key), col(Subscriber.id), col(Subscriber.status))
    return {
        key: _Known(id_, status, "", {})
        for key, id_, status in session.execute(query.where(col(Subscriber.id) > newest))
    }


def _subscriptions(session: Session, list_id: int) -> dict[int, str]:
    """subscriber id -> subscription status, for everyone ever on the list."""
    return dict(
        session.execute(
            core_select(col(Subscription.subscriber_id), col(Subscription.status)).where(
                col(Subscription.list_id) == list_id
            )
        ).all()
    )


def find(session: Session, email: str) -> Subscriber | None:
    return session.exec(select(Subscriber).where(Subscriber.email_key == email_key(email))).first()


def subscribe(
    session: Session,
    mailing_list: MailingList,
    email: str,
    name: str = "",
    *,
    origin: str,
    consent: str,
    double_opt_in: bool = False,
) -> tuple[str, Subscriber | None]:
    """Add one address to a list: (added | pending | unchanged | suppressed, subscriber)."""
    normalized = normalize_email(email)
    if session.get(Suppression, email_hash(normalized)) is not None:
        return "suppressed", None
    now = utcnow()
    subscriber = find(session, normalized)
    if subscriber is None:
        subscriber = Subscriber(
            email=normalized,
            email_key=email_key(normalized),
            name=single_line(name)[:MAX_NAME],
            created_at=now,
            updated_at=now,
        )
        session.add(subscriber)
        session.flush()
    elif subscriber.status != SubscriberStatus.ACTIVE:
        return "suppressed", subscriber
    assert subscriber.id is not None
    assert mailing_list.id is not None
    subscription = session.get(Subscription, (mailing_list.id, subscriber.id))
    if subscription is not None:
        if subscription.status == SubscriptionStatus.UNSUBSCRIBED:
            return "suppressed", subscriber
        if subscription.status == SubscriptionStatus.PENDING:
            return "pending", subscriber  # adding again sends a fresh confirmation link
        return "unchanged", subscriber
    status = SubscriptionStatus.PENDING if double_opt_in else SubscriptionStatus.ACTIVE
    session.add(
        Subscription(
            list_id=mailing_list.id,
            subscriber_id=subscriber.id,
            status=status,
            origin=origin,
            consent=consent,
            created_at=now,
            updated_at=now,
            confirmed_at=None if double_opt_in else now,
        )
    )
    session.commit()
    return ("pending" if double_opt_in else "added"), subscriber


def confirm(session: Session, list_id: int, subscriber_id: int) -> bool:
    """A pending subscription becomes active (double opt-in); True if it changed."""
    subscription = session.get(Subscription, (list_id, subscriber_id))
    if subscription is None or subscription.status != SubscriptionStatus.PENDING:
        return False
    now = utcnow()
    subscription.status, subscription.confirmed_at, subscription.updated_at = (
        SubscriptionStatus.ACTIVE,
        now,
        now,
    )
    session.add(subscription)
    session.commit()
    return True


def unsubscribe(
    session: Session, list_id: int, subscriber_id: int, *, origin: str, reason: str = ""
) -> bool:
    """Mark one subscription unsubscribed; True if it changed. Repeating it is harmless."""
    subscription = session.get(Subscription, (list_id, subscriber_id))
    if subscription is None or subscription.status == SubscriptionStatus.UNSUBSCRIBED:
        return False
    now = utcnow()
    subscription.status = SubscriptionStatus.UNSUBSCRIBED
    subscription.unsubscribed_at = subscription.updated_at = now
    subscription.unsubscribe_reason = reason or origin
    session.add(subscription)
    session.commit()
    return True


def remove_subscriber(
    session: Session, mailing_list: MailingList, email: str
) -> tuple[Literal["unsubscribed", "already unsubscribed", "not on the list"], str]:
    """Unsubscribe an address from a list by hand (`subscribers remove`): what happened, and
    the address as stored."""
    subscriber = find(session, normalize_email(email))
    if subscriber is None or subscriber.id is None or mailing_list.id is None:
        raise AddressError(
            f"{email} is not a subscriber",
            hint="check the spelling; addresses match whatever their case",
        )
    subscription = session.get(Subscription, (mailing_list.id, subscriber.id))
    if subscription is None:
        return "not on the list", subscriber.email
    if subscription.status == SubscriptionStatus.UNSUBSCRIBED:
        return "already unsubscribed", subscriber.email
    unsubscribe(
        session,
        mailing_list.id,
        subscriber.id,
        origin="cli",
        reason="removed with `newsletter subscribers remove`",
    )
    return "unsubscribed", subscriber.email


@dataclass(frozen=True)
class ListedSubscriber:
    email: str
    name: str
    status: str
    since: str
    consent: str
    attributes: dict[str, str]


STATUSES = ("pending", "active", "unsubscribed", "bounced", "complained")
PERSON_SUPPRESSIONS = frozenset({"bounced", "complained"})  # of a person, on every list
LEFT = PERSON_SUPPRESSIONS | {"unsubscribed"}


def list_subscribers(
    session: Session, mailing_list: MailingList, status: str | None = None
) -> Iterator[ListedSubscriber]:
    """Everyone on a list in the order they joined, with the status that counts: a bounced or
    complained person is that on every list, whatever their subscription says."""
    if status is not None and status not in STATUSES:
        raise AddressError(f"no status {status!r}", hint=f"use one of {', '.join(STATUSES)}")
    # Columns, not ORM objects: an export reads every row of a list, twice.
    query = (
        core_select(
            col(Subscriber.email),
            col(Subscriber.name),
            col(Subscriber.status),
            col(Subscriber.attributes),
            col(Subscription.status),
            col(Subscription.created_at),
            col(Subscription.consent),
        )
        .join(Subscription, col(Subscription.subscriber_id) == Subscriber.id)
        .where(col(Subscription.list_id) == mailing_list.id)
        .order_by(col(Subscriber.id))
    )
    rows = session.execute(query.execution_options(yield_per=1000))
    for email, name, person_status, attributes, list_status, joined, consent in rows:
        effective = list_status if person_status == SubscriberStatus.ACTIVE else person_status
        if status is not None and effective != status:
            continue
        yield ListedSubscriber(
            email, name, effective, f"{joined:%Y-%m-%d}", consent, attributes or {}
        )


_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _cell(value: str) -> str:
    """A spreadsheet must not run what a subscriber typed as their name (CSV injection)."""
    return "'" + value if value.startswith(_FORMULA_START) else value


def write_csv(
    session: Session, mailing_list: MailingList, out: TextIO, status: str | None = None
) -> int:
    """Write a list as CSV (email, name, status, since, consent, then every attribute seen)
    and return how many rows. Two passes over the database, the first for the attribute
    columns, so that a list of millions is written without being held in memory."""
    extra = sorted(
        {key for row in list_subscribers(session, mailing_list, status) for key in row.attributes}
    )
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["email", "name", "status", "since", "consent", *extra])
    written = 0
    for row in list_subscribers(session, mailing_list, status):
        writer.writerow(
            [
                row.email,
                _cell(row.name),
                row.status,
                row.since,
                row.consent,
                *(_cell(row.attributes.get(key, "")) for key in extra),
            ]
        )
        written += 1
    return written


def list_counts(session: Session) -> dict[int, Counter[str]]:
    """Per list id, how many subscriptions are in each status (bounced people count as such)."""
    counts: dict[int, Counter[str]] = {}
    by_status = (
        core_select(
            col(Subscription.list_id),
            col(Subscription.status),
            col(Subscriber.status),
            func.count(),
        )
        .join(Subscriber, col(Subscriber.id) == Subscription.subscriber_id)
        .group_by(col(Subscription.list_id), col(Subscription.status), col(Subscriber.status))
    )
    for list_id, sub_status, person_status, number in session.execute(by_status):
        effective = sub_status if person_status == SubscriberStatus.ACTIVE else person_status
        counts.setdefault(list_id, Counter())[effective] += number
    return counts


def was_forgotten(session: Session, email: str) -> bool:
    """Whether the address was erased on request (only its hash is kept)."""
    return bool(_suppressed_hashes(session, [email_hash(normalize_email(email))]))


def record_of(session: Session, email: str) -> dict[str, Any] | None:
    """Everything stored about one person (`subscribers show`)."""
    subscriber = find(session, normalize_email(email))
    if subscriber is None:
        return None
    lists = {row.id: row.slug for row in session.exec(select(MailingList)).all()}
    subscriptions = session.exec(
        select(Subscription).where(Subscription.subscriber_id == subscriber.id)
    ).all()
    deliveries = session.exec(
        select(Delivery)
        .where(Delivery.subscriber_id == subscriber.id)
        .order_by(col(Delivery.digest_id))
    ).all()
    bounces = session.exec(select(Bounce).where(Bounce.subscriber_id == subscriber.id)).all()
    return {
        "subscriber": subscriber.model_dump(exclude={"email_key"}),
        "subscriptions": [
            {
                "list": lists.get(s.list_id, s.list_id),
                **s.model_dump(exclude={"list_id", "subscriber_id"}),
            }
            for s in subscriptions
        ],
        "deliveries": [
            d.model_dump(exclude={"subscriber_id", "claimed_by", "claimed_at"}) for d in deliveries
        ],
        "bounces": [b.model_dump(exclude={"subscriber_id"}) for b in bounces],
    }


def forget(session: Session, email: str) -> bool:
    """Erase a person (GDPR art. 17) but keep a hash so they are never re-added by mistake."""
    subscriber = find(session, normalize_email(email))
    if subscriber is None or subscriber.id is None:
        return False
    subscriber_id = subscriber.id
    hashed = email_hash(subscriber.email)
    if session.get(Suppression, hashed) is None:
        session.add(Suppression(email_hash=hashed, reason="forgotten on request"))
    session.exec(delete(Subscription).where(col(Subscription.subscriber_id) == subscriber_id))
    session.exec(delete(Delivery).where(col(Delivery.subscriber_id) == subscriber_id))
    session.exec(delete(Bounce).where(col(Bounce.subscriber_id) == subscriber_id))
    session.delete(subscriber)
    session.commit()
    return True
