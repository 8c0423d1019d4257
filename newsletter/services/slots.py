"""The slots' ledger: one `scheduled_run` row per list and slot, claimed by the run that sends
it in a transaction of its own, so two runs at once (on one machine or several) cannot both
have a slot, and what each run made of it."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from sqlalchemy import update
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from newsletter.db import list_row
from newsletter.models import Digest, DigestStatus, ScheduledOutcome, ScheduledRun

if TYPE_CHECKING:
    from newsletter.app import Newsletter

# Outcomes a later run within the grace takes over and tries again; the others end the slot.
RETRIED = frozenset({ScheduledOutcome.WAITING, ScheduledOutcome.FAILED, ScheduledOutcome.STOPPED})


class SlotLedger:
    def __init__(self, app: Newsletter) -> None:
        self.app = app

    def state(
        self, session: Session, slug: str, slot: datetime
    ) -> tuple[int, ScheduledRun | None, int | None]:
        """The list's id, the slot's row if a run claimed it, and a digest built since the
        slot that is sent or sending (a `newsletter send` after the slot counts as the slot's)."""
        list_id = list_row(session, self.app.settings, slug).id
        assert list_id is not None
        row = session.get(ScheduledRun, (list_id, slot))
        since = session.exec(
            select(Digest.id)
            .where(
                Digest.list_id == list_id,
                col(Digest.status).in_([DigestStatus.SENDING, DigestStatus.SENT]),
                col(Digest.created_at) >= slot,
            )
            .order_by(col(Digest.id))
        ).first()
        return list_id, row, since

    def claim(self, list_id: int, slot: datetime, now: datetime) -> bool:
        """Take the slot for this run: insert its row, or take over one a run left for another
        try. Each in a transaction of its own, so a rival run sees the claim at once."""
        with self.app.session() as session:
            session.add(ScheduledRun(list_id=list_id, slot_at=slot, started_at=now))
            try:
                session.commit()
                return True
            except IntegrityError:
                session.rollback()  # another run inserted it first
            # One UPDATE with the outcome in its WHERE: of two runs at once, one changes the
            # row and the other (PostgreSQL re-reads the row it waited for) changes nothing.
            taken = session.connection().execute(
                update(ScheduledRun)
                .where(
                    col(ScheduledRun.list_id) == list_id,
                    col(ScheduledRun.slot_at) == slot,
                    col(ScheduledRun.outcome).in_(sorted(RETRIED)),
                )
                .values(outcome=ScheduledOutcome.RUNNING, started_at=now, finished_at=None)
            )
            session.commit()
            return taken.rowcount == 1

    def finish(
        self,
        list_id: int,
        slot: datetime,
        outcome: ScheduledOutcome,
        digest_id: int | None,
        sent: int,
        detail: str,
    ) -> None:
        """What the run that claimed the slot made of it."""
        with self.app.session() as session:
            row = session.get(ScheduledRun, (list_id, slot))
            assert row is not None  # claimed by this run, never deleted
            row.outcome, row.finished_at = outcome, self.app.now()
            row.digest_id, row.sent, row.detail = digest_id, sent, detail
            session.add(row)
            session.commit()

    def record_missed(
        self, list_id: int, slot: datetime, now: datetime, row: ScheduledRun | None
    ) -> None:
        """Mark a slot past its grace as missed, once: the next runs read it as handled."""
        with self.app.session() as session:
            if row is None:
                session.add(
                    ScheduledRun(
                        list_id=list_id,
                        slot_at=slot,
                        started_at=now,
                        finished_at=now,
                        outcome=ScheduledOutcome.MISSED,
                    )
                )
                try:
                    session.commit()
                except IntegrityError:
                    session.rollback()  # another run recorded it (or took it) first
                return
            session.connection().execute(
                update(ScheduledRun)
                .where(
                    col(ScheduledRun.list_id) == list_id,
                    col(ScheduledRun.slot_at) == slot,
                    col(ScheduledRun.outcome) == row.outcome,
                )
                .values(outcome=ScheduledOutcome.MISSED, finished_at=now)
            )
            session.commit()
