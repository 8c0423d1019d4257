"""Parsed entries -> stored briefings: identity, cleaning, attribution, themes, upsert."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlmodel import Session, select

from newsletter.feeds.parse import ParsedEntry, ParsedFeed, parse_feed
from newsletter.feeds.sanitize import clean_html, first_paragraph, key_points, plain_text
from newsletter.models import Briefing, Feed, utcnow

Classifier = Callable[[Iterable[str], str], list[str]]
MAX_DEK_CHARS = 400


@dataclass
class IngestCounts:
    new: int = 0
    updated: int = 0
    unchanged: int = 0


@dataclass(frozen=True)
class CleanEntry:
    guid: str
    url: str
    title: str
    dek: str
    body_html: str
    key_points: list[str]
    source_name: str
    source_url: str
    published: datetime | None
    tags: tuple[str, ...]

    @property
    def content_hash(self) -> str:
        digest = hashlib.sha256()
        for part in (
            self.title,
            self.dek,
            self.body_html,
            self.source_name,
            self.source_url,
            self.url,
            *self.tags,
        ):
            digest.update(part.encode("utf-8", "surrogatepass") + b"\0")
        return digest.hexdigest()


def clean_entry(entry: ParsedEntry, feed: ParsedFeed, feed_url: str) -> CleanEntry:
    url = entry.link or feed.link or feed_url
    body = clean_html(entry.content_html or entry.summary_html, base_url=url)
    dek = plain_text(entry.summary_html) if entry.content_html else first_paragraph(body)
    if len(dek) > MAX_DEK_CHARS:
        dek = dek[: MAX_DEK_CHARS - 1].rsplit(" ", 1)[0] + "…"
    title = plain_text(entry.title) or dek[:80] or "(untitled)"
    identity = entry.guid.strip() or entry.link.strip()
    if not identity:
        identity = "sha256:" + hashlib.sha256(f"{title}\0{body}".encode()).hexdigest()
    return CleanEntry(
        guid=identity,
        url=url,
        title=title,
        dek=dek,
        body_html=body,
        key_points=key_points(body),
        source_name=plain_text(entry.source_name) or plain_text(feed.title) or url,
        source_url=entry.source_url.strip() or feed.link or url,
        published=entry.published,
        tags=entry.tags,
    )


def prepare_entries(
    content: bytes, headers: dict[str, str], name: str, url: str
) -> list[CleanEntry]:
    """Parse and clean a feed's bytes: pure CPU work, run in worker processes."""
    parsed = parse_feed(content, name=name, headers=headers)
    return [clean_entry(entry, parsed, url) for entry in parsed.entries]


def store_entries(
    session: Session, feed: Feed, entries: Iterable[CleanEntry], classify: Classifier
) -> IngestCounts:
    """Insert new briefings and update edited ones, committing each so a crash keeps the rest."""
    counts = IngestCounts()
    assert feed.id is not None
    for clean in entries:
        digest = clean.content_hash
        existing = session.exec(
            select(Briefing).where(Briefing.feed_id == feed.id, Briefing.guid == clean.guid)
        ).first()
        if existing is not None and existing.content_hash == digest:
            counts.unchanged += 1
            continue
        now = utcnow()
        themes = classify(clean.tags, f"{clean.title}\n{clean.dek}")
        fields: dict[str, Any] = {
            "url": clean.url,
            "title": clean.title,
            "dek": clean.dek,
            "body_html": clean.body_html,
            "key_points": clean.key_points,
            "themes": themes,
            "source_name": clean.source_name,
            "source_url": clean.source_url,
            "content_hash": digest,
            "updated_at": now,
        }
        if existing is None:
            briefing = Briefing(
                feed_id=feed.id,
                guid=clean.guid,
                first_seen_at=now,
                published_at=clean.published or now,
                **fields,
            )
            counts.new += 1
        else:
            briefing = existing
            briefing.sqlmodel_update(fields)
            if clean.published:
                briefing.published_at = clean.published
            counts.updated += 1
        session.add(briefing)
        session.commit()
    return counts
