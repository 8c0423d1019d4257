"""Clean entries -> stored briefings: insert new ones, update edited ones, one commit each."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, bindparam, insert, update
from sqlmodel import col, select

from newsletter.feeds.clean import CleanEntry
from newsletter.models import Briefing, utcnow


@dataclass
class IngestCounts:
    new: int = 0
    updated: int = 0
    unchanged: int = 0


# Built once: a statement rebuilt per entry costs more than the insert itself.
_INSERT = insert(Briefing)
_UPDATED_COLUMNS = (
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
_UPDATE_KEEPING_DATE = (
    update(Briefing)
    .where(col(Briefing.id) == bindparam("briefing_id"))
    .values({name: bindparam(name) for name in _UPDATED_COLUMNS})
)
_UPDATE = _UPDATE_KEEPING_DATE.values(published_at=bindparam("published_at"))


def store_entries(
    connection: Connection, feed_id: int, entries: Iterable[CleanEntry]
) -> IngestCounts:
    """Insert new briefings and update edited ones, committing each so a crash keeps the rest.

    Core statements on a plain connection, not ORM objects in a session: this runs once per
    entry of every feed, and a session's bookkeeping per commit cost more than the writes.
    """
    counts = IngestCounts()
    # One time for the whole fetch: undated entries then keep the feed's own order.
    now = utcnow()
    known = {
        guid: (briefing_id, content_hash)
        for guid, briefing_id, content_hash in connection.execute(
            select(Briefing.guid, Briefing.id, Briefing.content_hash).where(
                col(Briefing.feed_id) == feed_id
            )
        ).all()
    }
    connection.commit()
    for clean in entries:
        digest = clean.content_hash
        existing = known.get(clean.guid)
        if existing is not None and existing[1] == digest:
            counts.unchanged += 1
            continue
        fields: dict[str, Any] = {
            "url": clean.url,
            "title": clean.title,
            "dek": clean.dek,
            "body_html": clean.body_html,
            "key_points": clean.key_points,
            "tags": list(clean.tags),
            "source_name": clean.source_name,
            "source_url": clean.source_url,
            "content_hash": digest,
            "updated_at": now,
        }
        if existing is None:
            row = {
                "feed_id": feed_id,
                "guid": clean.guid,
                "first_seen_at": now,
                "published_at": clean.published or now,
                **fields,
            }
            primary_key = connection.execute(_INSERT, row).inserted_primary_key
            briefing_id = primary_key[0] if primary_key else None
            counts.new += 1
        else:
            briefing_id = existing[0]
            fields["briefing_id"] = briefing_id
            statement = _UPDATE_KEEPING_DATE
            if clean.published:  # an edit without a date keeps the date first seen
                statement, fields["published_at"] = _UPDATE, clean.published
            connection.execute(statement, fields)
            counts.updated += 1
        connection.commit()
        known[clean.guid] = (briefing_id, digest)
    return counts
