"""When a list's digest is due: a schedule ("mon 08:00", "daily 07:30", "weekdays 06:00",
"mon,thu 08:00") and its slots as aware UTC instants, in the publication's time zone.

Pure: no database, no clock of its own (the caller passes `now`). Wall times are resolved in
the zone on each date, so a slot keeps its local time across daylight-saving changes. A wall
time that does not exist that day (clocks jump forward over it) becomes the first instant after
the jump; one that happens twice (clocks fall back) becomes the first of the two.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_FULL_NAMES = (
    "monday",
    "tuesday",
    "wednesday",
    "thursday",
    "friday",
    "saturday",
    "sunday",
)
_GROUPS = {"daily": frozenset(range(7)), "weekdays": frozenset(range(5))}
_TIME = re.compile(r"^([01]?\d|2[0-3]):([0-5]\d)$")
EXAMPLES = '"mon 08:00", "daily 07:30", "weekdays 06:00" or "mon,thu 08:00"'


@dataclass(frozen=True)
class Schedule:
    """The weekdays (0 is Monday) and the wall time of a list's slots."""

    days: frozenset[int]
    at: time

    def __str__(self) -> str:
        for name, days in _GROUPS.items():
            if self.days == days:
                return f"{name} {self.at:%H:%M}"
        return ",".join(DAYS[day] for day in sorted(self.days)) + f" {self.at:%H:%M}"


def parse_schedule(text: str) -> Schedule:
    """A schedule from config.toml's words, or ValueError saying what is wrong and what fits."""
    words = text.strip().lower().split()
    if len(words) != 2:
        raise ValueError(f"{text!r} is not a schedule; write a day and a time, like {EXAMPLES}")
    day_words, clock = words
    match = _TIME.match(clock)
    if match is None:
        raise ValueError(f"{clock!r} in {text!r} is not a time; use 24-hour HH:MM, like 07:30")
    days = _GROUPS.get(day_words)
    if days is None:
        chosen = set()
        for word in day_words.split(","):
            if word in DAYS:
                chosen.add(DAYS.index(word))
            elif word in _FULL_NAMES:
                chosen.add(_FULL_NAMES.index(word))
            else:
                raise ValueError(
                    f"{word!r} in {text!r} is not a day; use mon, tue, wed, thu, fri, sat, "
                    f"sun (several joined by commas), daily or weekdays"
                )
        days = frozenset(chosen)
    return Schedule(days, time(int(match.group(1)), int(match.group(2))))


def time_zone(name: str) -> ZoneInfo:
    """The IANA zone of that name, or ValueError naming what would fit."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(
            f"{name!r} is not a time zone this system knows; use an IANA name like "
            '"Europe/Berlin", "America/New_York" or "UTC" (without a system time zone '
            "database, install the tzdata package)"
        ) from None


def wall_time_instant(day: date, at: time, zone: tzinfo) -> datetime:
    """The UTC instant the zone's clocks show `at` on `day`: in a gap, the first instant after
    it (the moment the clocks jump); when it happens twice, the first time."""
    naive = datetime.combine(day, at)
    first = naive.replace(tzinfo=zone, fold=0)
    utc = first.astimezone(UTC)
    if utc.astimezone(zone).replace(tzinfo=None) == naive:
        return utc  # it exists (fold=0 is the earlier of two when it happens twice)
    # In a gap, fold=1 reads the time with the offset after the jump: an instant before the
    # jump, while fold=0 gives one after it. The jump lies between; find it to the second.
    low = int(naive.replace(tzinfo=zone, fold=1).timestamp())
    high = int(first.timestamp())
    while high - low > 1:
        middle = (low + high) // 2
        shown = datetime.fromtimestamp(middle, zone).replace(tzinfo=None)
        if shown >= naive:
            high = middle
        else:
            low = middle
    return datetime.fromtimestamp(high, UTC)


def _slots_around(schedule: Schedule, zone: tzinfo, now: datetime) -> list[datetime]:
    """Every slot on the local dates from eight days before `now` to eight after, in order:
    enough for a slot before and after whatever days the schedule has."""
    today = now.astimezone(zone).date()
    dates = (today + timedelta(days=offset) for offset in range(-8, 9))
    return sorted(
        wall_time_instant(day, schedule.at, zone) for day in dates if day.weekday() in schedule.days
    )


def latest_slot(schedule: Schedule, zone: tzinfo, now: datetime) -> datetime:
    """The last slot at or before `now` (aware UTC)."""
    return max(slot for slot in _slots_around(schedule, zone, now) if slot <= now)


def next_slot(schedule: Schedule, zone: tzinfo, now: datetime) -> datetime:
    """The first slot after `now` (aware UTC)."""
    return min(slot for slot in _slots_around(schedule, zone, now) if slot > now)


def local_label(instant: datetime, zone: ZoneInfo) -> str:
    """A slot as an editor reads it: "Mon 1 Dec 08:00 Europe/Berlin"."""
    local = instant.astimezone(zone)
    return f"{local:%a} {local.day} {local:%b %H:%M} {zone.key}"
