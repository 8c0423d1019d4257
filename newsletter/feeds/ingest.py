"""Clean entries -> stored briefings: insert new ones, update edited ones, one commit each."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime

from newsletter.db import DriverConnection
from newsletter.feeds.clean import CleanEntry
from newsletter.feeds.images import with_size
from newsletter.models import Feed, utcnow


@dataclass
class IngestCounts:
    new: int = 0
    updated: int = 0
    unchanged: int = 0
    # New briefings dated before the digest window: stored, but no digest will carry them.
    too_old: int = 0


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
    "image_url",
    "image_width",
    "image_height",
    "image_alt",
    "why_it_matters",
    "content_hash",
    "updated_at",
)
_INSERT = (
    f"INSERT INTO briefing (first_seen_at, published_at, {', '.join(_EDITABLE)}, feed_id, guid) "
    f"VALUES ({', '.join('?' * (4 + len(_EDITABLE)))})"
)
_STORED = "SELECT guid, content_hash FROM briefing WHERE feed_id = ?"
_SET_EDITABLE = f"UPDATE briefing SET {', '.join(f'{name} = ?' for name in _EDITABLE)}"
_UPDATE_KEEPING_DATE = f"{_SET_EDITABLE} WHERE feed_id = ? AND guid = ?"
_UPDATE = f"{_SET_EDITABLE}, published_at = ? WHERE feed_id = ? AND guid = ?"


def stored_hashes(connection: DriverConnection, feed_id: int) -> dict[str, str]:
    """The feed's stored briefings: guid -> content_hash, as the fetch's entries are compared."""
    stored = dict(connection.execute(_STORED, (feed_id,)))
    connection.commit()
    return stored


def store_entries(
    connection: DriverConnection,
    feed_id: int,
    entries: Iterable[CleanEntry],
    *,
    window_start: datetime | None = None,
    image_sizes: Mapping[str, tuple[int, int]] | None = None,
) -> IngestCounts:
    """Insert new briefings and update edited ones, committing each so a crash keeps the rest.

    New briefings published at or before window_start (where a digest's window can begin at
    the earliest) are counted as too old: a fetch that stores only those says why no digest
    shows them. image_sizes (URL -> width, height) are what the fetch's probe read of images
    the feed gives no size for; an image left without both is stored as none.

    Plain SQL through the driver: this runs once per entry of every feed, and SQLAlchemy's
    handling of each statement cost more than the database's writing.
    """
    counts = IngestCounts()
    # One time for the whole fetch: undated entries then keep the feed's own order.
    now = utcnow()
    stored = stored_hashes(connection, feed_id)
    sizes = image_sizes or {}
    for clean in entries:
        digest = clean.content_hash
        known = stored.get(clean.guid)
        if known == digest:
            counts.unchanged += 1
            continue
        image = with_size(clean.image, sizes.get(clean.image_url))
        edited = (
            clean.url,
            clean.title,
            clean.dek,
            clean.body_html,
            json.dumps(clean.key_points),
            json.dumps(list(clean.tags)),
            clean.source_name,
            clean.source_url,
            image.url,
            image.width,
            image.height,
            image.alt,
            clean.why_it_matters,
            digest,
            now,
        )
        key = (feed_id, clean.guid)
        if known is None:
            connection.execute(_INSERT, (now, clean.published or now, *edited, *key))
            counts.new += 1
            if window_start and clean.published and clean.published <= window_start:
                counts.too_old += 1
        elif clean.published:
            connection.execute(_UPDATE, (*edited, clean.published, *key))
            counts.updated += 1
        else:  # an edit without a date keeps the date first seen
            connection.execute(_UPDATE_KEEPING_DATE, (*edited, *key))
            counts.updated += 1
        connection.commit()
        stored[clean.guid] = digest
    return counts


# Only while the row still points where the fetch went: a config.toml that moved the feed
# meanwhile (any command syncs it) starts it afresh, and this fetch's URL and validators
# must not overwrite that.
_FEED_FETCHED = (
    "UPDATE feed SET url = ?, etag = ?, last_modified = ?, disabled = ?, last_fetched_at = ?, "
    "last_error = ? WHERE id = ? AND config_url = ?"
)


def record_fetch(connection: DriverConnection, feed: Feed) -> None:
    """Write what a fetch learnt of a feed (its URL, validators, state, time and error)."""
    connection.execute(
        _FEED_FETCHED,
        (
            feed.url,
            feed.etag,
            feed.last_modified,
            feed.disabled,
            feed.last_fetched_at,
            feed.last_error,
            feed.id,
            feed.config_url,
        ),
    )
    connection.commit()
