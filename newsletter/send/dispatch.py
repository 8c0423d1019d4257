"""Dispatch: one thread that claims a digest's queued deliveries, renders, signs and paces
each, hands it to a pool of connections and records how each ended.

The connections are a `pool.SendPool`'s (for SMTP, one multiplexing thread; for a Maildir or a
test's transport, threads); the ledger's SQL (what is claimed, how each outcome is recorded,
leases) is `claims.Claims`'s.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections import deque
from collections.abc import Callable
from datetime import datetime
from secrets import token_hex

from sqlmodel import Session

from newsletter.db import Database
from newsletter.errors import DeliveryRefused, TransportError
from newsletter.models import DeliveryStatus, Digest, DigestStatus, utcnow
from newsletter.personalize import Recipient
from newsletter.send.bookkeeper import Bookkeeper
from newsletter.send.claims import Claims, blames_sender
from newsletter.send.ledger import ProgressCallback, Reader, RetryPolicy, SendSummary, ledger_counts
from newsletter.send.message import Envelope, PreparedMessage
from newsletter.send.pool import SendPool, ThreadedPool
from newsletter.send.ratelimit import RateLimiter
from newsletter.send.transport import TransportFactory

Posted = tuple[Reader, str]  # a reader and the Message-ID their copy went out with
PoolFactory = Callable[[int], SendPool[Posted]]  # a pool of that many connections

# Messages the server took are handed to the ledger's writer together, at most this long after
# (and written at most recorder.MOST_PENDING batches later): a crash re-sends those (and what
# is in flight), never loses one.
RECORD_EVERY = 0.02
# Readers claimed at a time, for each connection: enough that claiming is a small part of a
# send (a claim is a round trip and a commit), few enough that workers sharing a ledger share
# the work and a reader who leaves mid-send is found out within a moment.
CLAIM_EACH = 25


class Dispatcher:
    """Sends one digest's queued deliveries over `concurrency` connections.

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
        pool: PoolFactory | None = None,
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
        self.pool_factory: PoolFactory = pool or (
            lambda size: ThreadedPool(transport_factory, size)
        )
        self.recipient = recipient
        self.concurrency = concurrency
        self.retry = retry or RetryPolicy()
        self.progress = progress or (lambda _outcome: None)
        self.stop = stop or threading.Event()
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{token_hex(4)}"
        self.claims = Claims(
            database.engine.dialect.name, digest_id, list_id, self.owner, self.retry
        )
        self._sent: list[Posted] = []  # taken by the server, not yet handed to the recorder
        self._recorded = time.monotonic()
        self._books: Bookkeeper

    def message_for(self, edition_id: int | None) -> PreparedMessage:
        """The message of an edition (None, or no `editions`: the full digest)."""
        if edition_id is None or self.editions is None:
            return self.message
        prepared = self._messages.get(edition_id)
        if prepared is None:
            prepared = self._messages[edition_id] = self.editions(edition_id)
        return prepared

    def _post(self, pool: SendPool[Posted], reader: Reader) -> DeliveryRefused | None:
        """Render and sign the reader's copy and hand it to the pool; why not, if it cannot be."""
        message = self.message_for(reader.edition_id)
        try:
            recipient = self.recipient(reader)
            message_id = message.message_id(recipient)
            envelope = Envelope(self.envelope_sender(recipient), recipient.email)
            raw = message.render(recipient)
            if self.signer is not None:
                raw = self.signer(raw)
        except Exception as exc:  # one bad address or value must never stop the send
            return DeliveryRefused(f"not sent: {exc!r}", code=None, permanent=True)
        # Rendered (and signed: a header in front) with no line starting with a dot.
        pool.submit((reader, message_id), envelope, raw, dot_free=True)
        return None

    def run(self) -> SendSummary:
        summary = SendSummary()
        with self.database.session() as session:
            self.claims.prepare_run(session)
            pool = self.pool_factory(self.concurrency)
            self._books = Bookkeeper(
                self.database, self.claims, session, self.concurrency * CLAIM_EACH
            )
            try:
                self._pump(session, pool, summary)
            finally:
                pool.close()
            self._finish(session, summary)
        return summary

    def _pump(self, session: Session, pool: SendPool[Posted], summary: SendSummary) -> None:
        backlog: deque[Reader] = deque()
        fatal: TransportError | None = None
        renewed = time.monotonic()
        try:
            while True:
                if time.monotonic() - renewed > self.retry.lease_seconds / 3:
                    self._record(summary, now=True)
                    self._books.renew()
                    renewed = time.monotonic()
                paced = 0.0  # how long the rate limit holds the next message back
                if not self.stop.is_set() and fatal is None:
                    if not backlog:
                        backlog.extend(self._books.claim())
                    elif len(backlog) <= self.concurrency * 2:
                        self._books.claim_soon()
                    while backlog and pool.free() > 0:
                        paced = self.rate_limiter.delay()
                        if paced:
                            break
                        reader = backlog.popleft()
                        refused = self._post(pool, reader)
                        if refused is not None:
                            self._outcome(session, reader, refused, "", summary)
                if not pool.busy():
                    self._record(summary, now=True)
                    self._books.flush()  # what follows reads the ledger
                    if self.stop.is_set() or fatal is not None:
                        break
                    if backlog:
                        self.stop.wait(paced)
                        continue
                    wake = self.claims.next_wake(session)
                    if wake is None:
                        break
                    self._sleep_until(wake)
                    self.claims.reclaim_expired(session, utcnow())
                    session.commit()
                    continue
                timeout = min(paced or 1.0, RECORD_EVERY if self._sent else 1.0)
                for (reader, message_id), failure in pool.poll(timeout):
                    if isinstance(failure, TransportError):
                        fatal = fatal or failure
                        backlog.append(reader)
                        continue
                    self._outcome(session, reader, failure, message_id, summary)
                    if failure is not None and blames_sender(failure):
                        fatal = fatal or TransportError(
                            f"the mail server refused the sender: {failure.message}",
                            hint="fix the sending setup (DNS, DKIM, relay rights); "
                            "the rest stays queued for the next `newsletter send`",
                        )
                self._record(summary)
        finally:
            # Whatever ended the loop, record what was in flight and give back what was not.
            while pool.busy():
                for (reader, message_id), failure in pool.poll(1.0):
                    if isinstance(failure, TransportError):
                        backlog.append(reader)
                    else:
                        self._outcome(session, reader, failure, message_id, summary)
            self._record(summary, now=True)
            backlog.extend(self._books.close())  # claimed ahead, never started
            self.claims.release(session, [reader.id for reader in backlog])
            summary.stopped_early = self.stop.is_set() or fatal is not None
        if fatal is not None:
            raise fatal

    def _outcome(
        self,
        session: Session,
        reader: Reader,
        failure: DeliveryRefused | None,
        message_id: str,
        summary: SendSummary,
    ) -> None:
        """A message's end: a delivery waits to be recorded with the others; a refusal is
        recorded (and committed) at once, being rare and deciding what comes next."""
        if failure is None:
            self._sent.append((reader, message_id))
            self.progress("sent")
        else:
            self.progress(self.claims.record(session, reader, failure, message_id, summary))

    def _record(self, summary: SendSummary, *, now: bool = False) -> None:
        """Hand the deliveries taken since the last time to the bookkeeper: at most every
        RECORD_EVERY, or `now`."""
        clock = time.monotonic()
        if not self._sent:
            self._recorded = clock  # the clock starts with the first delivery waiting
        elif now or clock - self._recorded >= RECORD_EVERY:
            sent, self._sent = self._sent, []
            self._books.record([(reader.id, message_id) for reader, message_id in sent])
            summary.sent += len(sent)
            self._recorded = clock
        self._books.check()

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
