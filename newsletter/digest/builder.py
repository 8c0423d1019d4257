"""Choosing a digest's briefings and turning them into a plain value the renderer can use."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, or_
from sqlmodel import Session, col, select

from newsletter.config import Settings
from newsletter.digest.plan import Candidate, plan_digest
from newsletter.digest.themes import ThemeMatcher
from newsletter.digest.view import (
    DigestBriefing,
    DigestSection,
    DigestView,
    Picture,
    Source,
    anchor,
)
from newsletter.errors import ConfigError
from newsletter.feeds.sanitize import visible_line
from newsletter.models import (
    Briefing,
    Digest,
    DigestDrop,
    DigestItem,
    DigestNote,
    DigestPin,
    DigestStatus,
    MailingList,
    utcnow,
)
from newsletter.render.markdown import render_note
from newsletter.render.text import shorten


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
    """Briefings published or first seen in the window that no digest of this list carried
    and the editor did not drop."""
    start = window_start(session, settings, mailing_list, now)
    earliest = now - timedelta(days=settings.digest.window_days)
    already_sent = select(DigestItem.briefing_id).where(DigestItem.list_id == mailing_list.id)
    dropped = select(DigestDrop.briefing_id).where(DigestDrop.list_id == mailing_list.id)
    # The same link in another feed (or a feed re-added under a new URL) is not news either.
    sent_links = (
        select(Briefing.url)
        .join(DigestItem, col(DigestItem.briefing_id) == Briefing.id)
        .where(DigestItem.list_id == mailing_list.id, Briefing.url != "")
    )
    rows = session.exec(
        select(Briefing)
        .where(
            or_(col(Briefing.published_at) > start, col(Briefing.first_seen_at) > start),
            col(Briefing.published_at) > earliest,
            col(Briefing.published_at) <= now,
            col(Briefing.id).not_in(already_sent),
            col(Briefing.id).not_in(dropped),
            col(Briefing.url).not_in(sent_links),
        )
        .order_by(col(Briefing.published_at).desc(), col(Briefing.id))
    ).all()
    return start, list(rows)


def next_pin(session: Session, mailing_list: MailingList) -> int | None:
    """The briefing the editor pinned to lead the list's next digest, if any (building the
    digest uses the pin up: read it first to know whether the lead was pinned)."""
    pin = session.get(DigestPin, mailing_list.id)
    return pin.briefing_id if pin else None


def build_digest(
    session: Session, settings: Settings, mailing_list: MailingList, now: datetime | None = None
) -> Digest | None:
    """Add a draft digest of the window's briefings (caller commits); None if nothing is new."""
    now = now or utcnow()
    start, briefings = candidate_briefings(session, settings, mailing_list, now)
    assert mailing_list.id is not None
    pin = session.get(DigestPin, mailing_list.id)
    rows = {briefing.id: briefing for briefing in briefings}
    options = settings.digest
    matcher = ThemeMatcher(settings.themes, options.fallback_theme)
    plan = plan_digest(
        [
            # Themes come from the config of today, so a theme added or renamed counts at once.
            Candidate(
                b.id, b.title, tuple(matcher.match(b.tags, f"{b.title}\n{b.dek}")), b.published_at
            )
            for b in briefings
            if b.id is not None
        ],
        matcher,
        max_per_theme=options.max_per_theme,
        max_briefings=options.max_briefings,
        merge_similarity=options.merge_similarity,
        pinned=pin.briefing_id if pin else None,
    )
    if plan is None:
        return None
    subject, preheader = headlines(
        settings,
        lead=rows[plan.lead.candidate.id].title,
        count=sum(1 for item in plan.items if item.in_email),
        themes=plan.themes,
        when=now,
    )
    note = session.get(DigestNote, mailing_list.id)
    digest = Digest(
        list_id=mailing_list.id,
        subject=subject,
        preheader=preheader,
        window_start=start,
        window_end=now,
        created_at=now,
        note=note.text if note else "",
    )
    session.add(digest)
    session.flush()
    assert digest.id is not None
    position = 0
    for item in plan.items:
        for candidate, merged_into in (
            (item.candidate, None),
            *((m, item.candidate.id) for m in item.merged),
        ):
            session.add(
                DigestItem(
                    digest_id=digest.id,
                    briefing_id=candidate.id,
                    list_id=mailing_list.id,
                    position=position,
                    theme=item.theme,
                    lead=item.lead,
                    in_email=item.in_email,
                    merged_into=merged_into,
                )
            )
            position += 1
    for used_once in (pin, note):  # a pin and a note shape one digest
        if used_once is not None:
            session.delete(used_once)
    session.flush()
    return digest


# Characters. Mail clients show 40 to 90 of a subject; a feed's title can be a megabyte, and a
# header that long is refused by some servers and unreadable everywhere.
HEADER_LIMIT = 150
_SHORTEST_LEAD = 40  # a subject template longer than the limit still says what leads


def header_text(text: str) -> str:
    """A feed's text as it may go into a subject or preheader (see `visible_line`)."""
    return visible_line(text)


def headlines(
    settings: Settings, *, lead: str, count: int, themes: Sequence[str], when: datetime
) -> tuple[str, str]:
    """The subject and preheader from the `[digest]` templates: `lead` is the top story's
    title, `count` the stories the e-mail shows (web-only ones are not in it, so "and N more"
    counts what the reader can see), `themes` those the e-mail shows."""
    values: dict[str, object] = {
        "publication": settings.publication.name,
        "lead": header_text(lead),
        "count": count,
        "more": count - 1,
        "and_more": f" and {count - 1} more" if count > 1 else "",
        "themes": ", ".join(themes),
        "date": f"{when.day} {when:%B %Y}",
    }
    return _fill(settings, "subject", values), _fill(settings, "preheader", values)


def _fill(settings: Settings, key: str, values: dict[str, object]) -> str:
    template = getattr(settings.digest, key)
    try:
        around_lead = len(str(template.format_map({**values, "lead": ""})))
        lead = shorten(str(values["lead"]), max(HEADER_LIMIT - around_lead, _SHORTEST_LEAD))
        return shorten(str(template.format_map({**values, "lead": lead})), HEADER_LIMIT)
    except (KeyError, IndexError, ValueError) as exc:
        raise ConfigError(
            f"{settings.path}: [digest] {key}: cannot fill {template!r}: {exc}",
            hint="use only {publication}, {lead}, {count}, {more}, {and_more}, {themes}, {date}",
        ) from None


@dataclass(frozen=True)
class Placed:
    """A briefing where the plan put it (a DigestItem's decisions), with the briefing."""

    briefing: Briefing
    theme: str  # its primary theme
    lead: bool
    in_email: bool
    merged_into: int | None

    @property
    def id(self) -> int:
        assert self.briefing.id is not None
        return self.briefing.id


def planned(session: Session, digest: Digest) -> list[Placed]:
    """A digest's stored plan, in digest order (the lead first)."""
    rows = session.exec(
        select(DigestItem, Briefing)
        .join(Briefing, col(Briefing.id) == DigestItem.briefing_id)
        .where(DigestItem.digest_id == digest.id)
        .order_by(col(DigestItem.position))
    ).all()
    return [
        Placed(briefing, item.theme, item.lead, item.in_email, item.merged_into)
        for item, briefing in rows
    ]


def digest_view(session: Session, digest: Digest, *, web_edition: bool = False) -> DigestView:
    """The stored digest as a plain value, in the order it was planned.

    The web edition shows every story, also those the caps kept out of the e-mail.
    """
    return assemble_view(
        session, digest, planned(session, digest), digest.subject, digest.preheader, web_edition
    )


def assemble_view(
    session: Session,
    digest: Digest,
    items: Sequence[Placed],
    subject: str,
    preheader: str,
    web_edition: bool = False,
) -> DigestView:
    """The view of `items` (a digest's plan, or an edition's part of it) in their order."""
    mailing_list = session.get(MailingList, digest.list_id)
    assert mailing_list is not None
    assert digest.id is not None
    merged: dict[int, list[Source]] = defaultdict(list)
    for item in items:
        if item.merged_into is not None:
            merged[item.merged_into].append(
                Source(item.briefing.source_name, item.briefing.source_url)
            )
    lead: DigestBriefing | None = None
    shown: dict[str, list[DigestBriefing]] = {}
    more: dict[str, int] = defaultdict(int)
    for item in items:
        if item.merged_into is not None:
            continue
        briefing = item.briefing
        value = DigestBriefing(
            id=item.id,
            title=briefing.title,
            url=briefing.url,
            dek=briefing.dek,
            key_points=tuple(briefing.key_points),
            sources=_distinct(Source(briefing.source_name, briefing.source_url), *merged[item.id]),
            theme=item.theme,
            published_at=briefing.published_at,
            image=_image(briefing),
            why=briefing.why_it_matters,
        )
        if item.lead:
            lead = value
        elif item.in_email or web_edition:
            shown.setdefault(item.theme, []).append(value)
        else:
            shown.setdefault(item.theme, [])
            more[item.theme] += 1
    assert lead is not None, f"digest {digest.id} has no lead"
    sections = [
        DigestSection(theme, anchor(theme), tuple(stories), more[theme])
        for theme, stories in shown.items()
    ]
    note_html, note_text = render_note(digest.note)
    return DigestView(
        id=digest.id,
        nonce=digest.nonce,
        list_slug=mailing_list.slug,
        list_name=mailing_list.name,
        subject=subject,
        preheader=preheader,
        window_start=digest.window_start,
        window_end=digest.window_end,
        lead=lead,
        sections=tuple(section for section in sections if section.briefings),
        web_only_sections=tuple(section for section in sections if not section.briefings),
        note_html=note_html,
        note_text=note_text,
        issue_number=_issue_number(session, digest),
    )


def _image(briefing: Briefing) -> Picture | None:
    if not (briefing.image_url and briefing.image_width and briefing.image_height):
        return None
    alt = briefing.image_alt or briefing.title
    return Picture(briefing.image_url, briefing.image_width, briefing.image_height, alt)


def _issue_number(session: Session, digest: Digest) -> int:
    """Its place among its list's digests: drafts never sent count too, as the list's
    archive numbers are what readers see, and a rebuilt draft keeps its id."""
    counted = select(func.count()).where(
        col(Digest.list_id) == digest.list_id, col(Digest.id) <= digest.id
    )
    return int(session.exec(counted).one())


def _distinct(*sources: Source) -> tuple[Source, ...]:
    return tuple(dict.fromkeys(sources))
