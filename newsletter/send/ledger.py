"""The ledger's vocabulary (readers, outcomes, the retry policy, a send's summary) and its
bookkeeping around a send: queue the audience, count, give up on old deferrals. The queued
rows are claimed and recorded by `claims.Claims`, and sent by `dispatch.Dispatcher`."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Literal, NamedTuple

from sqlalchemy import Text, case, cast, func, insert, literal, null, update
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
    edition_id: int | None = None  # None: the full digest


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


# Why a delivery was skipped when its reader's edition has no story in it.
NOTHING_IN_THEMES = "nothing new in the themes they chose"


class EditionChoice(NamedTuple):
    """The edition that the readers of one stored choice of themes get."""

    edition_id: int
    empty: bool  # no story in it: their deliveries are skipped, nobody is mailed


def _stored_themes() -> Any:
    # As text: PostgreSQL's json type has no equality, so it can be neither grouped nor matched.
    return cast(col(Subscriber.themes), Text)


def theme_choices(session: Session, list_id: int) -> dict[str | None, int]:
    """The distinct choices of themes among a list's active readers, as stored (JSON text;
    None: never chose), each with how many hold it: one grouped query, whatever the list's
    size."""
    stored = _stored_themes()
    rows = session.execute(
        select(stored, func.count())
        .select_from(Subscription)
        .join(Subscriber, col(Subscriber.id) == Subscription.subscriber_id)
        .where(active_member(list_id))
        .group_by(stored)
    ).all()
    return {text: int(count) for text, count in rows}


def snapshot_audience(
    session: Session, digest: Digest, editions: Mapping[str, EditionChoice] | None = None
) -> int:
    """Queue one delivery per active subscriber of the digest's list, in one statement.

    `editions` maps a stored choice of themes (as `theme_choices` has it) to the edition its
    readers get; any other reader gets the full digest (no edition). A reader whose edition is
    empty gets a delivery already skipped, so the ledger says why they were not mailed.
    Runs once, when the digest leaves draft; whoever subscribes later waits for the next digest.
    """
    columns = ["digest_id", "subscriber_id"]
    values: list[Any] = [literal(digest.id).label("digest_id"), col(Subscription.subscriber_id)]
    if editions:
        stored = _stored_themes()
        empty = stored.in_([text for text, choice in editions.items() if choice.empty])
        columns += ["edition_id", "status", "last_reply"]
        values += [
            case({text: choice.edition_id for text, choice in editions.items()}, value=stored),
            case((empty, literal(DeliveryStatus.SKIPPED.value)), else_=DeliveryStatus.QUEUED.value),
            case((empty, literal(NOTHING_IN_THEMES)), else_=null()),
        ]
    audience = (
        select(*values)
        .join(Subscriber, col(Subscriber.id) == Subscription.subscriber_id)
        .where(active_member(digest.list_id))
    )
    result = session.execute(insert(Delivery).from_select(columns, audience))
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


def themes_skipped(session: Session, digest_id: int) -> int:
    """Deliveries of a digest skipped because nothing was new in their reader's themes."""
    return int(
        session.exec(
            select(func.count())
            .select_from(Delivery)
            .where(
                Delivery.digest_id == digest_id,
                Delivery.status == DeliveryStatus.SKIPPED,
                Delivery.last_reply == NOTHING_IN_THEMES,
            )
        ).one()
    )


def edition_counts(session: Session, digest_id: int) -> dict[int | None, dict[str, int]]:
    """A digest's deliveries per edition (None: the full digest) and status."""
    counts: dict[int | None, dict[str, int]] = {}
    for edition_id, status, count in session.exec(
        select(Delivery.edition_id, Delivery.status, func.count())
        .where(Delivery.digest_id == digest_id)
        .group_by(col(Delivery.edition_id), col(Delivery.status))
    ).all():
        counts.setdefault(edition_id, {})[status] = count
    return counts
