"""Readers: what the links in mail and the public pages do. Unsubscribe (one-click or from the
page), undo it, confirm a subscription, read the archive."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from html import escape
from typing import TYPE_CHECKING, Any

from sqlalchemy import bindparam
from sqlalchemy.exc import SQLAlchemyError
from sqlmodel import Session, col, select

from newsletter.audience import consent, lifecycle
from newsletter.audience.tokens import (
    resubscribe_token,
    verify_resubscribe_token,
    verify_unsubscribe_token,
)
from newsletter.brand import brand_of
from newsletter.db import probe_write
from newsletter.digest.builder import digest_view
from newsletter.errors import BadToken, NewsletterError, ReaderGone
from newsletter.models import (
    Digest,
    DigestStatus,
    MailingList,
    Subscriber,
    Subscription,
    SubscriptionStatus,
)
from newsletter.personalize import Markers, Recipient
from newsletter.render.atom import archive_feed
from newsletter.render.markdown import markdown_html
from newsletter.render.templating import archive_url, render_digest
from newsletter.resources import bundled

if TYPE_CHECKING:
    from newsletter.app import Newsletter


@dataclass(frozen=True)
class ArchiveEntry:
    id: int
    subject: str
    preheader: str
    list_name: str
    sent_at: datetime
    url: str  # absolute, for the Atom feed

    @property
    def path(self) -> str:
        """The same page as a path, for links on our own pages."""
        return f"/archive/{self.id}"


@dataclass(frozen=True)
class UnsubscribePage:
    list_name: str
    already: bool  # unsubscribed before: the page offers no button that does nothing
    preferences_url: str


@dataclass(frozen=True)
class UnsubscribeReport:
    list_name: str
    undo_token: str  # undoes this unsubscribe, for a day, from the page that follows
    preferences_url: str


@dataclass(frozen=True)
class ResubscribeReport:
    list_name: str
    changed: bool  # False: nothing to undo here (an editor's unsubscribe, a bounce, ...)


class ReaderService:
    def __init__(self, app: Newsletter) -> None:
        self.app = app

    def check_unsubscribe_token(self, token: str) -> None:
        """BadToken if an unsubscribe token is not ours: its signature only, nothing read."""
        verify_unsubscribe_token(self.app.signing_key(), token)

    def unsubscribe_page(self, token: str) -> UnsubscribePage:
        """What the page behind an unsubscribe link shows (BadToken if it is not ours)."""
        list_id, subscriber_id = verify_unsubscribe_token(self.app.signing_key(), token)
        with self.app.session() as session:
            name = _list_name(session, list_id, subscriber_id)
            subscription = session.get(Subscription, (list_id, subscriber_id))
            already = subscription is None or subscription.status in (
                SubscriptionStatus.UNSUBSCRIBED,
                SubscriptionStatus.PENDING,
            )
        return UnsubscribePage(name, already, self.app.preferences.link(subscriber_id))

    def unsubscribe(self, token: str, *, origin: str) -> UnsubscribeReport:
        """Unsubscribe at once; repeating it is harmless."""
        key = self.app.signing_key()
        list_id, subscriber_id = verify_unsubscribe_token(key, token)
        with self.app.session() as session:
            name = _list_name(session, list_id, subscriber_id)
            if lifecycle.unsubscribe_by_link(session, list_id, subscriber_id, origin):
                consent.record(
                    session, subscriber_id, "unsubscribe", list_id=list_id, origin=origin
                )
            session.commit()
        return UnsubscribeReport(
            name,
            resubscribe_token(key, list_id, subscriber_id),
            self.app.preferences.link(subscriber_id),
        )

    def resubscribe(self, token: str) -> ResubscribeReport:
        """Undo an unsubscribe made through a link, within a day, from the page that followed."""
        list_id, subscriber_id = verify_resubscribe_token(self.app.signing_key(), token)
        with self.app.session() as session:
            name = _list_name(session, list_id, subscriber_id)
            changed = lifecycle.resubscribe(session, list_id, subscriber_id)
            if changed:
                consent.record(
                    session,
                    subscriber_id,
                    "resubscribe",
                    list_id=list_id,
                    detail="undid an unsubscribe from the page that followed it",
                    origin="web",
                )
            session.commit()
        return ResubscribeReport(name, changed)

    def archive(self) -> list[ArchiveEntry]:
        """Every sent issue, newest first."""
        with self.app.session() as session:
            rows = session.exec(
                select(Digest, MailingList)
                .join(MailingList)
                .where(Digest.status == DigestStatus.SENT)
                .order_by(col(Digest.sent_at).desc())
            ).all()
        return [
            ArchiveEntry(
                digest.id or 0,
                digest.subject,
                digest.preheader,
                mailing_list.name,
                digest.sent_at or digest.created_at,
                archive_url(self.app.settings, digest.id or 0),
            )
            for digest, mailing_list in rows
        ]

    def edition(self, digest_id: int) -> str | None:
        """A sent digest as a web page: every story, nobody's address or unsubscribe link."""
        settings = self.app.settings
        with self.app.session() as session:
            digest = session.get(Digest, digest_id)
            if digest is None or digest.status != DigestStatus.SENT:
                return None
            view = digest_view(session, digest, web_edition=True)
        rendered = render_digest(view, settings, web=True)
        base_url = settings.publication.base_url
        anyone = Recipient(0, "you", "", f"{base_url}/unsubscribe", f"{base_url}/subscribe")
        return Markers(view.nonce).fill(rendered.html, anyone, escape)

    def standards_path(self) -> str | None:
        """The path the standards page is served at: standards_url's, when it lies under
        base_url (else it is someone else's page, and not ours to serve)."""
        publication = self.app.settings.publication
        base, url = publication.base_url, publication.standards_url
        if not url.startswith(base + "/") or len(url) == len(base) + 1:
            return None
        path = url[len(base) :].split("#", 1)[0].split("?", 1)[0]
        return path if path.startswith("/") and path.rstrip("/") else None

    def warnings(self) -> list[str]:
        """What an operator should fix before readers see the site."""
        settings = self.app.settings
        found = list(brand_of(settings).problems)
        if self.standards_path() is not None:
            page = settings.standards_page_path
            starter = bundled("samples", "standards.md").read_text(encoding="utf-8")
            named = starter.replace("{publication}", settings.publication.name)
            try:
                unchanged = page.read_text(encoding="utf-8") == named
            except OSError:
                found.append(
                    f"{page.name} is missing: {settings.publication.standards_url} shows the "
                    "starter text; `newsletter init` writes it for you to edit"
                )
            else:
                if unchanged:
                    found.append(
                        f"{page} is still the starter text; make it say what is true for "
                        "your publication"
                    )
        return found

    def standards(self) -> str:
        """The standards page's body as HTML: the editor's Markdown file, or the starter."""
        settings = self.app.settings
        try:
            source = settings.standards_page_path.read_text(encoding="utf-8")
        except FileNotFoundError:
            source = bundled("samples", "standards.md").read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise NewsletterError(
                f"{settings.standards_page_path}: cannot read the standards page: {exc}",
                hint="save it as UTF-8 Markdown, or remove it to serve the starter",
            ) from None
        source = source.replace("{publication}", settings.publication.name)
        return markdown_html(source)

    def atom(self) -> str:
        return archive_feed(self.app.settings.publication, self.archive())

    def healthy(self) -> bool:
        """Whether the database takes a committed write: an unsubscribe must be recorded, so a
        database that can only be read (a full disk, a read-only file) is not healthy."""
        try:
            probe_write(self.app.database.engine)
        except SQLAlchemyError:
            return False
        return True


def _list_name(session: Session, list_id: int, subscriber_id: int) -> str:
    """The name of the list a well-signed link names, when it names a list and a reader we
    have (BadToken for a list we do not have: the same 400 page as a tampered link; ReaderGone
    for a reader who was forgotten)."""
    row = session.execute(_LIST_AND_READER, {"list": list_id, "subscriber": subscriber_id}).first()
    if row is None:
        raise BadToken("this link is not valid")
    if row.reader is None:  # only a forget removes a reader (ids are never reused)
        raise ReaderGone("nothing is stored about this reader")
    return str(row.name)


# Built once, one round trip: every link a reader follows asks it first.
_LIST_AND_READER: Any = select(
    col(MailingList.name).label("name"),
    select(Subscriber.id)
    .where(col(Subscriber.id) == bindparam("subscriber"))
    .scalar_subquery()
    .label("reader"),
).where(col(MailingList.id) == bindparam("list"))
