"""Subscribers: add, import, confirm, remove, list, export, show and forget.

Every status change goes through `audience.lifecycle`; a pending subscription's confirmation
mail goes out through the app's `confirmation_needed` hook (by default, `ConfirmationMailer`).
"""

from __future__ import annotations

from dataclasses import dataclass
from email.headerregistry import Address
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, NamedTuple, TextIO

from sqlmodel import Session

from newsletter.audience import lifecycle, store
from newsletter.audience.addresses import ascii_address, normalize_email
from newsletter.audience.csv_io import write_csv
from newsletter.audience.importer import ImportReport, import_subscribers
from newsletter.audience.lifecycle import RemoveOutcome, SubscribeOutcome
from newsletter.audience.store import ListedSubscriber
from newsletter.audience.tokens import confirm_url, preferences_url, verify_confirm_token
from newsletter.db import compact_after_erasure, list_row, refresh_statistics
from newsletter.digest.themes import ThemeMatcher
from newsletter.errors import BadToken, DeliveryRefused
from newsletter.feeds.sanitize import single_line
from newsletter.models import MailingList, Subscriber
from newsletter.render.templating import render_already_subscribed, render_confirmation
from newsletter.send.message import Envelope, single_message

if TYPE_CHECKING:
    from newsletter.app import Newsletter


@dataclass(frozen=True)
class PendingConfirmation:
    """A subscription waiting for its confirmation link."""

    list_id: int
    list_name: str
    subscriber_id: int
    email: str
    name: str
    # "reminder": they are subscribed already (a web signup again): mail their preferences link
    kind: Literal["confirm", "reminder"] = "confirm"


@dataclass(frozen=True)
class SubscribeReport:
    outcome: SubscribeOutcome
    email: str  # as stored: the domain lower-cased
    confirmations_sent: int = 0


class RemoveReport(NamedTuple):
    outcome: RemoveOutcome
    email: str  # as stored


@dataclass(frozen=True)
class ConfirmReport:
    list_name: str
    changed: bool  # False: it was confirmed already


class SubscriberService:
    def __init__(self, app: Newsletter) -> None:
        self.app = app

    def add(
        self, email: str, slug: str, name: str = "", *, origin: str, consent: str
    ) -> SubscribeReport:
        """Add one reader to a list, recording how (`origin`) and from where (`consent`)."""
        settings = self.app.settings
        double_opt_in = settings.mailing_list(slug).double_opt_in
        if double_opt_in:
            self.app.signing_key(for_mail=True)  # refuse before anything is stored
        with self.app.session() as session:
            mailing_list = list_row(session, settings, slug)
            outcome, subscriber = lifecycle.subscribe(
                session,
                mailing_list,
                email,
                name,
                origin=origin,
                consent=consent,
                double_opt_in=double_opt_in,
            )
            session.commit()
            stored = subscriber.email if subscriber else normalize_email(email)
            sent = 0
            if outcome == SubscribeOutcome.PENDING and subscriber is not None:
                sent = self._confirm(session, mailing_list, [subscriber])
        return SubscribeReport(outcome, stored, sent)

    def import_csv(self, path: Path, slug: str, *, skip_invalid: bool = False) -> ImportReport:
        """Import a CSV (all rows or none): our layout, or another tool's export recognised by
        its header (`report.format_name`); on a double opt-in list the new subscribers are
        mailed a confirmation."""
        settings = self.app.settings
        double_opt_in = settings.mailing_list(slug).double_opt_in
        if double_opt_in:
            self.app.signing_key(for_mail=True)
        with self.app.session() as session:
            mailing_list = list_row(session, settings, slug)
            report = import_subscribers(
                session,
                mailing_list,
                path,
                double_opt_in=double_opt_in,
                skip_invalid=skip_invalid,
                theme_names=ThemeMatcher(settings.themes, settings.digest.fallback_theme).names,
            )
            refresh_statistics(session, "subscriber", "subscription")
            if double_opt_in and report.pending:
                pending = [session.get(Subscriber, id_) for id_ in report.pending]
                self._confirm(session, mailing_list, [s for s in pending if s is not None])
        return report

    def _confirm(
        self, session: Session, mailing_list: MailingList, subscribers: list[Subscriber]
    ) -> int:
        assert mailing_list.id is not None
        pending = [
            PendingConfirmation(
                mailing_list.id, mailing_list.name, subscriber.id, subscriber.email, subscriber.name
            )
            for subscriber in subscribers
            if subscriber.id is not None
        ]
        hook = self.app.hooks.confirmation_needed or ConfirmationMailer(self.app)
        return hook(pending)

    def confirm(self, token: str) -> ConfirmReport:
        """Act on a confirmation link (BadToken when it is not ours or has expired)."""
        key = self.app.signing_key()
        list_id, subscriber_id = verify_confirm_token(self.app.settings, key, token)
        with self.app.session() as session:
            mailing_list = session.get(MailingList, list_id)
            if mailing_list is None or session.get(Subscriber, subscriber_id) is None:
                raise BadToken("this link is not valid")
            changed = lifecycle.confirm(session, list_id, subscriber_id)
            session.commit()
            return ConfirmReport(mailing_list.name, changed)

    def remove(self, email: str, slug: str) -> RemoveReport:
        """An editor's unsubscribe: what happened, and the address as stored."""
        with self.app.session() as session:
            mailing_list = list_row(session, self.app.settings, slug)
            outcome, stored = lifecycle.remove(session, mailing_list, email)
            session.commit()
            return RemoveReport(outcome, stored)

    def listed(self, slug: str, status: str | None = None) -> list[ListedSubscriber]:
        with self.app.session() as session:
            mailing_list = list_row(session, self.app.settings, slug)
            return list(store.list_subscribers(session, mailing_list, status))

    def export(self, slug: str, out: TextIO, status: str | None = None) -> int:
        """Write a list as CSV to `out`, streamed from the database; returns how many rows."""
        with self.app.session() as session:
            mailing_list = list_row(session, self.app.settings, slug)
            return write_csv(session, mailing_list, out, status)

    def record(self, email: str) -> dict[str, Any] | None:
        """Everything stored about a person; None when nothing is (see `was_forgotten`)."""
        with self.app.session() as session:
            return store.record_of(session, email)

    def was_forgotten(self, email: str) -> bool:
        with self.app.session() as session:
            return store.was_forgotten(session, email)

    def unforget(self, email: str) -> bool:
        """Let a forgotten address be added again (the person asked); False if it was not."""
        with self.app.session() as session:
            lifted = lifecycle.unforget(session, email)
            session.commit()
        return lifted

    def forget(self, email: str) -> bool:
        """Erase a person for good, keeping only a hash so they are never re-added."""
        with self.app.session() as session:
            forgotten = lifecycle.forget(session, email)
            session.commit()
        compact_after_erasure(self.app.database.engine)
        return forgotten


class ConfirmationMailer:
    """The default `confirmation_needed` hook: one signed confirmation link per pending
    subscription, mailed over one transport."""

    def __init__(self, app: Newsletter) -> None:
        self.app = app

    def __call__(self, pending: list[PendingConfirmation]) -> int:
        if not pending:
            return 0
        settings = self.app.settings
        publication = settings.publication
        key = self.app.signing_key(for_mail=True)
        transport = self.app.transports().factory()
        sent = 0
        try:
            for item in pending:
                address = ascii_address(item.email)
                if item.kind == "reminder":
                    mail = render_already_subscribed(
                        settings,
                        list_name=item.list_name,
                        email=item.email,
                        preferences_url=preferences_url(settings, key, item.subscriber_id),
                    )
                else:
                    mail = render_confirmation(
                        settings,
                        list_name=item.list_name,
                        email=item.email,
                        confirm_url=confirm_url(settings, key, item.list_id, item.subscriber_id),
                    )
                raw = single_message(
                    sender=publication.from_,
                    to=Address(display_name=single_line(item.name), addr_spec=address),
                    subject=mail.subject,
                    text=mail.text,
                    html_body=mail.html,
                    message_id_domain=publication.domain,
                    reply_to=publication.reply_to,
                )
                try:
                    transport.send(Envelope(publication.from_address, address), raw)
                    sent += 1
                except DeliveryRefused:
                    continue  # they stay pending; adding them again resends
        finally:
            transport.close()
        return sent
