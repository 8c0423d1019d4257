"""Reading the audience: who is on a list, in which status, and what is stored about a person.

`active_member` is the one definition of who gets a list's mail: a subscription that is
active, of a person who is active (not bounced, complained or unsubscribed everywhere).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Literal, TypeVar, cast, get_args

from sqlalchemy import ColumnElement, and_, func
from sqlalchemy import select as core_select
from sqlmodel import Session, col, select

from newsletter.audience.addresses import email_hash, email_key, normalize_email
from newsletter.errors import AddressError
from newsletter.models import (
    Bounce,
    ConsentEvent,
    Delivery,
    MailingList,
    Subscriber,
    SubscriberStatus,
    Subscription,
    SubscriptionStatus,
    Suppression,
)

T = TypeVar("T")
_CHUNK = 500  # keys per IN (...) query: far below every database's parameter limit

# A reader's status on a list as the editor sees it: the person's own when they bounced or
# complained (that holds on every list), else their subscription's.
MemberStatus = Literal["pending", "active", "unsubscribed", "bounced", "complained"]
STATUSES: tuple[MemberStatus, ...] = get_args(MemberStatus)
PERSON_SUPPRESSIONS = frozenset({SubscriberStatus.BOUNCED, SubscriberStatus.COMPLAINED})
LEFT = PERSON_SUPPRESSIONS | {SubscriptionStatus.UNSUBSCRIBED}


def chunks(items: Sequence[T], size: int = _CHUNK) -> Iterator[Sequence[T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def active_member(list_id: Any, subscriber_id: Any = None) -> ColumnElement[bool]:
    """The condition for "gets this list's mail", on a query joined to Subscription and
    Subscriber; with `subscriber_id` (a column or value) it also ties the subscription to it."""
    condition = and_(
        col(Subscription.list_id) == list_id,
        col(Subscription.status) == SubscriptionStatus.ACTIVE,
        col(Subscriber.status) == SubscriberStatus.ACTIVE,
    )
    if subscriber_id is not None:
        condition = and_(condition, col(Subscription.subscriber_id) == subscriber_id)
    return condition


def effective_status(subscription: SubscriptionStatus, person: SubscriberStatus) -> MemberStatus:
    """The status that counts for one person on one list."""
    status = subscription if person == SubscriberStatus.ACTIVE else person
    return cast(MemberStatus, status.value)


def active_count(session: Session, list_id: int) -> int:
    """How many people get the list's mail now."""
    return int(
        session.exec(
            select(func.count())
            .select_from(Subscription)
            .join(Subscriber, col(Subscriber.id) == Subscription.subscriber_id)
            .where(active_member(list_id))
        ).one()
    )


def find(session: Session, email: str) -> Subscriber | None:
    return session.exec(select(Subscriber).where(Subscriber.email_key == email_key(email))).first()


def suppressed_hashes(session: Session, hashes: Sequence[str]) -> set[str]:
    found: set[str] = set()
    for chunk in chunks(hashes):
        found.update(
            session.exec(
                select(Suppression.email_hash).where(col(Suppression.email_hash).in_(chunk))
            ).all()
        )
    return found


def was_forgotten(session: Session, email: str) -> bool:
    """Whether the address was erased on request (only its hash is kept)."""
    return bool(suppressed_hashes(session, [email_hash(normalize_email(email))]))


@dataclass(frozen=True)
class ListedSubscriber:
    email: str
    name: str
    status: MemberStatus
    since: str
    consent: str
    attributes: dict[str, str]
    themes: list[str] | None = None  # None: every theme


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
            col(Subscriber.themes),
        )
        .join(Subscription, col(Subscription.subscriber_id) == Subscriber.id)
        .where(col(Subscription.list_id) == mailing_list.id)
        .order_by(col(Subscriber.id))
    )
    rows = session.execute(query.execution_options(yield_per=1000))
    for email, name, person_status, attributes, list_status, joined, consent, themes in rows:
        effective = effective_status(list_status, person_status)
        if status is not None and effective != status:
            continue
        yield ListedSubscriber(
            email, name, effective, f"{joined:%Y-%m-%d}", consent, attributes or {}, themes
        )


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
        effective = effective_status(sub_status, person_status)
        counts.setdefault(list_id, Counter())[effective] += number
    return counts


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
    history = session.exec(
        select(ConsentEvent)
        .where(ConsentEvent.subscriber_id == subscriber.id)
        .order_by(col(ConsentEvent.id))
    ).all()
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
        "consent_history": [
            {
                "list": lists.get(e.list_id, e.list_id) if e.list_id else None,
                **e.model_dump(exclude={"id", "subscriber_id", "list_id"}),
            }
            for e in history
        ],
    }
