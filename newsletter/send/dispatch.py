"""Dispatch: the worker threads and transports that send one digest's queued deliveries.

Each thread renders, signs, paces and sends with a transport of its own; the ledger's SQL (what
is claimed, how each outcome is recorded, leases) is `claims.Claims`'s.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from datetime import datetime
from secrets import token_hex

from sqlmodel import Session

from newsletter.db import Database
from newsletter.errors import DeliveryRefused, TransportError
from newsletter.models import DeliveryStatus, Digest, DigestStatus, utcnow
from newsletter.personalize import Recipient
from newsletter.send.claims import Claims, blames_sender
from newsletter.send.ledger import ProgressCallback, Reader, RetryPolicy, SendSummary, ledger_counts
from newsletter.send.message import Envelope, PreparedMessage
from newsletter.send.ratelimit import RateLimiter
from newsletter.send.transport import Transport, TransportFactory


class Dispatcher:
    """Sends one digest's queued deliveries with `concurrency` transports in worker threads.

    `message` is the full digest's; a delivery of an edition gets `editions(edition_id)`'s,
    built the first time a reader of that edition is claimed and kept for the others.
    """

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
        editions: Callable[[int], PreparedMessage] | None = None,
    ) -> None:
        self.database = database
        self.digest_id = digest_id
        self.list_id = list_id
        self.message = message
        self.editions = editions
        self._messages: dict[int, PreparedMessage] = {}
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
        self.claims = Claims(
            database.engine.dialect.name, digest_id, list_id, self.owner, self.retry
        )
        self._local = threading.local()
        self._transports: list[Transport] = []
        self._transports_lock = threading.Lock()

    def _transport(self) -> Transport:
        transport: Transport | None = getattr(self._local, "transport", None)
        if transport is None:
            transport = self.transport_factory()
            self._local.transport = transport
            with self._transports_lock:
                self._transports.append(transport)
        return transport

    def message_for(self, edition_id: int | None) -> PreparedMessage:
        """The message of an edition (None, or no `editions`: the full digest)."""
        if edition_id is None or self.editions is None:
            return self.message
        prepared = self._messages.get(edition_id)
        if prepared is None:
            prepared = self._messages[edition_id] = self.editions(edition_id)
        return prepared

    def _send_one(
        self, subscriber: Reader, message: PreparedMessage | None = None
    ) -> tuple[DeliveryRefused | None, str]:
        message = message or self.message
        recipient = self.recipient(subscriber)
        message_id = message.message_id(recipient)
        envelope = Envelope(self.envelope_sender(recipient), recipient.email)
        try:
            raw = message.render(recipient)
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
            self.claims.prepare_run(session)
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
                    self.claims.renew(session)
                    renewed = time.monotonic()
                if not self.stop.is_set() and fatal is None:
                    if not backlog:
                        # small batches, so that workers sharing a ledger share the work
                        backlog = self.claims.claim(session, self.concurrency * 10)
                    while backlog and len(in_flight) < self.concurrency * 2:
                        subscriber = backlog.pop(0)
                        # Chosen here, in the one thread that reads the database.
                        message = self.message_for(subscriber.edition_id)
                        in_flight[pool.submit(self._send_one, subscriber, message)] = subscriber
                if not in_flight:
                    if self.stop.is_set() or fatal is not None:
                        break
                    wake = self.claims.next_wake(session)
                    if wake is None:
                        break
                    self._sleep_until(wake)
                    self.claims.reclaim_expired(session, utcnow())
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
                    self.progress(
                        self.claims.record(session, subscriber, error, message_id, summary)
                    )
                    if error is not None and blames_sender(error):
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
                self.progress(self.claims.record(session, subscriber, error, message_id, summary))
            session.commit()
            self.claims.release(session, [reader.id for reader in backlog])
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
        self.claims.skip_departed(session)
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
