"""Scheduled sending: `run` fetches every feed, then sends each list whose latest slot is due
(`[[lists]] schedule`, in `[publication] timezone`); `loop` does that at every slot until
stopped; `slots` says what is due and when the next slot is.

A slot is due once it has passed, until its grace runs out, while no digest of the list went
out since it and no run has handled it. A run claims the slot first with a row of its own
(`scheduled_run`, keyed by list and slot) in a transaction of its own: two runs at once, on
one machine or several, cannot both have it, so a slot sends at most one digest. The ledger's
exactly-once still stands behind that for each reader.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from sqlalchemy.exc import SQLAlchemyError

from newsletter.config_sections import MailingList as ListSettings
from newsletter.db import database_failure
from newsletter.errors import NewsletterError
from newsletter.models import ScheduledOutcome
from newsletter.schedule import latest_slot, next_slot
from newsletter.send.ledger import ProgressCallback
from newsletter.services.slots import RETRIED, SlotLedger

if TYPE_CHECKING:
    from newsletter.app import Newsletter
    from newsletter.services.feeds import FeedReport
    from newsletter.services.sending import SendReport

# While a slot waits (for an approval, another try), the loop looks again this often.
RETRY_EVERY = timedelta(minutes=15)
# The loop never sleeps longer than this at once: a clock set right, or a machine that
# slept, moves the wake-up by at most this much.
LONGEST_NAP = 15 * 60.0
WATCH_EVERY = 30.0  # seconds between looks at config.toml while waiting for a slot

# What `run` did with a list: a recorded outcome's value, or one of these.
# "not due": the latest slot was handled before (see `recorded`), or is not reached yet;
# "sent since": a digest went out after the slot (a `newsletter send`); "taken": another run
# has the slot now; "unscheduled": the list has no schedule, so `run` never sends it.
Verdict = Literal[
    "sent",
    "nothing new",
    "no audience",
    "waits for approval",
    "missed",
    "failed",
    "stopped",
    "not due",
    "sent since",
    "taken",
    "unscheduled",
]


@dataclass(frozen=True)
class ListRun:
    """What a run did with one list, and why."""

    slug: str
    verdict: Verdict
    slot: datetime | None = None  # the latest slot (aware UTC)
    next_slot: datetime | None = None
    late: timedelta = timedelta(0)  # how long after the slot this run looked
    grace: timedelta = timedelta(0)
    recorded: ScheduledOutcome | None = None  # for "not due", "taken", "missed": the slot's row
    digest_id: int | None = None
    sent: int = 0
    detail: str = ""  # an error's line, what an approval needs
    hint: str = ""
    send: SendReport | None = None


@dataclass
class RunReport:
    feeds: list[FeedReport] = field(default_factory=list)
    lists: list[ListRun] = field(default_factory=list)

    @property
    def failed(self) -> bool:
        return any(entry.verdict == "failed" for entry in self.lists)

    @property
    def stopped(self) -> bool:
        return any(entry.verdict == "stopped" for entry in self.lists)


@dataclass(frozen=True)
class SlotStatus:
    """A scheduled list's slots, for `newsletter status`."""

    slug: str
    schedule: str
    latest: datetime
    next: datetime
    recorded: ScheduledOutcome | None  # how the latest slot went, if a run handled it
    due: bool


@dataclass(frozen=True)
class _Send:
    """What the CLI hands through to each send: progress, a stop."""

    stop: threading.Event | None = None
    progress: ProgressCallback | None = None
    on_start: Callable[[SendReport], None] | None = None


class ScheduleService:
    def __init__(self, app: Newsletter) -> None:
        self.app = app
        self.ledger = SlotLedger(app)

    # --- what is due ------------------------------------------------------------------------

    def slots(self, slug: str | None = None) -> list[SlotStatus]:
        """Every scheduled list (or one) with its latest and next slot and whether it is due."""
        zone, now = self.app.settings.publication.zone, self.app.now()
        found = []
        with self.app.session() as session:
            for declared in self._lists(slug):
                schedule = declared.parsed_schedule
                if schedule is None:
                    continue
                latest = latest_slot(schedule, zone, now)
                _, row, since = self.ledger.state(session, declared.slug, latest)
                recorded = row.outcome if row else None
                # As `run` decides: a row left for another try is due even when its digest
                # is out (a stopped send goes on), otherwise a digest since the slot ends it.
                open_slot = row.outcome in RETRIED if row else since is None
                due = open_slot and now - latest <= _grace(declared)
                found.append(
                    SlotStatus(
                        declared.slug,
                        str(schedule),
                        latest,
                        next_slot(schedule, zone, now),
                        recorded,
                        due,
                    )
                )
            session.rollback()  # list_row may have added a row for a list new in config
        return found

    def due(self, slug: str | None = None) -> list[str]:
        return [status.slug for status in self.slots(slug) if status.due]

    # --- running ----------------------------------------------------------------------------

    def run(
        self,
        slug: str | None = None,
        *,
        stop: threading.Event | None = None,
        progress: ProgressCallback | None = None,
        on_start: Callable[[SendReport], None] | None = None,
        on_list: Callable[[ListRun], None] | None = None,
    ) -> RunReport:
        """Fetch every feed once, then handle the latest slot of each list (or of one)."""
        lists = self._lists(slug)  # an unknown --list fails before anything is fetched
        report = RunReport(feeds=self.app.feeds.fetch())
        options = _Send(stop, progress, on_start)
        for declared in lists:
            if stop is not None and stop.is_set():
                break
            entry = self._run_list(declared, options)
            report.lists.append(entry)
            if on_list:
                on_list(entry)
        return report

    def loop(
        self,
        slug: str | None = None,
        *,
        stop: threading.Event,
        on_run: Callable[[RunReport, datetime | None], None],
        progress: ProgressCallback | None = None,
        on_start: Callable[[SendReport], None] | None = None,
        on_list: Callable[[ListRun], None] | None = None,
    ) -> None:
        """Run now, then at each next slot, until `stop` is set; `on_run` gets each run's
        report and the time of the next wake-up (None: no list has a schedule, so it ends).

        An editor who changes config.toml while it waits (a new time, a list paused) is
        heard at once: the file is watched while sleeping, and each pass after a change runs
        on the config as it is then (a new app object, closed when the next one replaces it).
        """
        app = self.app
        config = app.settings.path
        try:
            while not stop.is_set():
                schedule = app.schedule
                read = _stamp(config)  # the config this pass runs on
                report = schedule.run(
                    slug, stop=stop, progress=progress, on_start=on_start, on_list=on_list
                )
                wake = schedule.wake_time(slug)
                on_run(report, wake)
                if wake is None:
                    return
                if schedule.sleep_until(wake, stop, watch=config, read=read):
                    fresh = app.reloaded()  # a bad edit stops the loop, loudly
                    if app is not self.app:
                        app.close()
                    app = fresh
        finally:
            if app is not self.app:
                app.close()

    def wake_time(self, slug: str | None = None) -> datetime | None:
        """The next slot of any scheduled list, sooner while a slot waits for another try."""
        slots = self.slots(slug)
        if not slots:
            return None
        wake = min(status.next for status in slots)
        waiting = [status for status in slots if status.due or status.recorded in RETRIED]
        if waiting:
            wake = min(wake, self.app.now() + RETRY_EVERY)
        return wake

    def sleep_until(
        self,
        wake: datetime,
        stop: threading.Event,
        *,
        watch: Path | None = None,
        read: tuple[int, int] | None = None,
    ) -> bool:
        """Wait for the app's clock to reach `wake`, or for `stop`: no busy loop, and a signal
        that sets `stop` wakes it at once. With `watch`, a change to that file since it was
        `read` ends the wait early; returns whether it did."""
        seen = read if read is not None else _stamp(watch)
        if watch is not None and _stamp(watch) != seen:
            return True
        while not stop.is_set():
            remaining = (wake - self.app.now()).total_seconds()
            if remaining <= 0:
                return False
            stop.wait(min(remaining, WATCH_EVERY if watch else LONGEST_NAP))
            if watch is not None and _stamp(watch) != seen:
                return True
        return False

    # --- one list ---------------------------------------------------------------------------

    def _lists(self, slug: str | None) -> tuple[ListSettings, ...]:
        settings = self.app.settings
        return (settings.mailing_list(slug),) if slug else settings.lists

    def _run_list(self, declared: ListSettings, options: _Send) -> ListRun:
        schedule = declared.parsed_schedule
        if schedule is None:
            return ListRun(declared.slug, "unscheduled")
        zone, now = self.app.settings.publication.zone, self.app.now()
        slot = latest_slot(schedule, zone, now)
        grace, late = _grace(declared), now - slot
        seen = ListRun(declared.slug, "not due", slot, next_slot(schedule, zone, now), late, grace)
        with self.app.session() as session:
            list_id, row, since = self.ledger.state(session, declared.slug, slot)
            session.commit()  # list_row adds the row of a list new in config.toml
        if row is not None and row.outcome not in RETRIED:
            taken = row.outcome == ScheduledOutcome.RUNNING
            return _with(seen, "taken" if taken else "not due", recorded=row.outcome)
        if row is None and since is not None:
            return _with(seen, "sent since", digest_id=since)
        if late > grace:
            self.ledger.record_missed(list_id, slot, now, row)
            return _with(seen, "missed", recorded=row.outcome if row else None)
        if not self.ledger.claim(list_id, slot, now):
            return _with(seen, "taken", recorded=ScheduledOutcome.RUNNING)
        outcome, entry = self._send(declared, options, seen)
        detail = entry.detail or (entry.send.subject if entry.send else "")
        self.ledger.finish(list_id, slot, outcome, entry.digest_id, entry.sent, detail)
        return entry

    def _send(
        self, declared: ListSettings, options: _Send, seen: ListRun
    ) -> tuple[ScheduledOutcome, ListRun]:
        slug = declared.slug
        try:
            report = self.app.sending.send(
                slug, stop=options.stop, progress=options.progress, on_start=options.on_start
            )
        except (NewsletterError, SQLAlchemyError, OSError) as exc:
            error = _as_error(exc)
            approval = self._approval(slug) if declared.require_approval else None
            if approval in ("waiting", "changed since approval"):
                detail = "it changed since it was approved" if approval != "waiting" else ""
                entry = _with(seen, "waits for approval", detail=detail, hint=error.hint)
                return ScheduledOutcome.WAITING, entry
            entry = _with(seen, "failed", detail=error.message, hint=error.hint)
            return ScheduledOutcome.FAILED, entry
        if report.no_audience:
            outcome = ScheduledOutcome.NO_AUDIENCE
        elif report.digest_id is None:
            outcome = ScheduledOutcome.NOTHING_NEW
        elif report.summary.stopped_early:
            outcome = ScheduledOutcome.STOPPED
        else:
            outcome = ScheduledOutcome.SENT
        sent = report.summary.sent
        entry = _with(seen, _VERDICTS[outcome], digest_id=report.digest_id, sent=sent, send=report)
        return outcome, entry

    def _approval(self, slug: str) -> str | None:
        """Where the next digest's approval stands, to tell a wait from a failure."""
        try:
            plan = self.app.desk.show(slug)
        except NewsletterError:
            return None
        return None if plan is None else plan.approval


def _grace(declared: ListSettings) -> timedelta:
    return timedelta(hours=declared.schedule_grace_hours)


def _with(seen: ListRun, verdict: Verdict, **changes: Any) -> ListRun:
    return replace(seen, verdict=verdict, **changes)


_VERDICTS: dict[ScheduledOutcome, Verdict] = {
    ScheduledOutcome.SENT: "sent",
    ScheduledOutcome.NOTHING_NEW: "nothing new",
    ScheduledOutcome.NO_AUDIENCE: "no audience",
    ScheduledOutcome.WAITING: "waits for approval",
    ScheduledOutcome.FAILED: "failed",
    ScheduledOutcome.STOPPED: "stopped",
}


def _as_error(exc: Exception) -> NewsletterError:
    if isinstance(exc, NewsletterError):
        return exc
    if isinstance(exc, SQLAlchemyError):
        return database_failure(exc)
    where = f"{getattr(exc, 'filename', None)}: " if getattr(exc, "filename", None) else ""
    return NewsletterError(f"{where}{getattr(exc, 'strerror', None) or exc}")


def _stamp(path: Path | None) -> tuple[int, int] | None:
    """What tells a changed file: its modification time and size (None: no file to watch)."""
    if path is None:
        return None
    try:
        found = path.stat()
    except OSError:
        return None
    return found.st_mtime_ns, found.st_size
