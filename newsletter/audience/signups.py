"""The status changes of a signup from the web form: pending until confirmed whatever the
list's double_opt_in, mailed at most once a day, and deleted when never confirmed.

Like audience/lifecycle.py (whose `subscribe` it builds on), nothing here commits.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from enum import StrEnum

from sqlalchemy import func, update
from sqlmodel import Session, col, delete, select

from newsletter.audience.addresses import email_hash, normalize_email
from newsletter.audience.lifecycle import subscribe
from newsletter.audience.store import find
from newsletter.models import (
    ConsentEvent,
    Delivery,
    MailingList,
    Subscriber,
    SubscriberStatus,
    Subscription,
    SubscriptionStatus,
    Suppression,
)


class SignupOutcome(StrEnum):
    MAIL = "mail"  # new, or pending and not mailed for a day, or left earlier: send a link
    REMIND = "remind"  # subscribed already: mail them their preferences link instead
    WAIT = "wait"  # mailed within the day (a link or a reminder): not again yet
    NOTHING = "nothing"  # must never be mailed from a form (bounced, complained, forgotten)


CONFIRMATION_RESEND = timedelta(days=1)


def web_signup(
    session: Session, mailing_list: MailingList, email: str, *, consent: str, now: datetime
) -> tuple[SignupOutcome, Subscriber | None]:
    """A signup from the web form: always pending until the link in the mail is followed,
    whatever the list's double_opt_in (a stranger can type anyone's address).

    Someone who unsubscribed may sign up again this way (the confirmation is their new consent);
    a bounced, complained or forgotten address never gets mail from a form.
    """
    normalized = normalize_email(email)
    if session.get(Suppression, email_hash(normalized)) is not None:
        return SignupOutcome.NOTHING, None
    subscriber = find(session, normalized)
    if subscriber is not None and subscriber.status != SubscriberStatus.ACTIVE:
        return SignupOutcome.NOTHING, subscriber
    subscription = None
    if subscriber is not None:
        subscription = session.get(Subscription, (mailing_list.id, subscriber.id))
    if subscription is None:
        _, subscriber = subscribe(
            session, mailing_list, normalized, origin="web", consent=consent, double_opt_in=True
        )
        return SignupOutcome.MAIL, subscriber
    last = subscription.confirmation_sent_at
    mailed_lately = last is not None and now - last < CONFIRMATION_RESEND
    if subscription.status == SubscriptionStatus.ACTIVE:
        return (SignupOutcome.WAIT if mailed_lately else SignupOutcome.REMIND), subscriber
    if subscription.status == SubscriptionStatus.PENDING:
        if mailed_lately:
            return SignupOutcome.WAIT, subscriber
    else:  # unsubscribed earlier: pending again, on this new consent
        subscription.status = SubscriptionStatus.PENDING
        subscription.origin, subscription.consent = "web", consent
        subscription.updated_at = now
        session.add(subscription)
    return SignupOutcome.MAIL, subscriber


def confirmation_mailed(
    session: Session, list_id: int, subscriber_id: int, now: datetime | None
) -> None:
    """When the confirmation mail went out (None: it did not, after all)."""
    session.execute(
        update(Subscription)
        .where(
            col(Subscription.list_id) == list_id, col(Subscription.subscriber_id) == subscriber_id
        )
        .values(confirmation_sent_at=now)
    )


def purge_unconfirmed(session: Session, older_than: datetime) -> int:
    """Signups never confirmed within the confirmation link's life: their subscription goes,
    and the person too when nothing else of theirs is kept. Returns how many subscriptions."""
    stale = session.exec(
        select(Subscription.list_id, Subscription.subscriber_id).where(
            col(Subscription.status) == SubscriptionStatus.PENDING,
            col(Subscription.created_at) < older_than,
            func.coalesce(col(Subscription.confirmation_sent_at), col(Subscription.created_at))
            < older_than,
        )
    ).all()
    for list_id, subscriber_id in stale:
        session.exec(
            delete(Subscription).where(
                col(Subscription.list_id) == list_id,
                col(Subscription.subscriber_id) == subscriber_id,
            )
        )
    for subscriber_id in {subscriber_id for _, subscriber_id in stale}:
        kept = session.exec(
            select(func.count())
            .select_from(Subscription)
            .where(col(Subscription.subscriber_id) == subscriber_id)
        ).one()
        delivered = session.exec(
            select(func.count())
            .select_from(Delivery)
            .where(col(Delivery.subscriber_id) == subscriber_id)
        ).one()
        if not kept and not delivered:
            session.exec(
                delete(ConsentEvent).where(col(ConsentEvent.subscriber_id) == subscriber_id)
            )
            session.exec(delete(Subscriber).where(col(Subscriber.id) == subscriber_id))
    return len(stale)
