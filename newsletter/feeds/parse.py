"""Bytes -> plain parsed values. The only module that imports feedparser."""

from __future__ import annotations

import calendar
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import feedparser

from newsletter.errors import FeedError


@dataclass(frozen=True)
class ParsedEntry:
    guid: str
    link: str
    title: str
    summary_html: str
    content_html: str
    tags: tuple[str, ...]
    published: datetime | None
    source_name: str
    source_url: str


@dataclass(frozen=True)
class ParsedFeed:
    title: str
    link: str
    entries: list[ParsedEntry] = field(default_factory=list)


def parse_feed(data: bytes, *, name: str, headers: Mapping[str, str] | None = None) -> ParsedFeed:
    """Parse feed bytes without feedparser's own sanitizer (we clean once, with nh3)."""
    parsed = feedparser.parse(
        data,
        response_headers=dict(headers or {}),
        sanitize_html=False,
        resolve_relative_uris=False,
    )
    if not parsed.entries and parsed.get("bozo") and not parsed.feed:
        reason = parsed.get("bozo_exception") or "not a feed"
        raise FeedError(
            f"feed {name!r}: could not be read as RSS or Atom: {reason}",
            hint="check that the URL points to the feed itself, not to a web page",
        )
    feed = parsed.feed
    return ParsedFeed(
        title=str(feed.get("title", "") or ""),
        link=str(feed.get("link", "") or ""),
        entries=[_entry(raw) for raw in parsed.entries],
    )


def _entry(raw: Any) -> ParsedEntry:
    content = raw.get("content") or []
    content_html = "".join(str(part.get("value", "")) for part in content)
    source = raw.get("source") or {}
    return ParsedEntry(
        guid=str(raw.get("id", "") or ""),
        link=str(raw.get("link", "") or ""),
        title=str(raw.get("title", "") or ""),
        summary_html=str(raw.get("summary", "") or ""),
        content_html=content_html,
        tags=tuple(str(tag.get("term") or "") for tag in raw.get("tags", []) if tag.get("term")),
        # dict.get: feedparser's own .get maps a missing key to the other one, with a warning.
        published=_when(dict.get(raw, "published_parsed") or dict.get(raw, "updated_parsed")),
        source_name=str(source.get("title", "") or ""),
        source_url=str(source.get("href") or source.get("link") or ""),
    )


def _when(value: Any) -> datetime | None:
    if not value:
        return None
    try:
        return datetime.fromtimestamp(calendar.timegm(value), tz=UTC)
    except (OverflowError, ValueError, TypeError):
        return None
