"""Every change of a subscriber's status, in one place: subscribe, confirm, unsubscribe,
resubscribe, bounce, complaint and forget (and their set-based forms for imports).

Nothing here commits: each change is part of its caller's unit of work (a form, an import,
one returned mail, one delivery), which commits or rolls back as a whole. Whoever left
(unsubscribed, bounced, complained, forgotten) is never made active again by a subscribe.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from enum import StrEnum

from sqlalchemy import bindparam, update
from sqlmodel import Session, col, delete

from newsletter.audience.addresses import email_hash, email_key, normalize_email
from newsletter.audience.csv_io import MAX_NAME
from newsletter.audience.store import find
from newsletter.errors import AddressError
from newsletter.feeds.sanitize import single_line
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
    utcnow,
)


class SubscribeOutcome(StrEnum):
    ADDED = "added"  # active on the list now
    PENDING = "pending"  # waits for the confirmation link (double opt-in)
    UNCHANGED = "unchanged"  # was already on the list
    SUPPRESSED = "suppressed"  # left earlier (or was forgotten): not re-added


class RemoveOutcome(StrEnum):
    UNSUBSCRIBED = "unsubscribed"
    ALREADY_UNSUBSCRIBED = "already unsubscribed"
    NOT_ON_LIST = "not on the list"


# An unsubscribe made through a link in mail starts its reason with this; only such an
# unsubscribe can be undone from the page that followed it.
UNSUBSCRIBE_LINK = "unsubscribe link"


def subscribe(
    session: Session,
    mailing_list: MailingList,
    email: str,
    name: str = "",
    *,
    origin: str,
    consent: str,
    double_opt_in: bool = False,
) -> tuple[SubscribeOutcome, Subscriber | None]:
    """Add one address to a list, with how (`origin`) and from where (`consent`) it came."""
    normalized = normalize_email(email)
    if session.get(Suppression, email_hash(normalized)) is not None:
        return SubscribeOutcome.SUPPRESSED, None
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
        return SubscribeOutcome.SUPPRESSED, subscriber
    assert subscriber.id is not None
    assert mailing_list.id is not None
    subscription = session.get(Subscription, (mailing_list.id, subscriber.id))
    if subscription is not None:
        if subscription.status == SubscriptionStatus.UNSUBSCRIBED:
            return SubscribeOutcome.SUPPRESSED, subscriber
        if subscription.status == SubscriptionStatus.PENDING:
            return SubscribeOutcome.PENDING, subscriber  # again: a fresh confirmation link
        return SubscribeOutcome.UNCHANGED, subscriber
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
    session.flush()
    return (SubscribeOutcome.PENDING if double_opt_in else SubscribeOutcome.ADDED), subscriber


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
    return True


def unsubscribe(
    session: Session, list_id: int, subscriber_id: int, *, origin: str, reason: str = ""
) -> bool:
    """Mark one subscription unsubscribed; True if it changed. Repeating it is harmless."""
    now = utcnow()
    result = session.execute(
        _UNSUBSCRIBE,
        {
            "list": list_id,
            "subscriber": subscriber_id,
            "now": now,
            "reason": reason or origin,
        },
    )
    return bool(getattr(result, "rowcount", 0))


# Built once: a one-click unsubscribe is a web request that may wait for SQLite's write lock,
# and building the statement (and loading, then flushing the row) was most of its time.
_UNSUBSCRIBE = (
    update(Subscription)
    .where(
        col(Subscription.list_id) == bindparam("list"),
        col(Subscription.subscriber_id) == bindparam("subscriber"),
        col(Subscription.status) != SubscriptionStatus.UNSUBSCRIBED,
    )
    .values(
        status=SubscriptionStatus.UNSUBSCRIBED,
        unsubscribed_at=bindparam("now"),
        updated_at=bindparam("now"),
        unsubscribe_reason=bindparam("reason"),
    )
)


def unsubscribe_by_link(session: Session, list_id: int, subscriber_id: int, origin: str) -> bool:
    """The reader's own unsubscribe, from the link in a mail (one-click or the page)."""
    reason = f"{UNSUBSCRIBE_LINK} ({origin})"
    return unsubscribe(session, list_id, subscriber_id, origin=origin, reason=reason)


def resubscribe(session: Session, list_id: int, subscriber_id: int) -> bool:
    """Undo an unsubscribe the reader made through a link; True if it changed.

    Never revives an unsubscribe an editor made, a bounce, a complaint or a forget.
    """
    subscription = session.get(Subscription, (list_id, subscriber_id))
    subscriber = session.get(Subscriber, subscriber_id)
    if (
        subscription is None
        or subscriber is None
        or subscriber.status != SubscriberStatus.ACTIVE
        or subscription.status != SubscriptionStatus.UNSUBSCRIBED
        or not subscription.unsubscribe_reason.startswith(UNSUBSCRIBE_LINK)
    ):
        return False
    subscription.status = SubscriptionStatus.ACTIVE
    subscription.updated_at = utcnow()
    subscription.origin = "web (undid an unsubscribe)"  # the consent record stays
    subscription.unsubscribed_at, subscription.unsubscribe_reason = None, ""
    session.add(subscription)
    return True


def remove(session: Session, mailing_list: MailingList, email: str) -> tuple[RemoveOutcome, str]:
    """An editor unsubscribes an address from a list: what happened, and the address as
    stored."""
    subscriber = find(session, normalize_email(email))
    if subscriber is None or subscriber.id is None or mailing_list.id is None:
        raise AddressError(
            f"{email} is not a subscriber",
            hint="check the spelling; addresses match whatever their case",
        )
    subscription = session.get(Subscription, (mailing_list.id, subscriber.id))
    if subscription is None:
        return RemoveOutcome.NOT_ON_LIST, subscriber.email
    if subscription.status == SubscriptionStatus.UNSUBSCRIBED:
        return RemoveOutcome.ALREADY_UNSUBSCRIBED, subscriber.email
    unsubscribe(
        session,
        mailing_list.id,
        subscriber.id,
        origin="cli",
        reason="removed with `newsletter subscribers remove`",
    )
    return RemoveOutcome.UNSUBSCRIBED, subscriber.email


def mark_bounced(session: Session, subscriber_id: int, now: datetime | None = None) -> None:
    """No more mail to this person on any list: their address does not take it."""
    session.execute(
        update(Subscriber)
        .where(col(Subscriber.id) == subscriber_id)
        .values(status=SubscriberStatus.BOUNCED, updated_at=now or utcnow())
    )


def complain(session: Session, subscriber_id: int, now: datetime | None = None) -> None:
    """They marked our mail as spam: unsubscribed from every list, and never mailed again."""
    now = now or utcnow()
    session.execute(
        update(Subscriber)
        .where(col(Subscriber.id) == subscriber_id)
        .values(status=SubscriberStatus.COMPLAINED, updated_at=now)
    )
    session.execute(
        update(Subscription)
        .where(
            col(Subscription.subscriber_id) == subscriber_id,
            col(Subscription.status) != SubscriptionStatus.UNSUBSCRIBED,
        )
        .values(
            status=SubscriptionStatus.UNSUBSCRIBED,
            unsubscribed_at=now,
            updated_at=now,
            unsubscribe_reason="complaint (marked as spam)",
        )
    )


def mark_people_left(
    session: Session, changes: Sequence[tuple[int, SubscriberStatus]], now: datetime
) -> None:
    """Set-based, for imports: each (subscriber id, bounced | complained) stops their mail."""
    if changes:
        session.connection().execute(
            update(Subscriber)
            .where(col(Subscriber.id) == bindparam("subscriber_id"))
            .values(status=bindparam("status"), updated_at=bindparam("updated_at")),
            [
                {"subscriber_id": id_, "status": status, "updated_at": now}
                for id_, status in changes
            ],
        )


def unsubscribe_many(
    session: Session, list_id: int, changes: Sequence[tuple[int, str]], now: datetime
) -> None:
    """Set-based, for imports: each (subscriber id, reason) leaves the list."""
    if changes:
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
            [{"member": id_, "reason": reason, "now": now} for id_, reason in changes],
        )


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
    session.exec(delete(ConsentEvent).where(col(ConsentEvent.subscriber_id) == subscriber_id))
    session.delete(subscriber)
    return True


def unforget(session: Session, email: str) -> bool:
    """Lift the hash a forget keeps, when the person asks to come back; True if there was one.
    The address is then new to us: it needs adding (and, on the web, confirming) again."""
    hashed = email_hash(normalize_email(email))
    found = session.get(Suppression, hashed)
    if found is None:
        return False
    session.delete(found)
    return True


def join(session: Session, mailing_list: MailingList, subscriber_id: int, now: datetime) -> bool:
    """A reader joins another list from their preference centre; True if it changed. The link
    they used came to their mailbox, so no confirmation is needed."""
    assert mailing_list.id is not None
    subscriber = session.get(Subscriber, subscriber_id)
    if subscriber is None or subscriber.status != SubscriberStatus.ACTIVE:
        return False
    subscription = session.get(Subscription, (mailing_list.id, subscriber_id))
    if subscription is None:
        session.add(
            Subscription(
                list_id=mailing_list.id,
                subscriber_id=subscriber_id,
                status=SubscriptionStatus.ACTIVE,
                origin="preferences",
                consent="preference centre",
                created_at=now,
                updated_at=now,
                confirmed_at=now,
            )
        )
        return True
    if subscription.status == SubscriptionStatus.ACTIVE:
        return False
    subscription.status, subscription.updated_at = SubscriptionStatus.ACTIVE, now
    subscription.confirmed_at = subscription.confirmed_at or now
    subscription.origin, subscription.consent = "preferences", "preference centre"
    subscription.unsubscribed_at, subscription.unsubscribe_reason = None, ""
    session.add(subscription)
    return True
