"""Clean entries -> stored briefings: insert new ones, update edited ones, one commit each."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import Connection
from sqlmodel import col, select

from newsletter.db import driver_sql, driver_time
from newsletter.feeds.clean import CleanEntry
from newsletter.models import Briefing, Feed, utcnow


@dataclass
class IngestCounts:
    new: int = 0
    updated: int = 0
    unchanged: int = 0


# What an edit of an entry rewrites; the date too when the edit has one.
_EDITABLE = (
    "url",
    "title",
    "dek",
    "body_html",
    "key_points",
    "tags",
    "source_name",
    "source_url",
    "content_hash",
    "updated_at",
)
_INSERT = (
    f"INSERT INTO briefing (first_seen_at, published_at, {', '.join(_EDITABLE)}, feed_id, guid) "
    f"VALUES ({', '.join('?' * (4 + len(_EDITABLE)))})"
)
_SET_EDITABLE = f"UPDATE briefing SET {', '.join(f'{name} = ?' for name in _EDITABLE)}"
_UPDATE_KEEPING_DATE = f"{_SET_EDITABLE} WHERE feed_id = ? AND guid = ?"
_UPDATE = f"{_SET_EDITABLE}, published_at = ? WHERE feed_id = ? AND guid = ?"


def store_entries(
    connection: Connection, feed_id: int, entries: Iterable[CleanEntry]
) -> IngestCounts:
    """Insert new briefings and update edited ones, committing each so a crash keeps the rest.

    Plain SQL through the driver: this runs once per entry of every feed, and SQLAlchemy's
    processing of each statement's parameters cost more than the database's writing.
    """
    counts = IngestCounts()
    # One time for the whole fetch: undated entries then keep the feed's own order.
    now = driver_time(connection, utcnow())
    stored = dict(
        connection.execute(
            select(Briefing.guid, Briefing.content_hash).where(col(Briefing.feed_id) == feed_id)
        ).all()
    )
    connection.commit()
    insert, update, update_keeping_date = (
        driver_sql(connection, sql) for sql in (_INSERT, _UPDATE, _UPDATE_KEEPING_DATE)
    )
    for clean in entries:
        digest = clean.content_hash
        known = stored.get(clean.guid)
        if known == digest:
            counts.unchanged += 1
            continue
        edited = (
            clean.url,
            clean.title,
            clean.dek,
            clean.body_html,
            json.dumps(clean.key_points),
            json.dumps(list(clean.tags)),
            clean.source_name,
            clean.source_url,
            digest,
            now,
        )
        published = driver_time(connection, clean.published) if clean.published else None
        key = (feed_id, clean.guid)
        if known is None:
            connection.exec_driver_sql(insert, (now, published or now, *edited, *key))
            counts.new += 1
        elif published:
            connection.exec_driver_sql(update, (*edited, published, *key))
            counts.updated += 1
        else:  # an edit without a date keeps the date first seen
            connection.exec_driver_sql(update_keeping_date, (*edited, *key))
            counts.updated += 1
        connection.commit()
        stored[clean.guid] = digest
    return counts


_FEED_FETCHED = (
    "UPDATE feed SET url = ?, etag = ?, last_modified = ?, disabled = ?, last_fetched_at = ?, "
    "last_error = ? WHERE id = ?"
)


def record_fetch(connection: Connection, feed: Feed) -> None:
    """Write what a fetch learnt of a feed (its URL, validators, state, time and error)."""
    fetched = driver_time(connection, feed.last_fetched_at) if feed.last_fetched_at else None
    connection.exec_driver_sql(
        driver_sql(connection, _FEED_FETCHED),
        (
            feed.url,
            feed.etag,
            feed.last_modified,
            feed.disabled,
            fetched,
            feed.last_error,
            feed.id,
        ),
    )
    connection.commit()
