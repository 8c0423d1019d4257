"""Dispatch: a state machine over Delivery rows, never a loop over a list in memory.

snapshot -> queued rows (one statement) -> claim a batch (sending, with owner and time) -> send ->
sent / queued again with backoff (4xx) / deferred (retries used up) / failed (5xx).
Each outcome is committed as soon as it is known, so a crash loses at most the messages in flight,
and a rerun takes over claims whose lease ran out.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from datetime import UTC, datetime, timedelta
from secrets import token_hex
from typing import Any

from sqlalchemy import bindparam, func, update
from sqlalchemy import select as core_select
from sqlmodel import Session, col, select

from newsletter.audience import lifecycle
from newsletter.audience.store import active_member
from newsletter.db import Database
from newsletter.errors import DeliveryRefused, TransportError
from newsletter.models import (
    Delivery,
    DeliveryStatus,
    Digest,
    DigestStatus,
    Subscriber,
    Subscription,
    utcnow,
)
from newsletter.personalize import Recipient
from newsletter.send.ledger import (
    Outcome,
    ProgressCallback,
    Reader,
    RetryPolicy,
    SendSummary,
    ledger_counts,
)
from newsletter.send.message import Envelope, PreparedMessage
from newsletter.send.ratelimit import RateLimiter
from newsletter.send.transport import Transport, TransportFactory, enhanced_status


class Dispatcher:
    """Sends one digest's queued deliveries with `concurrency` transports in worker threads."""

    def __init__(
        self,
        database: Database,
        digest_id: int,
        list_id: int,
        message: PreparedMessage,
        *,
        envelope_sender: Callable[[Recipient], str],
        transport_factory: TransportFactory,
        recipient: Callable[[Reader], Recipient],
        concurrency: int = 1,
        retry: RetryPolicy | None = None,
        progress: ProgressCallback | None = None,
        stop: threading.Event | None = None,
        signer: Callable[[bytes], bytes] | None = None,
        rate_limiter: RateLimiter | None = None,
    ) -> None:
        self.database = database
        self.digest_id = digest_id
        self.list_id = list_id
        self.message = message
        self.envelope_sender = envelope_sender
        self.signer = signer
        self.rate_limiter = rate_limiter or RateLimiter(0)
        self.transport_factory = transport_factory
        self.recipient = recipient
        self.concurrency = concurrency
        self.retry = retry or RetryPolicy()
        self.progress = progress or (lambda _outcome: None)
        self.stop = stop or threading.Event()
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{token_hex(4)}"
        self._local = threading.local()
        self._transports: list[Transport] = []
        self._transports_lock = threading.Lock()

    # -- the ledger -------------------------------------------------------------------------

    def _prepare_run(self, session: Session) -> None:
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
        self._reclaim_expired(session, now)
        session.commit()
        self._skip_departed(session)

    def _reclaim_expired(self, session: Session, now: datetime) -> int:
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

    def _skip_departed(self, session: Session) -> None:
        session.execute(
            update(Delivery)
            .where(
                col(Delivery.digest_id) == self.digest_id,
                col(Delivery.status).in_([DeliveryStatus.QUEUED, DeliveryStatus.DEFERRED]),
                ~self._still_subscribed(),
            )
            .values(status=DeliveryStatus.SKIPPED, last_reply="left the list before sending")
        )
        session.commit()

    def _claim(self, session: Session, limit: int) -> list[Reader]:
        now = utcnow()
        due = (
            select(Delivery.subscriber_id)
            .where(
                col(Delivery.digest_id) == self.digest_id,
                col(Delivery.status) == DeliveryStatus.QUEUED,
                self._still_subscribed(),
                (col(Delivery.next_attempt_at).is_(None)) | (col(Delivery.next_attempt_at) <= now),
            )
            .order_by(col(Delivery.subscriber_id))
            .limit(limit)
        )
        if self.database.engine.dialect.name == "postgresql":
            due = due.with_for_update(skip_locked=True)
        # A CTE, so the locked rows are chosen once; "IN (subquery)" may be run again per row.
        picked = due.cte("picked")
        claimed = (
            session.execute(
                update(Delivery)
                .where(
                    col(Delivery.digest_id) == self.digest_id,
                    col(Delivery.subscriber_id) == picked.c.subscriber_id,
                    col(Delivery.status) == DeliveryStatus.QUEUED,
                )
                .values(status=DeliveryStatus.SENDING, claimed_by=self.owner, claimed_at=now)
                .returning(col(Delivery.subscriber_id))
            )
            .scalars()
            .all()
        )
        session.commit()
        if not claimed:
            return []
        rows = session.execute(
            core_select(col(Subscriber.id), col(Subscriber.email), col(Subscriber.name))
            .where(col(Subscriber.id).in_(claimed))
            .order_by(col(Subscriber.id))
        ).all()
        return [Reader(id_, email, name) for id_, email, name in rows]

    def _next_wake(self, session: Session) -> datetime | None:
        """When a queued retry falls due or someone else's claim expires; None when all is done."""
        # Readers who left are not waited for: _finish marks their rows skipped.
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

    def _record(
        self,
        session: Session,
        subscriber: Reader,
        error: DeliveryRefused | None,
        message_id: str,
        summary: SendSummary,
    ) -> Outcome:
        if error is None:
            # The hot path: one prepared UPDATE by primary key and a commit, no ORM objects.
            session.connection().execute(
                _MARK_SENT,
                {
                    "digest": self.digest_id,
                    "subscriber": subscriber.id,
                    "now": utcnow(),
                    "message_id": message_id,
                },
            )
            summary.sent += 1
            return "sent"
        row = session.get(Delivery, (self.digest_id, subscriber.id))
        assert row is not None
        now = utcnow()
        row.attempts += 1
        row.claimed_by = row.claimed_at = None
        outcome: Outcome
        if _blames_sender(error):
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

    def _renew_claims(self, session: Session) -> None:
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

    def _release(self, session: Session, subscriber_ids: list[int]) -> None:
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

    # -- sending ----------------------------------------------------------------------------

    def _transport(self) -> Transport:
        transport: Transport | None = getattr(self._local, "transport", None)
        if transport is None:
            transport = self.transport_factory()
            self._local.transport = transport
            with self._transports_lock:
                self._transports.append(transport)
        return transport

    def _send_one(self, subscriber: Reader) -> tuple[DeliveryRefused | None, str]:
        recipient = self.recipient(subscriber)
        message_id = self.message.message_id(recipient)
        envelope = Envelope(self.envelope_sender(recipient), recipient.email)
        try:
            raw = self.message.render(recipient)
            if self.signer is not None:
                raw = self.signer(raw)
            self.rate_limiter.wait()
            self._transport().send(envelope, raw)
        except (DeliveryRefused, TransportError) as refused:
            if isinstance(refused, TransportError):
                raise
            return refused, message_id
        except Exception as exc:  # one bad address or value must never stop the send
            return DeliveryRefused(f"not sent: {exc!r}", code=None, permanent=True), message_id
        return None, message_id

    def run(self) -> SendSummary:
        summary = SendSummary()
        with self.database.session() as session:
            self._prepare_run(session)
            try:
                with ThreadPoolExecutor(self.concurrency, thread_name_prefix="send") as pool:
                    self._pump(session, pool, summary)
            finally:
                with self._transports_lock:
                    for transport in self._transports:
                        transport.close()
            self._finish(session, summary)
        return summary

    def _pump(self, session: Session, pool: ThreadPoolExecutor, summary: SendSummary) -> None:
        in_flight: dict[Future[tuple[DeliveryRefused | None, str]], Reader] = {}
        backlog: list[Reader] = []
        fatal: TransportError | None = None
        renewed = time.monotonic()
        try:
            while True:
                if time.monotonic() - renewed > self.retry.lease_seconds / 3:
                    self._renew_claims(session)
                    renewed = time.monotonic()
                if not self.stop.is_set() and fatal is None:
                    if not backlog:
                        # small batches, so that workers sharing a ledger share the work
                        backlog = self._claim(session, self.concurrency * 10)
                    while backlog and len(in_flight) < self.concurrency * 2:
                        subscriber = backlog.pop(0)
                        in_flight[pool.submit(self._send_one, subscriber)] = subscriber
                if not in_flight:
                    if self.stop.is_set() or fatal is not None:
                        break
                    wake = self._next_wake(session)
                    if wake is None:
                        break
                    self._sleep_until(wake)
                    self._reclaim_expired(session, utcnow())
                    session.commit()
                    continue
                done, _ = wait(in_flight, timeout=1.0, return_when=FIRST_COMPLETED)
                for future in done:
                    subscriber = in_flight.pop(future)
                    try:
                        error, message_id = future.result()
                    except TransportError as exc:
                        fatal = fatal or exc
                        backlog.append(subscriber)
                        continue
                    self.progress(self._record(session, subscriber, error, message_id, summary))
                    if error is not None and _blames_sender(error):
                        fatal = fatal or TransportError(
                            f"the mail server refused the sender: {error.message}",
                            hint="fix the sending setup (DNS, DKIM, relay rights); "
                            "the rest stays queued for the next `newsletter send`",
                        )
                # One commit for every outcome known by now: nothing waits to be recorded.
                session.commit()
        finally:
            # Whatever ended the loop, record what was in flight and give back what was not.
            for future, subscriber in in_flight.items():
                try:
                    error, message_id = future.result()
                except TransportError:
                    backlog.append(subscriber)
                    continue
                self.progress(self._record(session, subscriber, error, message_id, summary))
            session.commit()
            self._release(session, [reader.id for reader in backlog])
            summary.stopped_early = self.stop.is_set() or fatal is not None
        if fatal is not None:
            raise fatal

    def _sleep_until(self, wake: datetime) -> None:
        """Wait for a retry to fall due or another worker's lease to end, looking again often:
        when the other workers finish first, this one is done as soon as it notices."""
        delay = (wake - utcnow()).total_seconds()
        if delay > 0:
            self.stop.wait(min(delay, 0.5))

    def _finish(self, session: Session, summary: SendSummary) -> None:
        self._skip_departed(session)
        counts = ledger_counts(session, self.digest_id)
        # Deferred rows do not hold the digest open: the next send retries them first, and a
        # new digest can go out meanwhile.
        open_rows = counts.get(DeliveryStatus.QUEUED, 0) + counts.get(DeliveryStatus.SENDING, 0)
        if open_rows == 0:
            digest = session.get(Digest, self.digest_id)
            assert digest is not None
            digest.status, digest.sent_at = DigestStatus.SENT, utcnow()
            session.add(digest)
            session.commit()


_MARK_SENT = (
    update(Delivery)
    .where(
        col(Delivery.digest_id) == bindparam("digest"),
        col(Delivery.subscriber_id) == bindparam("subscriber"),
    )
    .values(
        status=DeliveryStatus.SENT,
        attempts=Delivery.attempts + 1,
        sent_at=bindparam("now"),
        message_id=bindparam("message_id"),
        last_reply="250 accepted",
        claimed_by=None,
        claimed_at=None,
    )
)


def _blames_sender(error: DeliveryRefused) -> bool:
    """5.7.x refusals (DMARC, blocked IP) are about us, not the reader: stop, don't suppress."""
    return error.permanent and (enhanced_status(error.message) or "").startswith("5.7.")


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)
