"""Digests: shape the next one (pin), build it as `send` would without storing it (draft),
write it to files for a look (preview), and its editions: rendered and stored once per choice
of themes when it leaves draft (`store_editions`), and what each became (`editions`)."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from html import escape as escape_html
from pathlib import Path
from typing import TYPE_CHECKING

from sqlmodel import Session, col, select

from newsletter.audience.tokens import PREVIEW_UNSUBSCRIBE_PATH
from newsletter.brand import brand_of
from newsletter.db import list_row
from newsletter.digest.builder import (
    build_digest,
    candidate_briefings,
    digest_view,
    next_pin,
    pending_digest,
)
from newsletter.digest.editions import Editions, themes_key
from newsletter.digest.view import DigestView
from newsletter.errors import NewsletterError
from newsletter.files import atomic_write
from newsletter.models import (
    Briefing,
    Digest,
    DigestDrop,
    DigestEdition,
    DigestItem,
    DigestPin,
    DigestStatus,
    MailingList,
)
from newsletter.personalize import Recipient
from newsletter.render.templating import RenderedDigest, render_digest
from newsletter.send.ledger import EditionChoice, edition_counts
from newsletter.send.message import PreparedMessage

if TYPE_CHECKING:
    from newsletter.app import Newsletter

SAMPLE_EMAIL = "reader@example.com"


@dataclass(frozen=True)
class Draft:
    view: DigestView
    rendered: RenderedDigest
    message: PreparedMessage
    sent_at: datetime | None = None  # set when this is a digest that already went out
    themes: tuple[str, ...] = ()  # an edition's; empty: the full digest


@dataclass(frozen=True)
class PreviewReport:
    html_path: Path
    text_path: Path
    eml_path: Path
    briefings: int
    web_only: int
    html_bytes: int
    clipped_by_gmail: bool
    sent_at: datetime | None = None  # nothing new: this is the list's last digest, sent then
    themes: tuple[str, ...] = ()  # the edition's; empty: the full digest
    subject: str = ""
    brand_problems: tuple[str, ...] = ()  # a logo that cannot be shown, and why


@dataclass(frozen=True)
class EditionStatus:
    """One edition of a digest and what became of its deliveries."""

    themes: tuple[str, ...]  # empty: the full digest (every theme)
    briefings: int
    subject: str
    counts: dict[str, int] = field(default_factory=dict)


class DigestService:
    def __init__(self, app: Newsletter) -> None:
        self.app = app

    def pin(self, slug: str, reference: str) -> str:
        """Make a briefing (a short id like b123, or its guid) the lead of the list's next
        digest; returns its title."""
        settings = self.app.settings
        with self.app.session() as session:
            mailing_list = list_row(session, settings, slug)
            briefing = self.app.desk.briefing(session, reference)
            assert mailing_list.id is not None
            assert briefing.id is not None
            start, candidates = candidate_briefings(session, settings, mailing_list, self.app.now())
            if session.get(DigestDrop, (mailing_list.id, briefing.id)) is not None:
                raise NewsletterError(
                    f"“{briefing.title}” is dropped from {slug}'s digests",
                    hint=f"let it back in first: `newsletter digest drop b{briefing.id} "
                    f"--list {slug} --undo`",
                )
            if briefing.id not in {candidate.id for candidate in candidates}:
                raise NewsletterError(_not_pinnable(session, briefing, mailing_list, start))
            pin = session.get(DigestPin, mailing_list.id) or DigestPin(
                list_id=mailing_list.id, briefing_id=briefing.id
            )
            pin.briefing_id = briefing.id
            session.add(pin)
            session.commit()
            return briefing.title

    def draft(
        self,
        slug: str,
        *,
        or_last_sent: bool = False,
        subject_prefix: str = "",
        themes: Sequence[str] | None = None,
    ) -> Draft | None:
        """What `send` would send now, built and rendered but not stored; None if nothing is
        new.

        With `or_last_sent`, when nothing is new: the list's last digest, as it went out. The
        message's subject starts with `subject_prefix` (a test copy's mark)."""
        from newsletter.services.sending import prepare_message

        settings = self.app.settings
        with self.app.session() as session:
            mailing_list = list_row(session, settings, slug)
            pin = next_pin(session, mailing_list)
            digest = pending_digest(session, mailing_list) or build_digest(
                session, settings, mailing_list, self.app.now()
            )
            if digest is None and or_last_sent:
                digest = session.exec(
                    select(Digest)
                    .where(Digest.list_id == mailing_list.id, Digest.status == DigestStatus.SENT)
                    .order_by(col(Digest.id).desc())
                ).first()
            if digest is None:
                return None
            edition = None if themes is None else self._edition(session, digest, themes, pin)
            chosen: tuple[str, ...] = ()
            if edition is None:
                rendered = self.rendered(session, digest)
                view = digest_view(session, digest)
            else:
                chosen, view, rendered = edition
            message = prepare_message(
                settings, digest, mailing_list, subject_prefix, edition=rendered
            )
            sent_at = digest.sent_at if digest.status == DigestStatus.SENT else None
            session.rollback()
            return Draft(view, rendered, message, sent_at, chosen)

    def _edition(
        self, session: Session, digest: Digest, themes: Sequence[str], pin: int | None
    ) -> tuple[tuple[str, ...], DigestView, RenderedDigest] | None:
        """The edition of `themes` (as stored when the digest left draft, else rendered now);
        None when they make the full digest."""
        editions = Editions(session, self.app.settings, digest, pin)
        unknown = [name for name in themes if name not in editions.names]
        if unknown:
            raise NewsletterError(
                f"no theme {', '.join(map(repr, unknown))} in config.toml",
                hint="the themes are " + ", ".join(editions.names),
            )
        chosen = editions.chosen(themes)
        if chosen is None:
            return None
        view = editions.view(chosen)
        if view is None:
            raise NewsletterError(
                f"nothing new in {', '.join(chosen)} in digest {digest.id}: readers who chose "
                "only these themes are not mailed (their delivery is skipped)"
            )
        stored = session.exec(
            select(DigestEdition).where(
                DigestEdition.digest_id == digest.id,
                DigestEdition.themes_key == themes_key(chosen),
            )
        ).first()
        if stored is not None and stored.html:
            stored_rendering = RenderedDigest(
                stored.subject, stored.preheader, stored.html, stored.text
            )
            return chosen, view, stored_rendering
        return chosen, view, render_digest(view, self.app.settings)

    def store_editions(
        self,
        session: Session,
        digest: Digest,
        choices: Iterable[str | None],
        pin: int | None = None,
    ) -> dict[str, EditionChoice]:
        """Render and store (caller commits) one edition per distinct set of themes among
        `choices` (stored choices, as `ledger.theme_choices` gives them), for a digest leaving
        draft; returns each choice's edition. Choices that make the full digest have none."""
        editions = Editions(session, self.app.settings, digest, pin)
        stored: dict[str, EditionChoice] = {}
        of_choice: dict[str, EditionChoice] = {}
        for text in choices:
            themes = None if text is None else editions.chosen(_stored_choice(text))
            if text is None or themes is None:
                continue
            key = themes_key(themes)
            if key not in stored:
                stored[key] = self._store_edition(session, editions, key, themes)
            of_choice[text] = stored[key]
        return of_choice

    def _store_edition(
        self, session: Session, editions: Editions, key: str, themes: tuple[str, ...]
    ) -> EditionChoice:
        digest = editions.digest
        assert digest.id is not None
        edition = DigestEdition(
            digest_id=digest.id, themes_key=key, themes=list(themes), subject=""
        )
        view = editions.view(themes)
        if view is not None:
            rendered = render_digest(view, self.app.settings)
            edition.subject, edition.preheader = rendered.subject, rendered.preheader
            edition.html, edition.text = rendered.html, rendered.text
            edition.briefings = len(view.briefings)
        session.add(edition)
        session.flush()
        assert edition.id is not None
        return EditionChoice(edition.id, view is None)

    def editions(self, slug: str | None = None) -> dict[int, list[EditionStatus]]:
        """The editions of every digest that has some (of one list, or all), the full digest
        first, with their deliveries per status."""
        found: dict[int, list[EditionStatus]] = {}
        with self.app.session() as session:
            query = (
                select(DigestEdition, Digest)
                .join(Digest, col(Digest.id) == DigestEdition.digest_id)
                .order_by(col(DigestEdition.digest_id), col(DigestEdition.id))
            )
            if slug:
                query = query.where(Digest.list_id == list_row(session, self.app.settings, slug).id)
            rows = session.exec(query).all()
            counts: dict[int, Mapping[int | None, dict[str, int]]] = {}
            for edition, digest in rows:
                assert digest.id is not None
                if digest.id not in counts:
                    counts[digest.id] = edition_counts(session, digest.id)
                    full = EditionStatus(
                        (),
                        len(digest_view(session, digest).briefings),
                        digest.subject,
                        counts[digest.id].get(None, {}),
                    )
                    found[digest.id] = [full]
                found[digest.id].append(
                    EditionStatus(
                        tuple(edition.themes),
                        edition.briefings,
                        edition.subject,
                        counts[digest.id].get(edition.id, {}),
                    )
                )
        return found

    def rendered(self, session: Session, digest: Digest) -> RenderedDigest:
        """A digest as it was rendered when it left draft, or rendered now."""
        if digest.html:
            return RenderedDigest(digest.subject, digest.preheader, digest.html, digest.text)
        return render_digest(digest_view(session, digest), self.app.settings)

    def sample_recipient(self, email: str = SAMPLE_EMAIL) -> Recipient:
        """Who a preview or a test copy is addressed to; its unsubscribe link leads nowhere,
        its preferences link to the signup page."""
        base_url = self.app.settings.publication.base_url
        return Recipient(0, email, "", base_url + PREVIEW_UNSUBSCRIBE_PATH, base_url + "/subscribe")

    def preview(
        self, slug: str, out_dir: Path, themes: Sequence[str] | None = None
    ) -> PreviewReport | None:
        """Render what `send` would send now (when nothing is new, the list's last digest),
        without storing anything; None when the list never had a digest and nothing is new.

        With `themes`, the edition of a reader who chose them (the full digest when they are
        every theme)."""
        current = self.draft(slug, or_last_sent=True, themes=themes)
        if current is None:
            return None
        view, rendered, message = current.view, current.rendered, current.message
        sample = self.sample_recipient()
        html_path, text_path = out_dir / "digest.html", out_dir / "digest.txt"
        markers = message.markers
        html = markers.fill(rendered.html, sample, escape_html)
        brand = brand_of(self.app.settings)
        for logo in (brand.logo, brand.logo_dark):
            if logo is not None and logo.file is not None:
                # Until `serve` answers at base_url, the mail's logo URL leads nowhere: the
                # preview shows the file itself, copied beside it.
                atomic_write(out_dir / logo.file.name, logo.file.read_bytes())
                html = html.replace(f'src="{escape_html(logo.url)}"', f'src="{logo.file.name}"')
        atomic_write(html_path, html)
        atomic_write(text_path, markers.fill(rendered.text, sample))
        atomic_write(out_dir / "digest.eml", message.render(sample).replace(b"\r\n", b"\n"))
        return PreviewReport(
            html_path,
            text_path,
            out_dir / "digest.eml",
            len(view.briefings),
            view.web_only,
            rendered.html_bytes,
            rendered.clipped_by_gmail,
            current.sent_at,
            current.themes,
            view.subject,
            brand.problems,
        )


def _not_pinnable(
    session: Session, briefing: Briefing, mailing_list: MailingList, start: datetime
) -> str:
    """Why a briefing cannot lead the list's next digest."""
    sent_in = session.exec(
        select(DigestItem.digest_id).where(
            DigestItem.list_id == mailing_list.id, DigestItem.briefing_id == briefing.id
        )
    ).first()
    if sent_in is not None:
        return f"“{briefing.title}” was already in digest {sent_in} of {mailing_list.slug}"
    return (
        f"“{briefing.title}” ({briefing.published_at:%Y-%m-%d}) is not in the next digest of "
        f"{mailing_list.slug}, which takes briefings from {start:%Y-%m-%d} on that no digest "
        "of the list carried"
    )


def _stored_choice(text: str | None) -> list[str] | None:
    """A reader's stored choice of themes (JSON text) as names; None when they never chose, or
    when it is not a list of names (then they get every theme rather than nothing)."""
    if text is None:
        return None
    try:
        value = json.loads(text)
    except ValueError:
        return None
    if not isinstance(value, list) or not all(isinstance(name, str) for name in value):
        return None
    return value
