"""The delivery ledger's SQL for one digest: the state machine over its Delivery rows.

snapshot -> queued rows (one statement) -> claim a batch (sending, with owner and time) -> send ->
sent / queued again with backoff (4xx) / deferred (retries used up) / failed (5xx).
Outcomes are committed within moments of being known, so a crash re-sends at most the messages
in flight and those taken in the last moment (`dispatch.RECORD_EVERY`), and a rerun takes over
claims whose lease ran out. The sending is `dispatch.Dispatcher`'s.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import cached_property
from typing import Any

from sqlalchemy import bindparam, func, update
from sqlalchemy import select as core_select
from sqlmodel import Session, col, select

from newsletter.audience import lifecycle
from newsletter.audience.store import active_member
from newsletter.errors import DeliveryRefused
from newsletter.models import Delivery, DeliveryStatus, Subscriber, Subscription, utcnow
from newsletter.send.ledger import Outcome, Reader, RetryPolicy, SendSummary
from newsletter.send.transport import enhanced_status


@dataclass
class Claims:
    """One worker's claims on one digest's deliveries: taken, renewed, recorded, given back.

    `owner` names the worker in `claimed_by`; on PostgreSQL (`dialect`) claims skip rows another
    worker has locked, so several workers share one ledger."""

    dialect: str
    digest_id: int
    list_id: int
    owner: str
    retry: RetryPolicy
    # The highest reader id claimed so far: the next claim starts after it, so no claim steps
    # over the rows already sent (whatever the planner's statistics say), and goes round again
    # from the start when it finds nothing further on (retries, claims given back).
    _after: int = field(default=0, init=False)

    def prepare_run(self, session: Session) -> None:
        """Retry what an earlier run deferred, and take back claims whose lease ran out."""
        now = utcnow()
        session.execute(
            update(Delivery)
            .where(
                col(Delivery.digest_id) == self.digest_id,
                col(Delivery.status) == DeliveryStatus.DEFERRED,
            )
            .values(status=DeliveryStatus.QUEUED, attempts=0, next_attempt_at=None)
        )
        self.reclaim_expired(session, now)
        session.commit()
        self.skip_departed(session)

    def reclaim_expired(self, session: Session, now: datetime) -> int:
        expired = now - timedelta(seconds=self.retry.lease_seconds)
        result = session.execute(
            update(Delivery)
            .where(
                col(Delivery.digest_id) == self.digest_id,
                col(Delivery.status) == DeliveryStatus.SENDING,
                col(Delivery.claimed_at) < expired,
            )
            .values(status=DeliveryStatus.QUEUED, claimed_by=None, claimed_at=None)
        )
        return int(getattr(result, "rowcount", 0) or 0)

    def _still_subscribed(self) -> Any:
        """A delivery's reader is still active on the digest's list (they may have left since)."""
        return (
            select(Subscription.subscriber_id)
            .join(Subscriber, col(Subscriber.id) == Subscription.subscriber_id)
            .where(active_member(self.list_id, Delivery.subscriber_id))
            .exists()
        )

    def skip_departed(self, session: Session) -> None:
        session.execute(
            update(Delivery)
            .where(
                col(Delivery.digest_id) == self.digest_id,
                col(Delivery.status).in_([DeliveryStatus.QUEUED, DeliveryStatus.DEFERRED]),
                ~self._still_subscribed(),
            )
            .values(status=DeliveryStatus.SKIPPED, last_reply=LEFT_BEFORE_SENDING)
        )
        session.commit()

    def claim(self, session: Session, limit: int) -> list[Reader]:
        """The next `limit` queued readers, marked ours; any among them who left the list
        since the audience was queued are marked skipped instead of being returned."""
        # Through the Core connection: the ORM's bulk UPDATE would look for objects to refresh.
        connection = session.connection()
        now = utcnow()
        claimed = connection.execute(
            self._claim_statement, {"now": now, "limit": limit, "after": self._after}
        ).all()
        if not claimed and self._after:
            self._after = 0
            claimed = connection.execute(
                self._claim_statement, {"now": now, "limit": limit, "after": 0}
            ).all()
        if not claimed:
            session.commit()
            return []
        editions: dict[int, int | None] = dict(claimed)
        self._after = max(editions)
        rows = connection.execute(self._readers_statement, {"ids": list(editions)}).all()
        departed = editions.keys() - {row[0] for row in rows}
        if departed:
            connection.execute(
                update(Delivery)
                .where(
                    col(Delivery.digest_id) == self.digest_id,
                    col(Delivery.subscriber_id).in_(departed),
                    col(Delivery.status) == DeliveryStatus.SENDING,
                    col(Delivery.claimed_by) == self.owner,
                )
                .values(
                    status=DeliveryStatus.SKIPPED,
                    last_reply=LEFT_BEFORE_SENDING,
                    claimed_by=None,
                    claimed_at=None,
                )
            )
        session.commit()
        return [Reader(id_, email, name, editions[id_]) for id_, email, name in rows]

    @cached_property
    def _claim_statement(self) -> Any:
        """Built once a send: the next `limit` queued rows after reader `after`, in id order
        (the ledger's index gives them in that order), marked ours. Whether their readers are
        still on the list is asked of those rows alone (`_readers_statement`): asked here, a
        planner may walk every subscription up to the first row."""
        due = (
            select(Delivery.subscriber_id)
            .where(
                col(Delivery.digest_id) == self.digest_id,
                col(Delivery.status) == DeliveryStatus.QUEUED,
                col(Delivery.subscriber_id) > bindparam("after"),
                (col(Delivery.next_attempt_at).is_(None))
                | (col(Delivery.next_attempt_at) <= bindparam("now")),
            )
            .order_by(col(Delivery.subscriber_id))
            .limit(bindparam("limit"))
        )
        if self.dialect == "postgresql":
            due = due.with_for_update(skip_locked=True)
        # A CTE, so the locked rows are chosen once; "IN (subquery)" may be run again per row.
        picked = due.cte("picked")
        return (
            update(Delivery)
            .where(
                col(Delivery.digest_id) == self.digest_id,
                col(Delivery.subscriber_id) == picked.c.subscriber_id,
                col(Delivery.status) == DeliveryStatus.QUEUED,
            )
            .values(
                status=DeliveryStatus.SENDING, claimed_by=self.owner, claimed_at=bindparam("now")
            )
            .returning(col(Delivery.subscriber_id), col(Delivery.edition_id))
        )

    @cached_property
    def _readers_statement(self) -> Any:
        """The address and name of those of `ids` still on the list, in id order."""
        # Driven by the ids: each one's subscription looked up by its key, never the whole
        # list walked for them (as a join lets SQLite's planner do).
        still_on_list = select(Subscription.subscriber_id).where(
            active_member(self.list_id, Subscriber.id)
        )
        return (
            core_select(col(Subscriber.id), col(Subscriber.email), col(Subscriber.name))
            .where(col(Subscriber.id).in_(bindparam("ids", expanding=True)), still_on_list.exists())
            .order_by(col(Subscriber.id))
        )

    def next_wake(self, session: Session) -> datetime | None:
        """When a queued retry falls due or someone else's claim expires; None when all is done."""
        # Readers who left are not waited for: Dispatcher._finish marks their rows skipped.
        retry_at = session.exec(
            select(func.min(Delivery.next_attempt_at)).where(
                Delivery.digest_id == self.digest_id,
                Delivery.status == DeliveryStatus.QUEUED,
                self._still_subscribed(),
            )
        ).first()
        claimed_at = session.exec(
            select(func.min(Delivery.claimed_at)).where(
                Delivery.digest_id == self.digest_id, Delivery.status == DeliveryStatus.SENDING
            )
        ).first()
        candidates = []
        if retry_at is not None:
            candidates.append(_aware(retry_at))
        if claimed_at is not None:
            candidates.append(_aware(claimed_at) + timedelta(seconds=self.retry.lease_seconds))
        queued_now = session.exec(
            select(func.count())
            .select_from(Delivery)
            .where(
                Delivery.digest_id == self.digest_id,
                Delivery.status == DeliveryStatus.QUEUED,
                col(Delivery.next_attempt_at).is_(None),
                self._still_subscribed(),
            )
        ).one()
        if queued_now:
            return utcnow()
        return min(candidates) if candidates else None

    def record_sent(self, session: Session, sent: list[tuple[int, str]]) -> None:
        """Mark these (subscriber, Message-ID) deliveries sent, in one statement run for them all
        and one commit. The hot path of a send: the driver's own executemany over plain tuples,
        the values that are the same for every row converted once."""
        connection = session.connection()
        dialect = connection.dialect
        mark = "?" if dialect.paramstyle == "qmark" else "%s"
        sql = _MARK_SENT.replace("?", mark)
        stamp = Delivery.__table__.c.sent_at.type.bind_processor(dialect)  # type: ignore[attr-defined]
        now = stamp(utcnow()) if stamp else utcnow()
        sent_status = DeliveryStatus.SENT.value
        connection.exec_driver_sql(
            sql,
            [
                (sent_status, now, message_id, ACCEPTED, self.digest_id, subscriber)
                for subscriber, message_id in sent
            ],
        )
        session.commit()

    def record(
        self,
        session: Session,
        subscriber: Reader,
        error: DeliveryRefused,
        message_id: str,
        summary: SendSummary,
    ) -> Outcome:
        """Record a refusal: retried later, deferred, failed (suppressing a mailbox that does
        not exist) or, when it blames the sender, queued again untouched."""
        row = session.get(Delivery, (self.digest_id, subscriber.id))
        assert row is not None
        now = utcnow()
        row.attempts += 1
        row.claimed_by = row.claimed_at = None
        outcome: Outcome
        if blames_sender(error):
            row.status, row.last_reply = DeliveryStatus.QUEUED, error.message[:500]
            row.attempts -= 1
            outcome = "paused"
        elif error.permanent:
            row.status, row.last_reply = DeliveryStatus.FAILED, error.message[:500]
            summary.failed += 1
            outcome = "failed"
            if (enhanced_status(error.message) or "").startswith("5.1."):
                lifecycle.mark_bounced(session, subscriber.id, now)  # no such mailbox
                summary.suppressed += 1
        elif row.attempts >= self.retry.max_attempts:
            row.status, row.last_reply = DeliveryStatus.DEFERRED, error.message[:500]
            summary.deferred += 1
            outcome = "deferred"
        else:
            row.status, row.last_reply = DeliveryStatus.QUEUED, error.message[:500]
            row.next_attempt_at = now + self.retry.delay(row.attempts)
            summary.retried += 1
            outcome = "retry"
        session.add(row)
        session.commit()
        return outcome

    def renew(self, session: Session) -> None:
        """Keep our claims fresh while we work, so no other worker takes them over."""
        session.execute(
            update(Delivery)
            .where(
                col(Delivery.digest_id) == self.digest_id,
                col(Delivery.status) == DeliveryStatus.SENDING,
                col(Delivery.claimed_by) == self.owner,
            )
            .values(claimed_at=utcnow())
        )
        session.commit()

    def release(self, session: Session, subscriber_ids: list[int]) -> None:
        """Give back claims we will not send (stopping), so a rerun need not wait for the lease."""
        if subscriber_ids:
            session.execute(
                update(Delivery)
                .where(
                    col(Delivery.digest_id) == self.digest_id,
                    col(Delivery.subscriber_id).in_(subscriber_ids),
                    col(Delivery.status) == DeliveryStatus.SENDING,
                    col(Delivery.claimed_by) == self.owner,
                )
                .values(status=DeliveryStatus.QUEUED, claimed_by=None, claimed_at=None)
            )
            session.commit()


LEFT_BEFORE_SENDING = "left the list before sending"

ACCEPTED = "250 accepted"
# Written out for the driver (record_sent); "?" becomes the driver's own mark. A sent row keeps
# its claim: who sent it, and when it was claimed (when its reader was last seen on the list).
_MARK_SENT = (
    "UPDATE delivery SET status = ?, attempts = attempts + 1, sent_at = ?, message_id = ?, "
    "last_reply = ? WHERE digest_id = ? AND subscriber_id = ?"
)


def blames_sender(error: DeliveryRefused) -> bool:
    """5.7.x refusals (DMARC, blocked IP) are about us, not the reader: stop, don't suppress."""
    return error.permanent and (enhanced_status(error.message) or "").startswith("5.7.")


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)
