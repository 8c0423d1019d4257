"""Scheduled sending: the slot maths (daylight saving in Europe/Berlin and America/New_York),
`app.schedule.run` on a clock the tests set, and `newsletter run` (and `--loop`) as editors and
services run it, two processes at once included."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time as clock_time
from collections.abc import Iterator
from datetime import UTC, date, datetime, time, timedelta
from email.utils import format_datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlmodel import select

from newsletter.app import Newsletter
from newsletter.config import load_settings
from newsletter.errors import ConfigError
from newsletter.models import Digest, ScheduledOutcome, ScheduledRun
from newsletter.schedule import (
    latest_slot,
    local_label,
    next_slot,
    parse_schedule,
    wall_time_instant,
)
from newsletter.services.schedule import ListRun, RunReport
from tests.conftest import Project, on_postgres

BERLIN = ZoneInfo("Europe/Berlin")
NEW_YORK = ZoneInfo("America/New_York")


def utc(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=UTC)  # type: ignore[misc]


# --- the slot maths ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("mon 08:00", "mon 08:00"),
        ("Daily 7:30", "daily 07:30"),
        ("weekdays 06:00", "weekdays 06:00"),
        ("monday,thu 23:59", "mon,thu 23:59"),
        ("mon,tue,wed,thu,fri,sat,sun 00:00", "daily 00:00"),
    ],
)
def test_a_schedule_is_a_day_and_a_time(text: str, shown: str) -> None:
    assert str(parse_schedule(text)) == shown


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("08:00", "write a day and a time"),
        ("mon 8am", "is not a time"),
        ("mon 24:00", "is not a time"),
        ("mon 08:60", "is not a time"),
        ("someday 08:00", "'someday' in 'someday 08:00' is not a day"),
        ("mon,,thu 08:00", "is not a day"),
    ],
)
def test_a_schedule_that_is_not_one_says_what_fits(text: str, says: str) -> None:
    with pytest.raises(ValueError) as raised:  # noqa: PT011 (the words are checked below)
        parse_schedule(text)
    assert says in str(raised.value)


def test_weekly_slots_before_and_after_now() -> None:
    weekly = parse_schedule("mon 08:00")
    monday_0800 = utc(2026, 11, 30, 7)  # 08:00 CET
    assert latest_slot(weekly, BERLIN, monday_0800 - timedelta(seconds=1)) == utc(2026, 11, 23, 7)
    assert next_slot(weekly, BERLIN, monday_0800 - timedelta(seconds=1)) == monday_0800
    assert latest_slot(weekly, BERLIN, monday_0800) == monday_0800  # due at the slot itself
    assert next_slot(weekly, BERLIN, monday_0800) == utc(2026, 12, 7, 7)
    assert latest_slot(weekly, BERLIN, utc(2026, 12, 6, 23)) == monday_0800  # Sunday night


def test_daily_and_weekday_slots() -> None:
    daily = parse_schedule("daily 07:30")
    assert latest_slot(daily, ZoneInfo("UTC"), utc(2026, 12, 1, 7, 29)) == utc(2026, 11, 30, 7, 30)
    assert next_slot(daily, ZoneInfo("UTC"), utc(2026, 12, 1, 7, 29)) == utc(2026, 12, 1, 7, 30)
    weekdays = parse_schedule("weekdays 06:00")
    saturday = utc(2026, 12, 5, 12)
    assert latest_slot(weekdays, ZoneInfo("UTC"), saturday) == utc(2026, 12, 4, 6)  # Friday's
    assert next_slot(weekdays, ZoneInfo("UTC"), saturday) == utc(2026, 12, 7, 6)  # Monday's


@pytest.mark.parametrize(
    ("zone", "days", "expected"),
    [
        # Berlin springs forward on Sunday 29 March 2026 and falls back on 25 October.
        (BERLIN, [(2026, 3, 28), (2026, 3, 29)], [utc(2026, 3, 28, 7), utc(2026, 3, 29, 6)]),
        (BERLIN, [(2026, 10, 24), (2026, 10, 25)], [utc(2026, 10, 24, 6), utc(2026, 10, 25, 7)]),
        # New York springs forward on Sunday 8 March 2026 and falls back on 1 November.
        (NEW_YORK, [(2026, 3, 7), (2026, 3, 8)], [utc(2026, 3, 7, 13), utc(2026, 3, 8, 12)]),
        (NEW_YORK, [(2026, 10, 31), (2026, 11, 1)], [utc(2026, 10, 31, 12), utc(2026, 11, 1, 13)]),
    ],
)
def test_a_slot_keeps_its_wall_time_across_daylight_saving(
    zone: ZoneInfo, days: list[tuple[int, int, int]], expected: list[datetime]
) -> None:
    daily = parse_schedule("daily 08:00")
    slots = [latest_slot(daily, zone, utc(*day, 20)) for day in days]
    assert slots == expected
    assert [slot.astimezone(zone).time() for slot in slots] == [time(8), time(8)]


def test_weekly_slots_in_a_daylight_saving_week() -> None:
    weekly = parse_schedule("mon 08:00")
    # The Monday before the change is CET (07:00 UTC), the Monday after CEST (06:00 UTC).
    assert latest_slot(weekly, BERLIN, utc(2026, 3, 29, 12)) == utc(2026, 3, 23, 7)
    assert next_slot(weekly, BERLIN, utc(2026, 3, 29, 12)) == utc(2026, 3, 30, 6)
    # New York: 08:00 EST is 13:00 UTC, 08:00 EDT 12:00 UTC.
    assert latest_slot(weekly, NEW_YORK, utc(2026, 3, 8, 12)) == utc(2026, 3, 2, 13)
    assert next_slot(weekly, NEW_YORK, utc(2026, 3, 8, 12)) == utc(2026, 3, 9, 12)
    assert next_slot(weekly, NEW_YORK, utc(2026, 11, 1, 12)) == utc(2026, 11, 2, 13)


def test_a_wall_time_that_does_not_exist_is_the_first_instant_after_the_jump() -> None:
    # 02:30 is skipped: Berlin goes from 02:00 CET to 03:00 CEST (01:00 UTC).
    berlin = wall_time_instant(date(2026, 3, 29), time(2, 30), BERLIN)
    assert berlin == utc(2026, 3, 29, 1)
    assert berlin.astimezone(BERLIN).time() == time(3)
    new_york = wall_time_instant(date(2026, 3, 8), time(2, 30), NEW_YORK)
    assert new_york == utc(2026, 3, 8, 7)  # 03:00 EDT
    sunday = parse_schedule("sun 02:30")
    assert latest_slot(sunday, BERLIN, utc(2026, 3, 29, 1)) == berlin
    assert latest_slot(sunday, BERLIN, utc(2026, 3, 29, 0, 59)) == utc(2026, 3, 22, 1, 30)


def test_a_wall_time_that_happens_twice_is_the_first() -> None:
    # 02:30 happens in CEST (00:30 UTC), then again in CET (01:30 UTC).
    assert wall_time_instant(date(2026, 10, 25), time(2, 30), BERLIN) == utc(2026, 10, 25, 0, 30)
    # 01:30 happens in EDT (05:30 UTC), then in EST (06:30 UTC).
    assert wall_time_instant(date(2026, 11, 1), time(1, 30), NEW_YORK) == utc(2026, 11, 1, 5, 30)
    daily = parse_schedule("daily 01:30")
    assert next_slot(daily, NEW_YORK, utc(2026, 11, 1, 5, 30)) == utc(2026, 11, 2, 6, 30)


def test_a_slot_reads_as_the_editor_wrote_it() -> None:
    assert local_label(utc(2026, 12, 1, 7), BERLIN) == "Tue 1 Dec 08:00 Europe/Berlin"


# --- config -----------------------------------------------------------------------------------


def test_a_bad_time_zone_or_schedule_is_one_line_naming_the_key(project: Project) -> None:
    project.update("publication", timezone="Europe/Berln")
    data = project.config()
    data["lists"][0]["schedule"] = "monday at eight"
    project.write_config(data)
    with pytest.raises(ConfigError) as raised:
        load_settings(project.config_path)
    lines = raised.value.message.splitlines()
    assert any("[publication] timezone: 'Europe/Berln' is not a time zone" in ln for ln in lines)
    assert any("[[lists]] #1 schedule: 'monday at eight' is not a schedule" in ln for ln in lines)


def test_the_time_zone_defaults_to_utc_and_the_grace_to_six_hours(project: Project) -> None:
    settings = load_settings(project.config_path)
    assert settings.publication.zone.key == "UTC"
    assert settings.lists[0].schedule is None
    assert settings.lists[0].schedule_grace_hours == 6


# --- through the app, on a clock the test sets ------------------------------------------------


class Clock:
    """The app's clock: it stands still until the test moves it."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def schedule_list(project: Project, schedule: str | None, **values: Any) -> None:
    data = project.config()
    if schedule is not None:
        data["lists"][0]["schedule"] = schedule
    data["lists"][0].update(values)
    project.write_config(data)


def daily_at(instant: datetime) -> str:
    return f"daily {instant.astimezone(UTC):%H:%M}"


def this_minute() -> datetime:
    # Briefings without dates are first seen at the real time: the test clock starts there.
    return datetime.now(UTC).replace(second=0, microsecond=0) + timedelta(minutes=1)


def dated(instant: datetime) -> str:
    """A feed item's date: the test clock is ahead of the real time the fetch sees."""
    return f"<pubDate>{format_datetime(instant)}</pubDate>"


@pytest.fixture
def clock() -> Clock:
    return Clock(this_minute())


@pytest.fixture
def readers(project: Project) -> Project:
    project.cli("subscribers", "import", "subscribers/weekly.csv", "--list", "weekly")
    return project


@pytest.fixture
def scheduled_app(readers: Project, clock: Clock) -> Iterator[Any]:
    def make() -> Newsletter:
        return Newsletter(load_settings(readers.config_path), clock=clock)

    apps: list[Newsletter] = []

    def opened() -> Newsletter:
        apps.append(make())
        return apps[-1]

    yield opened
    for app in apps:
        app.close()


def only(report: RunReport) -> ListRun:
    assert len(report.lists) == 1
    return report.lists[0]


def digests(app: Newsletter) -> list[Digest]:
    with app.session() as session:
        return list(session.exec(select(Digest)).all())


def test_a_slot_an_hour_ago_sends_once_and_never_again_that_slot(
    readers: Project, clock: Clock, scheduled_app: Any
) -> None:
    schedule_list(readers, daily_at(clock.now - timedelta(hours=1)))
    app = scheduled_app()
    sent = only(app.schedule.run())
    assert sent.verdict == "sent"
    assert sent.sent == 6
    assert sent.slot == clock.now - timedelta(hours=1)
    assert sent.next_slot == sent.slot + timedelta(days=1)
    again = only(app.schedule.run())
    assert again.verdict == "not due"
    assert again.recorded is ScheduledOutcome.SENT
    clock.now += timedelta(minutes=30)
    readers.add_briefing("late-1", "A late story after the slot was sent", dated(clock.now))
    assert only(app.schedule.run()).verdict == "not due"
    assert len(readers.outbox()) == 6
    assert len(digests(app)) == 1
    clock.now = sent.next_slot + timedelta(minutes=5)  # the next day's slot
    following = only(app.schedule.run())
    assert following.verdict == "sent"
    assert following.digest_id != sent.digest_id
    assert len(readers.outbox()) == 12


def test_a_slot_an_hour_ahead_sends_nothing_until_it_comes(
    readers: Project, clock: Clock, scheduled_app: Any
) -> None:
    ahead = clock.now + timedelta(hours=1)
    schedule_list(readers, daily_at(ahead))
    app = scheduled_app()
    entry = only(app.schedule.run())
    assert entry.verdict == "missed"  # yesterday's slot, 23 hours ago, is past the grace
    assert entry.next_slot == ahead
    assert [s.due for s in app.schedule.slots()] == [False]
    assert readers.outbox() == []
    clock.now = ahead
    assert app.schedule.due() == ["weekly"]
    assert only(app.schedule.run()).verdict == "sent"


def test_a_slot_missed_beyond_the_grace_sends_nothing_and_the_next_is_due(
    readers: Project, clock: Clock, scheduled_app: Any
) -> None:
    schedule_list(readers, daily_at(clock.now - timedelta(hours=7)), schedule_grace_hours=6)
    app = scheduled_app()
    missed = only(app.schedule.run())
    assert missed.verdict == "missed"
    assert missed.late == timedelta(hours=7)
    assert missed.grace == timedelta(hours=6)
    later = only(app.schedule.run())
    assert later.verdict == "not due"
    assert later.recorded is ScheduledOutcome.MISSED
    assert readers.outbox() == []
    assert missed.next_slot is not None
    clock.now = missed.next_slot + timedelta(minutes=1)
    assert only(app.schedule.run()).verdict == "sent"
    assert len(readers.outbox()) == 6


def test_within_the_grace_a_late_run_still_sends(
    readers: Project, clock: Clock, scheduled_app: Any
) -> None:
    schedule_list(readers, daily_at(clock.now - timedelta(hours=5)), schedule_grace_hours=6)
    assert only(scheduled_app().schedule.run()).verdict == "sent"


def test_a_list_with_nothing_new_skips_its_slot(
    readers: Project, clock: Clock, scheduled_app: Any
) -> None:
    schedule_list(readers, daily_at(clock.now + timedelta(hours=1)))
    app = scheduled_app()
    app.feeds.fetch()
    app.sending.send("weekly")  # before the slot: everything new has gone out
    clock.now += timedelta(hours=1, minutes=1)
    skipped = only(app.schedule.run())
    assert skipped.verdict == "nothing new"
    readers.add_briefing("late-2", "A story after the slot was skipped")
    assert only(app.schedule.run()).verdict == "not due"  # that slot is over
    assert len(digests(app)) == 1


def test_a_send_after_the_slot_counts_as_the_slots(
    readers: Project, clock: Clock, scheduled_app: Any
) -> None:
    schedule_list(readers, daily_at(clock.now - timedelta(hours=1)))
    app = scheduled_app()
    app.feeds.fetch()
    manual = app.sending.send("weekly")
    entry = only(app.schedule.run())
    assert entry.verdict == "sent since"
    assert entry.digest_id == manual.digest_id
    assert len(readers.outbox()) == 6


def test_a_list_without_readers_skips_its_slot(project: Project, clock: Clock) -> None:
    schedule_list(project, daily_at(clock.now - timedelta(hours=1)))
    with Newsletter(load_settings(project.config_path), clock=clock) as app:
        assert only(app.schedule.run()).verdict == "no audience"
        assert digests(app) == []


def test_a_list_that_needs_approval_waits_for_it_within_the_grace(
    readers: Project, clock: Clock, scheduled_app: Any
) -> None:
    schedule_list(readers, daily_at(clock.now - timedelta(hours=1)), require_approval=True)
    app = scheduled_app()
    waiting = only(app.schedule.run())
    assert waiting.verdict == "waits for approval"
    assert "newsletter digest approve --list weekly" in waiting.hint
    assert readers.outbox() == []
    assert app.schedule.due() == ["weekly"]  # still due: the next run looks again
    app.desk.approve("weekly", by="editor@test")
    clock.now += timedelta(minutes=20)
    assert only(app.schedule.run()).verdict == "sent"
    assert len(readers.outbox()) == 6
    assert only(app.schedule.run()).verdict == "not due"


def test_lists_without_a_schedule_are_never_sent_by_run(
    readers: Project, clock: Clock, scheduled_app: Any
) -> None:
    data = readers.config()
    data["lists"].append({"slug": "news", "name": "News", "require_approval": False})
    data["lists"][0]["schedule"] = daily_at(clock.now - timedelta(hours=1))
    readers.write_config(data)
    readers.cli("subscribers", "add", "newsreader@example.com", "--list", "news")
    app = scheduled_app()
    report = app.schedule.run()
    assert [(e.slug, e.verdict) for e in report.lists] == [
        ("weekly", "sent"),
        ("news", "unscheduled"),
    ]
    assert only(app.schedule.run("news")).verdict == "unscheduled"
    with app.session() as session:
        assert {d.list_id for d in session.exec(select(Digest)).all()} == {1}
    assert "newsreader@example.com" not in {str(m["To"]) for m in readers.outbox()}


def test_a_claimed_slot_is_not_claimed_again(
    readers: Project, clock: Clock, scheduled_app: Any
) -> None:
    schedule_list(readers, daily_at(clock.now - timedelta(hours=1)))
    first, second = scheduled_app(), scheduled_app()
    slot = clock.now - timedelta(hours=1)
    first.schedule.slots()  # opens the database: the list rows exist
    assert first.schedule.ledger.claim(1, slot, clock.now)
    assert not second.schedule.ledger.claim(1, slot, clock.now)
    entry = only(second.schedule.run())
    assert entry.verdict == "taken"
    assert readers.outbox() == []


def test_the_loop_wakes_at_the_next_slot_and_sends(
    readers: Project, clock: Clock, scheduled_app: Any
) -> None:
    ahead = clock.now + timedelta(hours=2)
    schedule_list(readers, daily_at(ahead))
    app = scheduled_app()
    stop = threading.Event()
    runs: list[tuple[list[str], datetime | None]] = []

    def ran(report: RunReport, wake: datetime | None) -> None:
        runs.append(([e.verdict for e in report.lists], wake))
        if len(runs) == 2:
            stop.set()
        elif wake is not None:
            clock.now = wake  # time passes: the sleep ends without waiting for real

    app.schedule.loop(stop=stop, on_run=ran)
    assert runs == [(["missed"], ahead), (["sent"], ahead + timedelta(days=1))]


def test_the_loop_sleeps_until_stopped(readers: Project, clock: Clock, scheduled_app: Any) -> None:
    app = scheduled_app()
    stop = threading.Event()
    stop.set()
    started = clock_time.monotonic()
    app.schedule.sleep_until(clock.now + timedelta(days=1), stop)
    assert clock_time.monotonic() - started < 1


# --- the CLI ----------------------------------------------------------------------------------


def test_newsletter_run_says_what_it_did_and_status_shows_the_next_slot(
    readers: Project,
) -> None:
    an_hour_ago = datetime.now(UTC) - timedelta(hours=1)
    schedule_list(readers, daily_at(an_hour_ago))
    slot = local_label(an_hour_ago.replace(second=0, microsecond=0), ZoneInfo("UTC"))
    first = readers.cli("run").output
    assert f"weekly: slot {slot}: sent 6 (digest 1 “" in first
    assert "Fetched 1 feed(s): " in first
    assert "1 digest(s) sent (6 messages)." in first
    second = readers.cli("run").output
    assert f"weekly: not due (the slot of {slot}: sent); next slot " in second
    readers.add_briefing("late-3", "A story that arrives after the run")
    third = readers.cli("run", "--list", "weekly").output
    assert "weekly: not due" in third
    assert len(readers.outbox()) == 6
    status = readers.cli("status").output
    assert "weekly: schedule “daily " in status
    assert f"next slot {local_label(an_hour_ago + timedelta(days=1), ZoneInfo('UTC'))[:10]}" in (
        status
    )


def test_newsletter_run_with_the_slot_ahead_sends_nothing_and_says_why(
    readers: Project,
) -> None:
    ahead = datetime.now(UTC) + timedelta(hours=1)
    readers.update("publication", timezone="Europe/Berlin")
    schedule_list(readers, f"daily {ahead.astimezone(BERLIN):%H:%M}")
    output = readers.cli("run").output
    assert "weekly: the slot of " in output
    assert "Europe/Berlin was missed by 23 h (grace 6 h): not sent; next slot " in output
    assert readers.outbox() == []
    assert "1 missed." in output


def test_newsletter_run_says_a_list_waits_for_approval(readers: Project) -> None:
    schedule_list(readers, daily_at(datetime.now(UTC) - timedelta(hours=1)), require_approval=True)
    output = readers.cli("run").output
    assert "weekly: waits for approval: the slot of " in output
    assert "`newsletter digest approve --list weekly`" in output
    assert "sends it once approved." in output
    readers.cli("digest", "approve", "--list", "weekly")
    assert "weekly: slot " in readers.cli("run").output
    assert len(readers.outbox()) == 6


def test_newsletter_run_of_an_unknown_list_fails_before_fetching(readers: Project) -> None:
    result = readers.cli("run", "--list", "nope", expect=1)
    assert "no list 'nope'" in result.output
    assert "Fetched" not in result.output


# --- real processes ---------------------------------------------------------------------------


def newsletter_process(project: Project, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "newsletter", "--config", str(project.config_path), *args],
        cwd=project.folder,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "COLUMNS": "400"},
    )


@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
def test_two_runs_at_once_send_exactly_one_digest(readers: Project, database: str) -> None:
    if database == "postgresql" and not on_postgres():
        pytest.skip("set NEWSLETTER_TEST_POSTGRES to run this on PostgreSQL")
    if database == "sqlite" and on_postgres():  # the fixture's database is PostgreSQL then
        readers.update("database", url="sqlite:///together.db")
        readers.cli("subscribers", "import", "subscribers/weekly.csv", "--list", "weekly")
    schedule_list(readers, daily_at(datetime.now(UTC) - timedelta(hours=1)))
    runs = [newsletter_process(readers, "run") for _ in range(2)]
    outputs = [process.communicate(timeout=120)[0] for process in runs]
    assert [process.returncode for process in runs] == [0, 0], outputs
    assert sum("weekly: slot " in output and ": sent 6" in output for output in outputs) == 1
    assert (
        sum(
            any(words in output for words in ("another run has", "weekly: not due", "went out"))
            for output in outputs
        )
        == 1
    ), outputs
    mailed = [str(message["To"]) for message in readers.outbox()]
    assert len(mailed) == 6
    assert len(set(mailed)) == 6
    with Newsletter(load_settings(readers.config_path)) as app:
        assert len(digests(app)) == 1
        with app.session() as session:
            rows = session.exec(select(ScheduledRun)).all()
        assert [(row.outcome, row.sent) for row in rows] == [(ScheduledOutcome.SENT, 6)]


class Output:
    """A process's output, read by a thread as it comes, so a test waits for a line with a
    bound and never for longer."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        self.lines: list[str] = []
        self.changed = threading.Condition()
        self.reader = threading.Thread(target=self._read, args=(process,), daemon=True)
        self.reader.start()

    def _read(self, process: subprocess.Popen[str]) -> None:
        assert process.stdout is not None
        for line in process.stdout:
            with self.changed:
                self.lines.append(line)
                self.changed.notify_all()

    @property
    def text(self) -> str:
        return "".join(self.lines)

    def wait_for(self, words: str, timeout: float) -> str:
        with self.changed:
            self.changed.wait_for(lambda: words in self.text, timeout)
            return self.text


def test_run_loop_sends_then_sleeps_and_stops_cleanly_on_sigterm(readers: Project) -> None:
    schedule_list(readers, daily_at(datetime.now(UTC) - timedelta(hours=1)))
    process = newsletter_process(readers, "run", "--loop")
    output = Output(process)
    try:
        seen = output.wait_for("Sleeping until", timeout=120)
        assert "weekly: slot " in seen, seen
        assert "Sleeping until " in seen
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=90)  # generous: CI shares two cores with PostgreSQL
        output.reader.join(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=30)
    assert process.returncode == 0, output.text
    assert output.text.rstrip().endswith("Stopped."), output.text
    assert len(readers.outbox()) == 6


def test_the_loop_hears_a_changed_schedule_without_a_restart(
    readers: Project, clock: Clock, scheduled_app: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An editor who edits config.toml while `run --loop` waits is heard: the loop watches
    the file and runs again on the new config (the old schedule's slot would be tomorrow)."""
    import newsletter.services.schedule as schedule_module

    monkeypatch.setattr(schedule_module, "WATCH_EVERY", 0.05)
    schedule_list(readers, daily_at(clock.now + timedelta(hours=2)))
    app = scheduled_app()
    stop = threading.Event()
    runs: list[list[str]] = []

    def ran(report: RunReport, wake: datetime | None) -> None:
        runs.append([entry.verdict for entry in report.lists])
        if len(runs) == 1:  # the editor moves the slot to an hour ago
            schedule_list(readers, daily_at(clock.now - timedelta(hours=1)))
        else:
            stop.set()

    worker = threading.Thread(target=lambda: app.schedule.loop(stop=stop, on_run=ran))
    worker.start()
    worker.join(timeout=60)
    stop.set()
    assert not worker.is_alive()
    assert runs == [["missed"], ["sent"]]
