"""What the web pages do, on one database opened for the life of the server."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from html import escape
from xml.sax.saxutils import escape as xml_escape

from sqlalchemy.exc import SQLAlchemyError
from sqlmodel import col, select

from newsletter.audience import subscribers as audience
from newsletter.audience.tokens import (
    BadToken,
    resubscribe_token,
    signing_key,
    verify_resubscribe_token,
    verify_unsubscribe_token,
)
from newsletter.config import Settings
from newsletter.digest.builder import digest_view
from newsletter.models import (
    Digest,
    DigestStatus,
    MailingList,
    Subscriber,
    SubscriberStatus,
    Subscription,
    SubscriptionStatus,
    utcnow,
)
from newsletter.personalize import Markers, Recipient
from newsletter.pipeline import confirm_subscription_in, open_database
from newsletter.render.templating import archive_url, render_digest

UNSUBSCRIBE_LINK = "unsubscribe link"


@dataclass(frozen=True)
class ArchiveEntry:
    id: int
    subject: str
    preheader: str
    list_name: str
    sent_at: datetime
    url: str


class WebBackend:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.database = open_database(settings)
        self.key = signing_key(settings)

    def close(self) -> None:
        self.database.dispose()

    def _list_name(self, list_id: int) -> str:
        with self.database.session() as session:
            mailing_list = session.get(MailingList, list_id)
        if mailing_list is None:
            raise BadToken("this link is not valid")
        return mailing_list.name

    def list_for_unsubscribe(self, token: str) -> str:
        """The list a token unsubscribes from (BadToken if it is not ours)."""
        list_id, _ = verify_unsubscribe_token(self.key, token)
        return self._list_name(list_id)

    def unsubscribe(self, token: str, *, origin: str) -> tuple[str, str]:
        """Unsubscribe at once; repeating it is harmless. (list name, a short-lived undo token)."""
        list_id, subscriber_id = verify_unsubscribe_token(self.key, token)
        name = self._list_name(list_id)
        with self.database.session() as session:
            audience.unsubscribe(
                session,
                list_id,
                subscriber_id,
                origin=origin,
                reason=f"{UNSUBSCRIBE_LINK} ({origin})",
            )
        return name, resubscribe_token(self.key, list_id, subscriber_id)

    def resubscribe(self, token: str) -> tuple[str, bool]:
        """Undo an unsubscribe made through a link, within a day, from the page that followed.

        Never revives an unsubscribe an editor made, a bounce, a complaint or a forget.
        """
        list_id, subscriber_id = verify_resubscribe_token(self.key, token)
        name = self._list_name(list_id)
        with self.database.session() as session:
            subscription = session.get(Subscription, (list_id, subscriber_id))
            subscriber = session.get(Subscriber, subscriber_id)
            if (
                subscription is None
                or subscriber is None
                or subscriber.status != SubscriberStatus.ACTIVE
                or subscription.status != SubscriptionStatus.UNSUBSCRIBED
                or not subscription.unsubscribe_reason.startswith(UNSUBSCRIBE_LINK)
            ):
                return name, False
            subscription.status = SubscriptionStatus.ACTIVE
            subscription.updated_at = utcnow()
            subscription.origin = "web (undid an unsubscribe)"  # the consent record stays
            subscription.unsubscribed_at, subscription.unsubscribe_reason = None, ""
            session.add(subscription)
            session.commit()
        return name, True

    def confirm(self, token: str) -> tuple[str, bool]:
        return confirm_subscription_in(self.settings, self.database, self.key, token)

    def archive(self) -> list[ArchiveEntry]:
        with self.database.session() as session:
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
                archive_url(self.settings, digest.id or 0),
            )
            for digest, mailing_list in rows
        ]

    def edition(self, digest_id: int) -> str | None:
        """A sent digest as a web page: every story, nobody's address or unsubscribe link."""
        with self.database.session() as session:
            digest = session.get(Digest, digest_id)
            if digest is None or digest.status != DigestStatus.SENT:
                return None
            view = digest_view(session, digest, web_edition=True)
        rendered = render_digest(view, self.settings)
        anyone = Recipient(0, "you", "", f"{self.settings.publication.base_url}/unsubscribe")
        return Markers(view.nonce).fill(rendered.html, anyone, escape)

    def atom(self) -> str:
        publication = self.settings.publication
        entries = self.archive()
        updated = max((entry.sent_at for entry in entries), default=utcnow())
        items = "".join(
            f"<entry><id>tag:{publication.domain},{entry.sent_at:%Y-%m-%d}:digest-{entry.id}</id>"
            f"<title>{xml_escape(entry.subject)}</title>"
            f'<link rel="alternate" type="text/html" href="{xml_escape(entry.url)}"/>'
            f"<updated>{entry.sent_at:%Y-%m-%dT%H:%M:%SZ}</updated>"
            f"<summary>{xml_escape(entry.preheader)}</summary></entry>"
            for entry in entries
        )
        base = publication.base_url
        return (
            '<?xml version="1.0" encoding="utf-8"?>'
            '<feed xmlns="http://www.w3.org/2005/Atom">'
            f"<id>{xml_escape(base)}/archive</id><title>{xml_escape(publication.name)}</title>"
            f'<link rel="self" href="{xml_escape(base)}/archive.xml"/>'
            f'<link rel="alternate" type="text/html" href="{xml_escape(base)}/archive"/>'
            f"<updated>{updated:%Y-%m-%dT%H:%M:%SZ}</updated>"
            f"<author><name>{xml_escape(publication.name)}</name></author>{items}</feed>"
        )

    def healthy(self) -> bool:
        try:
            with self.database.session() as session:
                session.exec(select(MailingList.id).limit(1)).all()
        except SQLAlchemyError:
            return False
        return True
