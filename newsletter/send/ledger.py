"""The ledger's vocabulary (readers, outcomes, the retry policy, a send's summary) and its
bookkeeping around a send: queue the audience, count, give up on old deferrals. The queued
rows are claimed and recorded by `claims.Claims`, and sent by `dispatch.Dispatcher`."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Literal, NamedTuple

from sqlalchemy import func, insert, literal, update
from sqlmodel import Session, col, select

from newsletter.audience.store import active_member
from newsletter.db import refresh_statistics
from newsletter.models import (
    Delivery,
    DeliveryStatus,
    Digest,
    DigestStatus,
    Subscriber,
    Subscription,
    utcnow,
)


class Reader(NamedTuple):
    """The little the sender needs of a subscriber."""

    id: int
    email: str
    name: str


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 5
    base_delay: float = 2.0
    lease_seconds: float = 120.0

    def delay(self, attempts: int) -> timedelta:
        return timedelta(seconds=self.base_delay * 2 ** max(attempts - 1, 0))


@dataclass
class SendSummary:
    sent: int = 0
    failed: int = 0
    deferred: int = 0
    retried: int = 0
    suppressed: int = 0
    stopped_early: bool = False

    def add(self, other: SendSummary) -> None:
        self.sent += other.sent
        self.failed += other.failed
        self.deferred += other.deferred
        self.retried += other.retried
        self.suppressed += other.suppressed
        self.stopped_early = self.stopped_early or other.stopped_early


Outcome = Literal["sent", "retry", "deferred", "failed", "paused"]
ProgressCallback = Callable[[Outcome], None]


# Deliveries a send still has to work on.
OPEN_STATUSES = (DeliveryStatus.QUEUED, DeliveryStatus.SENDING, DeliveryStatus.DEFERRED)


def snapshot_audience(session: Session, digest: Digest) -> int:
    """Queue one delivery per active subscriber of the digest's list, in one statement.

    Runs once, when the digest leaves draft; whoever subscribes later waits for the next digest.
    """
    audience = (
        select(literal(digest.id).label("digest_id"), col(Subscription.subscriber_id))
        .join(Subscriber, col(Subscriber.id) == Subscription.subscriber_id)
        .where(active_member(digest.list_id))
    )
    result = session.execute(insert(Delivery).from_select(["digest_id", "subscriber_id"], audience))
    digest.status = DigestStatus.SENDING
    session.add(digest)
    session.commit()
    refresh_statistics(session, "delivery")
    return int(getattr(result, "rowcount", 0) or 0)


def give_up_stale_deferrals(session: Session, digest: Digest, older_than: timedelta) -> int:
    """Deferred deliveries of a digest older than the limit become failures, for good."""
    if digest.created_at > utcnow() - older_than:
        return 0
    result = session.execute(
        update(Delivery)
        .where(
            col(Delivery.digest_id) == digest.id, col(Delivery.status) == DeliveryStatus.DEFERRED
        )
        .values(
            status=DeliveryStatus.FAILED,
            last_reply=func.substr(
                "gave up after retrying for days: " + func.coalesce(Delivery.last_reply, ""), 1, 500
            ),
        )
    )
    session.commit()
    return int(getattr(result, "rowcount", 0) or 0)


def digests_with_deferrals(session: Session, list_id: int) -> list[Digest]:
    with_deferred = select(Delivery.digest_id).where(Delivery.status == DeliveryStatus.DEFERRED)
    return list(
        session.exec(
            select(Digest)
            .where(
                Digest.list_id == list_id,
                Digest.status == DigestStatus.SENT,
                col(Digest.id).in_(with_deferred),
            )
            .order_by(col(Digest.id))
        ).all()
    )


def ledger_counts(session: Session, digest_id: int) -> dict[str, int]:
    rows = session.exec(
        select(Delivery.status, func.count())
        .where(Delivery.digest_id == digest_id)
        .group_by(col(Delivery.status))
    ).all()
    return dict(rows)
