"""Choosing a digest's briefings and turning them into a plain value the renderer can use."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import or_
from sqlmodel import Session, col, select

from newsletter.config import Settings
from newsletter.digest.themes import ThemeMatcher
from newsletter.errors import ConfigError
from newsletter.models import (
    Briefing,
    Digest,
    DigestItem,
    DigestStatus,
    MailingList,
    utcnow,
)


@dataclass(frozen=True)
class DigestBriefing:
    id: int
    title: str
    url: str
    dek: str
    key_points: tuple[str, ...]
    source_name: str
    source_url: str
    theme: str
    published_at: datetime


@dataclass(frozen=True)
class DigestSection:
    theme: str
    briefings: tuple[DigestBriefing, ...]


@dataclass(frozen=True)
class DigestView:
    """Everything a digest says, with no database objects inside."""

    id: int
    list_slug: str
    list_name: str
    subject: str
    preheader: str
    window_start: datetime
    window_end: datetime
    sections: tuple[DigestSection, ...]

    @property
    def briefings(self) -> list[DigestBriefing]:
        return [briefing for section in self.sections for briefing in section.briefings]

    @property
    def lead(self) -> DigestBriefing:
        return self.sections[0].briefings[0]


def pending_digest(session: Session, mailing_list: MailingList) -> Digest | None:
    """A digest of this list that was built but not completely sent (resumed before a new one)."""
    return session.exec(
        select(Digest)
        .where(Digest.list_id == mailing_list.id, Digest.status != DigestStatus.SENT)
        .order_by(col(Digest.id))
    ).first()


def window_start(
    session: Session, settings: Settings, mailing_list: MailingList, now: datetime
) -> datetime:
    """Since the list's last sent digest, and never further back than window_days."""
    earliest = now - timedelta(days=settings.digest.window_days)
    last_end = session.exec(
        select(Digest.window_end)
        .where(Digest.list_id == mailing_list.id, Digest.status == DigestStatus.SENT)
        .order_by(col(Digest.window_end).desc())
    ).first()
    return max(earliest, last_end) if last_end else earliest


def candidate_briefings(
    session: Session, settings: Settings, mailing_list: MailingList, now: datetime
) -> tuple[datetime, list[Briefing]]:
    """Briefings published or first seen in the window that no digest of this list carried."""
    start = window_start(session, settings, mailing_list, now)
    earliest = now - timedelta(days=settings.digest.window_days)
    already_sent = select(DigestItem.briefing_id).where(DigestItem.list_id == mailing_list.id)
    rows = session.exec(
        select(Briefing)
        .where(
            or_(col(Briefing.published_at) > start, col(Briefing.first_seen_at) > start),
            col(Briefing.published_at) > earliest,
            col(Briefing.published_at) <= now,
            col(Briefing.id).not_in(already_sent),
        )
        .order_by(col(Briefing.published_at).desc(), col(Briefing.id))
    ).all()
    return start, list(rows)


def group_by_theme(
    briefings: list[Briefing], matcher: ThemeMatcher
) -> list[tuple[str, list[Briefing]]]:
    """Config order of themes, empty ones left out; a briefing sits under its primary theme."""
    known = set(matcher.names)
    grouped: dict[str, list[Briefing]] = defaultdict(list)
    for briefing in briefings:
        primary = briefing.themes[0] if briefing.themes else matcher.fallback
        grouped[primary if primary in known else matcher.fallback].append(briefing)
    return [(name, grouped[name]) for name in matcher.names if grouped.get(name)]


def build_digest(
    session: Session, settings: Settings, mailing_list: MailingList, now: datetime | None = None
) -> Digest | None:
    """Add a draft digest of the window's briefings (caller commits); None if nothing is new."""
    now = now or utcnow()
    start, briefings = candidate_briefings(session, settings, mailing_list, now)
    if not briefings:
        return None
    matcher = ThemeMatcher(settings.themes, settings.digest.fallback_theme)
    sections = group_by_theme(briefings, matcher)
    lead = sections[0][1][0]
    assert mailing_list.id is not None
    digest = Digest(
        list_id=mailing_list.id,
        subject=_fill(
            settings,
            "subject",
            lead=lead.title,
            count=len(briefings),
            themes=[name for name, _ in sections],
            now=now,
        ),
        preheader=_fill(
            settings,
            "preheader",
            lead=lead.title,
            count=len(briefings),
            themes=[name for name, _ in sections],
            now=now,
        ),
        window_start=start,
        window_end=now,
        created_at=now,
    )
    session.add(digest)
    session.flush()
    assert digest.id is not None
    assert mailing_list.id is not None
    position = 0
    for theme, members in sections:
        for briefing in members:
            assert briefing.id is not None
            session.add(
                DigestItem(
                    digest_id=digest.id,
                    briefing_id=briefing.id,
                    list_id=mailing_list.id,
                    position=position,
                    theme=theme,
                )
            )
            position += 1
    session.flush()
    return digest


def _fill(
    settings: Settings, key: str, *, lead: str, count: int, themes: list[str], now: datetime
) -> str:
    template = getattr(settings.digest, key)
    values = {
        "publication": settings.publication.name,
        "lead": lead,
        "count": count,
        "more": count - 1,
        "themes": ", ".join(themes),
        "date": f"{now:%d %B %Y}".lstrip("0"),
    }
    try:
        return str(template.format_map(values))
    except (KeyError, IndexError, ValueError) as exc:
        raise ConfigError(
            f"{settings.path}: [digest] {key}: cannot fill {template!r}: {exc}",
            hint="use only {publication}, {lead}, {count}, {more}, {themes} and {date}",
        ) from None


def digest_view(session: Session, digest: Digest) -> DigestView:
    """The stored digest as a plain value, briefings in the order they were chosen."""
    mailing_list = session.get(MailingList, digest.list_id)
    assert mailing_list is not None
    assert digest.id is not None
    rows = session.exec(
        select(DigestItem, Briefing)
        .join(Briefing, col(Briefing.id) == DigestItem.briefing_id)
        .where(DigestItem.digest_id == digest.id)
        .order_by(col(DigestItem.position))
    ).all()
    sections: dict[str, list[DigestBriefing]] = {}
    for item, briefing in rows:
        assert briefing.id is not None
        sections.setdefault(item.theme, []).append(
            DigestBriefing(
                id=briefing.id,
                title=briefing.title,
                url=briefing.url,
                dek=briefing.dek,
                key_points=tuple(briefing.key_points),
                source_name=briefing.source_name,
                source_url=briefing.source_url,
                theme=item.theme,
                published_at=briefing.published_at,
            )
        )
    return DigestView(
        id=digest.id,
        list_slug=mailing_list.slug,
        list_name=mailing_list.name,
        subject=digest.subject,
        preheader=digest.preheader,
        window_start=digest.window_start,
        window_end=digest.window_end,
        sections=tuple(DigestSection(theme, tuple(items)) for theme, items in sections.items()),
    )
