"""Digests: shape the next one (pin), build it as `send` would without storing it (draft),
and write it to files for a look (preview)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from html import escape as escape_html
from pathlib import Path
from typing import TYPE_CHECKING

from sqlmodel import Session, col, select

from newsletter.audience.tokens import PREVIEW_UNSUBSCRIBE_PATH
from newsletter.db import list_row
from newsletter.digest.builder import (
    DigestView,
    build_digest,
    candidate_briefings,
    digest_view,
    pending_digest,
)
from newsletter.errors import NewsletterError
from newsletter.files import atomic_write
from newsletter.models import (
    Briefing,
    Digest,
    DigestItem,
    DigestPin,
    DigestStatus,
    MailingList,
)
from newsletter.personalize import Recipient
from newsletter.render.templating import RenderedDigest, render_digest
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


class DigestService:
    def __init__(self, app: Newsletter) -> None:
        self.app = app

    def pin(self, slug: str, guid: str) -> str:
        """Make a briefing the lead of the list's next digest; returns its title."""
        settings = self.app.settings
        with self.app.session() as session:
            mailing_list = list_row(session, settings, slug)
            briefing = session.exec(
                select(Briefing).where(Briefing.guid == guid).order_by(col(Briefing.id).desc())
            ).first()
            if briefing is None or briefing.id is None:
                raise NewsletterError(
                    f"no briefing with guid {guid!r}",
                    hint="run `newsletter fetch` first; the guid is the feed item's <guid> or <id>",
                )
            assert mailing_list.id is not None
            start, candidates = candidate_briefings(session, settings, mailing_list, self.app.now())
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
        self, slug: str, *, or_last_sent: bool = False, subject_prefix: str = ""
    ) -> Draft | None:
        """What `send` would send now, built and rendered but not stored; None if nothing is
        new.

        With `or_last_sent`, when nothing is new: the list's last digest, as it went out. The
        message's subject starts with `subject_prefix` (a test copy's mark)."""
        from newsletter.services.sending import prepare_message

        settings = self.app.settings
        with self.app.session() as session:
            mailing_list = list_row(session, settings, slug)
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
            rendered = self.rendered(session, digest)
            view = digest_view(session, digest)
            digest.html, digest.text = rendered.html, rendered.text
            message = prepare_message(settings, digest, mailing_list, subject_prefix)
            sent_at = digest.sent_at if digest.status == DigestStatus.SENT else None
            session.rollback()
            return Draft(view, rendered, message, sent_at)

    def rendered(self, session: Session, digest: Digest) -> RenderedDigest:
        """A digest as it was rendered when it left draft, or rendered now."""
        if digest.html:
            return RenderedDigest(digest.subject, digest.preheader, digest.html, digest.text)
        return render_digest(digest_view(session, digest), self.app.settings)

    def sample_recipient(self, email: str = SAMPLE_EMAIL) -> Recipient:
        """Who a preview or a test copy is addressed to; its unsubscribe link leads nowhere."""
        base_url = self.app.settings.publication.base_url
        return Recipient(0, email, "", base_url + PREVIEW_UNSUBSCRIBE_PATH)

    def preview(self, slug: str, out_dir: Path) -> PreviewReport | None:
        """Render what `send` would send now (when nothing is new, the list's last digest),
        without storing anything; None when the list never had a digest and nothing is new."""
        current = self.draft(slug, or_last_sent=True)
        if current is None:
            return None
        view, rendered, message = current.view, current.rendered, current.message
        sample = self.sample_recipient()
        html_path, text_path = out_dir / "digest.html", out_dir / "digest.txt"
        markers = message.markers
        atomic_write(html_path, markers.fill(rendered.html, sample, escape_html))
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
