"""The ledger's writes while a send runs: deliveries marked sent in batches, claims renewed, the
next readers claimed. On PostgreSQL from a thread of its own, the next claim made just ahead of
need: the sending thread hands work over and goes on with its connections while the database
answers (every statement a round trip, every commit a wait for the server's disk). SQLite
answers from a local file without waiting for the disk (WAL, synchronous=NORMAL), and a second
thread there costs more than it saves: there it is all done inline.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import Future, TimeoutError
from queue import SimpleQueue

from sqlmodel import Session

from newsletter.db import Database
from newsletter.send.claims import Claims
from newsletter.send.ledger import Reader

Batch = list[tuple[int, str]]  # (subscriber id, Message-ID)
Job = Callable[[Session], None]

# Batches of deliveries handed over and not yet committed, at most: past that the sender
# waits, so that what a crash would send twice stays a moment's worth.
MOST_PENDING = 3


class Bookkeeper:
    def __init__(self, database: Database, claims: Claims, session: Session, batch: int) -> None:
        self._claims = claims
        self._session = session  # the sender's, for working inline
        self._batch = batch
        self._jobs: SimpleQueue[Job | None] = SimpleQueue()
        self._room = threading.Semaphore(MOST_PENDING)
        self._failure: BaseException | None = None
        self._ahead: Future[list[Reader]] | None = None  # the next claim, asked for early
        self._thread: threading.Thread | None = None
        if database.engine.dialect.name == "postgresql":
            self._thread = threading.Thread(
                target=self._work, args=(database,), name="ledger", daemon=True
            )
            self._thread.start()

    def claim(self) -> list[Reader]:
        """The next batch of readers, claimed (by `claim_soon`, if it was asked)."""
        if self._thread is None:
            return self._claims.claim(self._session, self._batch)
        readers = self._wait_for(self._ahead or self._claim_ahead())
        self._ahead = None
        return readers

    def claim_soon(self) -> None:
        """Start claiming the next batch, to be ready when `claim` asks (PostgreSQL). Asked
        just before the current batch runs out, so that whether its readers are still on the
        list is asked moments before they are mailed, not a batch earlier."""
        if self._thread is not None and self._ahead is None:
            self._ahead = self._claim_ahead()

    def record(self, batch: Batch) -> None:
        """Mark a batch sent: now, or handed over (waiting while MOST_PENDING are ahead)."""
        if self._thread is None:
            self._claims.record_sent(self._session, batch)
            return
        self.check()
        self._room.acquire()
        self._jobs.put(lambda session: self._record(session, batch))

    def renew(self) -> None:
        """Keep our claims fresh; on PostgreSQL after the writes handed over before (a renewal
        beside them could take their rows' locks in another order and deadlock)."""
        if self._thread is None:
            self._claims.renew(self._session)
        else:
            self._jobs.put(self._claims.renew)

    def flush(self) -> None:
        """Wait until everything handed over is committed (or the work has failed)."""
        if self._thread is None:
            return
        done = threading.Event()
        self._jobs.put(lambda _session: done.set())
        while not done.wait(0.1) and self._thread.is_alive():
            pass
        self.check()

    def check(self) -> None:
        """Raise what stopped the ledger's thread, if anything did."""
        if self._failure is not None:
            raise self._failure

    def close(self) -> list[Reader]:
        """Finish what is handed over and stop; the readers claimed ahead and never handed
        out (to give back). Raises if the database refused any of it."""
        ahead: list[Reader] = []
        if self._thread is not None:
            self._jobs.put(None)
            self._thread.join()
            if self._ahead is not None and self._ahead.done() and not self._ahead.exception():
                ahead = self._ahead.result()
        self.check()
        return ahead

    def _wait_for(self, claimed: Future[list[Reader]]) -> list[Reader]:
        while True:
            try:
                return claimed.result(timeout=0.1)
            except TimeoutError:
                if self._thread is not None and not self._thread.is_alive():
                    self.check()
                    raise RuntimeError("the ledger's thread stopped") from None

    def _claim_ahead(self) -> Future[list[Reader]]:
        self.check()
        claimed: Future[list[Reader]] = Future()

        def claim(session: Session) -> None:
            try:
                claimed.set_result(self._claims.claim(session, self._batch))
            except BaseException as exc:
                claimed.set_exception(exc)
                raise

        self._jobs.put(claim)
        return claimed

    def _record(self, session: Session, batch: Batch) -> None:
        self._claims.record_sent(session, batch)
        self._room.release()

    def _work(self, database: Database) -> None:
        try:
            with database.session() as session:
                while (job := self._jobs.get()) is not None:
                    job(session)
        except BaseException as exc:  # handed to the sending thread by check()
            self._failure = exc
            self._room.release()  # a sender waiting for room sees the failure
