"""The editor's desk: see the next digest as it will go out (`show`), leave a story out
(`drop`), write the note atop it (`note`), and approve it when the list asks for approval.

A briefing is named by its short id (`b123`, what `show` prints) or by its feed guid. The plan
`show` prints is the one `send` builds: both come from `build_digest` (here in a transaction
that is rolled back), so what the editor saw is what goes out. An approval holds a fingerprint
of that plan: a fetch that adds a story, a drop, a pin or a note changes it, and asks for
approval again.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from sqlalchemy import func
from sqlmodel import Session, col, select

from newsletter.db import list_row
from newsletter.digest.builder import build_digest, candidate_briefings, planned
from newsletter.errors import NewsletterError
from newsletter.models import (
    Briefing,
    Digest,
    DigestApproval,
    DigestDrop,
    DigestItem,
    DigestNote,
    DigestPin,
    MailingList,
)

if TYPE_CHECKING:
    from newsletter.app import Newsletter

SHORT_ID = re.compile(r"^b(\d{1,12})$", re.IGNORECASE)
MAX_NOTE = 20_000  # characters: a note is a paragraph or three, not an article

ApprovalState = Literal["not needed", "waiting", "approved", "changed since approval"]


def short_id(briefing_id: int) -> str:
    return f"b{briefing_id}"


@dataclass(frozen=True)
class PlannedStory:
    short_id: str
    guid: str
    title: str
    outlet: str
    theme: str
    lead: bool
    in_email: bool
    pinned: bool
    also: tuple[str, ...] = ()  # merged duplicates: "b17 (Harbor Ledger)"


@dataclass(frozen=True)
class DeskPlan:
    """The next digest of a list, as `send` would build it now."""

    list_slug: str
    subject: str
    preheader: str
    note: str
    stories: list[PlannedStory]
    dropped: list[PlannedStory] = field(default_factory=list)
    approval: ApprovalState = "not needed"
    approved_at: datetime | None = None
    fingerprint: str = ""

    @property
    def in_email(self) -> int:
        return sum(1 for story in self.stories if story.in_email)

    @property
    def web_only(self) -> int:
        return len(self.stories) - self.in_email


@dataclass(frozen=True)
class DropReport:
    title: str
    short_id: str
    sent_in: int | None  # the digest of the list that already carried it
    in_next: bool  # whether the next digest has it now


def plan_fingerprint(session: Session, digest: Digest) -> str:
    """What an approval approves: the stories, their places, the subject and the note."""
    items = [(p.id, p.theme, p.lead, p.in_email, p.merged_into) for p in planned(session, digest)]
    data = json.dumps([items, digest.subject, digest.preheader, digest.note])
    return hashlib.sha256(data.encode()).hexdigest()[:32]


class DeskService:
    def __init__(self, app: Newsletter) -> None:
        self.app = app

    # --- naming a briefing ------------------------------------------------------------------

    def briefing(self, session: Session, reference: str) -> Briefing:
        """The briefing a short id (`b123`) or a feed guid names."""
        reference = reference.strip()
        found = None
        match = SHORT_ID.match(reference)
        if match:
            found = session.get(Briefing, int(match.group(1)))
        if found is None:
            found = session.exec(
                select(Briefing).where(Briefing.guid == reference).order_by(col(Briefing.id).desc())
            ).first()
        if found is None or found.id is None:
            raise NewsletterError(
                f"no briefing {reference!r}",
                hint="use the short id (b123) or the guid that `newsletter digest show` prints",
            )
        return found

    # --- seeing the next digest -------------------------------------------------------------

    def show(self, slug: str) -> DeskPlan | None:
        """The next digest's plan; None when nothing is new for the list."""
        settings = self.app.settings
        with self.app.session() as session:
            mailing_list = list_row(session, settings, slug)
            assert mailing_list.id is not None
            pin = session.get(DigestPin, mailing_list.id)
            pinned = pin.briefing_id if pin else None
            dropped = self._dropped(session, mailing_list)
            digest = build_digest(session, settings, mailing_list, self.app.now())
            if digest is None:
                session.rollback()
                return None
            stories = _stories(session, digest, pinned)
            fingerprint = plan_fingerprint(session, digest)
            subject, preheader, note = digest.subject, digest.preheader, digest.note
            session.rollback()
            approval, approved_at = self._approval(session, mailing_list, slug, fingerprint)
        return DeskPlan(
            slug, subject, preheader, note, stories, dropped, approval, approved_at, fingerprint
        )

    def too_old(self, slug: str) -> int:
        """Briefings no digest of the list carried that are older than `window_days`: the
        reason an editor who just fetched an old feed sees nothing new."""
        settings = self.app.settings
        earliest = self.app.now() - timedelta(days=settings.digest.window_days)
        with self.app.session() as session:
            mailing_list = list_row(session, settings, slug)
            carried = select(DigestItem.briefing_id).where(DigestItem.list_id == mailing_list.id)
            return int(
                session.exec(
                    select(func.count())
                    .select_from(Briefing)
                    .where(
                        col(Briefing.published_at) <= earliest,
                        col(Briefing.id).not_in(carried),
                    )
                ).one()
            )

    def _dropped(self, session: Session, mailing_list: MailingList) -> list[PlannedStory]:
        """The dropped briefings the next digest would otherwise have had."""
        rows = session.exec(
            select(Briefing)
            .join(DigestDrop, col(DigestDrop.briefing_id) == Briefing.id)
            .where(DigestDrop.list_id == mailing_list.id)
            .order_by(col(Briefing.published_at).desc())
        ).all()
        return [
            PlannedStory(
                short_id(b.id or 0), b.guid, b.title, b.source_name, "", False, False, False
            )
            for b in rows
        ]

    def _approval(
        self, session: Session, mailing_list: MailingList, slug: str, fingerprint: str
    ) -> tuple[ApprovalState, datetime | None]:
        approval = session.get(DigestApproval, mailing_list.id)
        if not self.app.settings.mailing_list(slug).require_approval:
            return "not needed", None
        if approval is None:
            return "waiting", None
        if approval.fingerprint != fingerprint:
            return "changed since approval", approval.approved_at
        return "approved", approval.approved_at

    # --- shaping it -------------------------------------------------------------------------

    def drop(self, slug: str, reference: str, *, undo: bool = False) -> DropReport:
        """Leave a briefing out of the list's digests (or, with `undo`, let it back in), and
        say whether that changes a digest to come."""
        settings = self.app.settings
        with self.app.session() as session:
            mailing_list = list_row(session, settings, slug)
            briefing = self.briefing(session, reference)
            assert mailing_list.id is not None
            assert briefing.id is not None
            sent_in = session.exec(
                select(DigestItem.digest_id).where(
                    DigestItem.list_id == mailing_list.id, DigestItem.briefing_id == briefing.id
                )
            ).first()
            existing = session.get(DigestDrop, (mailing_list.id, briefing.id))
            if undo and existing is not None:
                session.delete(existing)
            elif not undo and existing is None and sent_in is None:
                session.add(DigestDrop(list_id=mailing_list.id, briefing_id=briefing.id))
                pin = session.get(DigestPin, mailing_list.id)
                if pin is not None and pin.briefing_id == briefing.id:
                    session.delete(pin)  # a dropped story cannot lead
            session.commit()
            session.refresh(briefing)
            _, candidates = candidate_briefings(session, settings, mailing_list, self.app.now())
            return DropReport(
                briefing.title,
                short_id(briefing.id),
                sent_in=sent_in,
                in_next=briefing.id in {candidate.id for candidate in candidates},
            )

    def note(
        self, slug: str, text: str | None = None, *, path: Path | None = None, clear: bool = False
    ) -> str:
        """Set the note atop the list's next digest (Markdown), from text or a file, or
        `clear` it. Returns the note as stored."""
        if path is not None:
            try:
                text = path.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as exc:
                raise NewsletterError(
                    f"{path}: cannot read the note: {exc}", hint="save it as UTF-8 Markdown"
                ) from None
        text = "" if clear else (text or "").strip()
        if not text and not clear:
            where = f"{path} is" if path is not None else "the note is"
            raise NewsletterError(
                f"{where} empty: nothing was changed",
                hint=f"write the note, or remove it with `newsletter digest note --list {slug} "
                "--clear`",
            )
        if len(text) > MAX_NOTE:
            raise NewsletterError(
                f"the note is {len(text):,} characters; at most {MAX_NOTE:,} fit atop a digest",
                hint="shorten it, or link a longer piece from it",
            )
        with self.app.session() as session:
            mailing_list = list_row(session, self.app.settings, slug)
            assert mailing_list.id is not None
            existing = session.get(DigestNote, mailing_list.id)
            if not text:
                if existing is not None:
                    session.delete(existing)
            elif existing is None:
                session.add(DigestNote(list_id=mailing_list.id, text=text))
            else:
                existing.text = text
                session.add(existing)
            session.commit()
        return text

    def unpin(self, slug: str) -> str | None:
        """Take the pin off the list's next digest; the title that was pinned, if any."""
        with self.app.session() as session:
            mailing_list = list_row(session, self.app.settings, slug)
            pin = session.get(DigestPin, mailing_list.id)
            if pin is None:
                return None
            briefing = session.get(Briefing, pin.briefing_id)
            session.delete(pin)
            session.commit()
            return briefing.title if briefing else None

    def approve(self, slug: str, *, by: str) -> DeskPlan:
        """Approve the next digest of a list as `show` shows it now."""
        plan = self.show(slug)
        if plan is None:
            raise NewsletterError(
                f"nothing to approve for {slug}: no new briefings in the window",
                hint="run `newsletter fetch` first",
            )
        with self.app.session() as session:
            mailing_list = list_row(session, self.app.settings, slug)
            assert mailing_list.id is not None
            approval = session.get(DigestApproval, mailing_list.id) or DigestApproval(
                list_id=mailing_list.id, fingerprint=plan.fingerprint
            )
            approval.fingerprint, approval.approved_at = plan.fingerprint, self.app.now()
            approval.approved_by = by
            session.add(approval)
            session.commit()
        return self.show(slug) or plan

    def check_approved(self, session: Session, mailing_list: MailingList, digest: Digest) -> None:
        """Before a list that requires approval sends a newly built digest: its plan must be
        the one approved (the approval is then used up, like a pin)."""
        if not self.app.settings.mailing_list(mailing_list.slug).require_approval:
            return
        approval = session.get(DigestApproval, mailing_list.id)
        slug = mailing_list.slug
        show = f"newsletter digest show --list {slug}"
        approve = f"newsletter digest approve --list {slug}"
        if approval is None:
            raise NewsletterError(
                f"the next digest of {slug} waits for approval",
                hint=f"see it with `{show}`, then `{approve}`",
            )
        if approval.fingerprint != plan_fingerprint(session, digest):
            raise NewsletterError(
                f"the next digest of {slug} changed since it was approved "
                f"({approval.approved_at:%Y-%m-%d %H:%M} UTC)",
                hint=f"see what changed with `{show}`, then `{approve}` again",
            )
        session.delete(approval)


def _stories(session: Session, digest: Digest, pinned: int | None) -> list[PlannedStory]:
    items = planned(session, digest)
    merged: dict[int, list[str]] = {}
    for item in items:
        if item.merged_into is not None:
            merged.setdefault(item.merged_into, []).append(
                f"{short_id(item.id)} ({item.briefing.source_name})"
            )
    return [
        PlannedStory(
            short_id(item.id),
            item.briefing.guid,
            item.briefing.title,
            item.briefing.source_name,
            item.theme,
            item.lead,
            item.in_email,
            item.id == pinned,
            tuple(merged.get(item.id, ())),
        )
        for item in items
        if item.merged_into is None
    ]
