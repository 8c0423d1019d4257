"""The reader's own side: signing up from the web form, and the preference centre reached from
every digest (themes, lists, name, leave everything, download my data, delete me).

Everything a stranger sends is checked before it gets here (web/antibot.py); what happens here
is the same whatever the address was, so the form cannot tell who reads. Every change a reader
makes is recorded in their consent history (audience/consent.py).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Literal

from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, delete, select

from newsletter.audience import choices, consent, lifecycle, store
from newsletter.audience.addresses import normalize_email
from newsletter.audience.lifecycle import SignupOutcome
from newsletter.audience.tokens import (
    preferences_url,
    verify_confirm_token,
    verify_preferences_token,
)
from newsletter.db import compact_after_erasure, list_row
from newsletter.digest.themes import ThemeMatcher
from newsletter.errors import BadToken, NewsletterError, ReaderGone
from newsletter.models import (
    MailingList,
    Subscriber,
    SubscriberStatus,
    Subscription,
    SubscriptionStatus,
    UsedFormToken,
)
from newsletter.services.subscribers import ConfirmationMailer, PendingConfirmation

if TYPE_CHECKING:
    from newsletter.app import Newsletter


@dataclass(frozen=True)
class ListChoice:
    slug: str
    name: str
    description: str
    subscribed: bool


@dataclass(frozen=True)
class ThemeChoice:
    name: str
    received: bool


@dataclass(frozen=True)
class Preferences:
    """What the preference centre shows one reader."""

    email: str
    name: str
    themes: list[ThemeChoice]
    chose_themes: bool  # False: never chose, so every theme (all boxes checked)
    lists: list[ListChoice]
    active: bool  # False: bounced or complained; nothing can be joined from here

    @property
    def subscribed_anywhere(self) -> bool:
        return any(choice.subscribed for choice in self.lists)


ConfirmState = Literal["pending", "subscribed", "left"]


@dataclass(frozen=True)
class ConfirmTarget:
    list_name: str
    state: ConfirmState  # left: unsubscribed (or bounced) since; the link cannot bring them back
    preferences_url: str


@dataclass(frozen=True)
class ConfirmedReport:
    list_name: str
    changed: bool
    preferences_url: str
    state: ConfirmState = "subscribed"


@dataclass(frozen=True)
class Visit:
    """Where a request came from, as the consent history keeps it."""

    page: str = ""
    client: str = ""  # already truncated (consent.client_network)


class PreferenceService:
    def __init__(self, app: Newsletter) -> None:
        self.app = app

    @property
    def theme_names(self) -> list[str]:
        settings = self.app.settings
        return ThemeMatcher(settings.themes, settings.digest.fallback_theme).names

    def normalise_themes(self, chosen: list[str]) -> list[str] | None:
        """The themes worth storing: known names, in config order; every theme (or none)
        means "every theme", stored as None so that new themes reach the reader too."""
        known = self.theme_names
        picked = [name for name in known if name in set(chosen)]
        if not picked or len(picked) == len(known):
            return None
        return picked

    # --- signing up -------------------------------------------------------------------------

    def spend_form_token(self, nonce: str) -> bool:
        """Mark a signup form's token used; False if it was used before (a replay)."""
        now = self.app.now()
        with self.app.session() as session:
            horizon = now - timedelta(hours=self.app.settings.signup.max_age_hours + 1)
            session.exec(delete(UsedFormToken).where(col(UsedFormToken.used_at) < horizon))
            session.add(UsedFormToken(nonce=nonce, used_at=now))
            try:
                session.commit()
            except IntegrityError:
                session.rollback()
                return False
        return True

    def signup(
        self, email: str, slugs: list[str], themes: list[str], visit: Visit
    ) -> list[PendingConfirmation]:
        """Sign an address up for public lists: each subscription stays pending until the link
        in the mail is followed. Returns what was mailed (never shown to the visitor).

        The themes are kept only for an address we did not know: a stranger must not change
        what an existing reader receives."""
        settings, now = self.app.settings, self.app.now()
        public = {mailing_list.slug for mailing_list in settings.public_lists}
        wanted = [slug for slug in dict.fromkeys(slugs) if slug in public]
        address = normalize_email(email)
        chosen = self.normalise_themes(themes)
        to_mail: list[PendingConfirmation] = []
        record = f"web form {visit.page} ({visit.client or 'no address'}) {now:%Y-%m-%d %H:%M}Z"
        with self.app.session() as session:
            known = store.find(session, address) is not None
            for slug in wanted:
                mailing_list = list_row(session, settings, slug)
                assert mailing_list.id is not None
                outcome, subscriber = lifecycle.web_signup(
                    session, mailing_list, address, consent=record, now=now
                )
                if subscriber is None or subscriber.id is None:
                    continue
                if not known and chosen is not None:
                    choices.choose_themes(session, subscriber.id, chosen)
                if outcome not in (SignupOutcome.MAIL, SignupOutcome.REMIND):
                    continue
                if outcome == SignupOutcome.MAIL:
                    consent.record(
                        session,
                        subscriber.id,
                        "signup",
                        list_id=mailing_list.id,
                        detail="pending until the link in the mail is followed",
                        origin="web",
                        page=visit.page,
                        client=visit.client,
                        at=now,
                    )
                lifecycle.confirmation_mailed(session, mailing_list.id, subscriber.id, now)
                kind: Literal["confirm", "reminder"] = (
                    "confirm" if outcome == SignupOutcome.MAIL else "reminder"
                )
                to_mail.append(
                    PendingConfirmation(
                        mailing_list.id,
                        mailing_list.name,
                        subscriber.id,
                        subscriber.email,
                        "",
                        kind,
                    )
                )
            lifecycle.purge_unconfirmed(
                session, now - timedelta(days=settings.security.confirm_link_days)
            )
            session.commit()
        if to_mail:
            hook = self.app.hooks.confirmation_needed or ConfirmationMailer(self.app)
            try:
                hook(to_mail)
            except NewsletterError:
                # Not mailed: the next try must not wait a day for the link.
                with self.app.session() as session:
                    for item in to_mail:
                        lifecycle.confirmation_mailed(
                            session, item.list_id, item.subscriber_id, None
                        )
                    session.commit()
                raise
        return to_mail

    def confirm_target(self, token: str) -> ConfirmTarget:
        """What a confirmation link is for, and where that subscription stands now (BadToken
        when the link is not ours or expired)."""
        key = self.app.signing_key()
        list_id, subscriber_id = verify_confirm_token(self.app.settings, key, token)
        with self.app.session() as session:
            name, state = self._confirm_state(session, list_id, subscriber_id)
        return ConfirmTarget(name, state, preferences_url(self.app.settings, key, subscriber_id))

    def _confirm_state(
        self, session: Session, list_id: int, subscriber_id: int
    ) -> tuple[str, ConfirmState]:
        mailing_list = session.get(MailingList, list_id)
        subscriber = session.get(Subscriber, subscriber_id)
        subscription = session.get(Subscription, (list_id, subscriber_id))
        if mailing_list is None or subscriber is None or subscription is None:
            raise BadToken("this link is not valid")
        if subscription.status == SubscriptionStatus.PENDING:
            return mailing_list.name, "pending"
        if (
            subscription.status == SubscriptionStatus.ACTIVE
            and subscriber.status == SubscriberStatus.ACTIVE
        ):
            return mailing_list.name, "subscribed"
        return mailing_list.name, "left"

    def confirm(self, token: str, visit: Visit) -> ConfirmedReport:
        """The button on the confirmation page: the subscription becomes active."""
        key = self.app.signing_key()
        list_id, subscriber_id = verify_confirm_token(self.app.settings, key, token)
        with self.app.session() as session:
            name, state = self._confirm_state(session, list_id, subscriber_id)
            changed = state == "pending" and lifecycle.confirm(session, list_id, subscriber_id)
            if changed:
                state = "subscribed"
                consent.record(
                    session,
                    subscriber_id,
                    "confirm",
                    list_id=list_id,
                    origin="web",
                    page=visit.page,
                    client=visit.client,
                    at=self.app.now(),
                )
            session.commit()
        return ConfirmedReport(
            name, changed, preferences_url(self.app.settings, key, subscriber_id), state
        )

    def purge_unconfirmed(self) -> int:
        """Drop signups nobody confirmed within `[security] confirm_link_days`."""
        days = self.app.settings.security.confirm_link_days
        with self.app.session() as session:
            purged = lifecycle.purge_unconfirmed(session, self.app.now() - timedelta(days=days))
            session.commit()
        return purged

    # --- the preference centre --------------------------------------------------------------

    def reader(self, token: str) -> int:
        """The reader a preferences link is for (BadToken when it is not ours, or they were
        forgotten)."""
        subscriber_id = verify_preferences_token(self.app.signing_key(), token)
        with self.app.session() as session:
            if session.get(Subscriber, subscriber_id) is None:
                raise ReaderGone("nothing is stored about this reader")
        return subscriber_id

    def view(self, token: str) -> Preferences:
        subscriber_id = self.reader(token)
        with self.app.session() as session:
            return self._preferences(session, subscriber_id)

    def _preferences(self, session: Session, subscriber_id: int) -> Preferences:
        subscriber = session.get(Subscriber, subscriber_id)
        if subscriber is None:
            raise BadToken("this link is not valid")
        statuses = {
            subscription.list_id: subscription.status
            for subscription in session.exec(
                select(Subscription).where(col(Subscription.subscriber_id) == subscriber_id)
            ).all()
        }
        rows = {row.slug: row for row in session.exec(select(MailingList)).all()}
        lists = []
        for configured in self.app.settings.lists:
            row = rows.get(configured.slug)
            status = statuses.get(row.id) if row is not None and row.id is not None else None
            subscribed = status in (SubscriptionStatus.ACTIVE, SubscriptionStatus.PENDING)
            if configured.public or subscribed:
                lists.append(
                    ListChoice(configured.slug, configured.name, configured.description, subscribed)
                )
        chosen = subscriber.themes
        themes = [ThemeChoice(name, chosen is None or name in chosen) for name in self.theme_names]
        return Preferences(
            email=subscriber.email,
            name=subscriber.name,
            themes=themes,
            chose_themes=chosen is not None,
            lists=lists,
            active=subscriber.status == SubscriberStatus.ACTIVE,
        )

    def save(
        self, token: str, *, themes: list[str], lists: list[str], name: str, visit: Visit
    ) -> Preferences:
        """One save of the preference centre's form: themes, lists and name, each change
        recorded. Lists not offered on the page are left as they are."""
        subscriber_id = self.reader(token)
        settings, now = self.app.settings, self.app.now()
        chosen = self.normalise_themes(themes)
        with self.app.session() as session:

            def note(action: str, list_id: int | None = None, detail: str = "") -> None:
                consent.record(
                    session,
                    subscriber_id,
                    action,
                    list_id=list_id,
                    detail=detail,
                    origin="preferences",
                    page=visit.page,
                    client=visit.client,
                    at=now,
                )

            before = self._preferences(session, subscriber_id)
            if not themes:  # no box ticked is not a choice: leaving is its own button
                chosen = before_themes(before)
            if choices.choose_themes(session, subscriber_id, chosen):
                detail = "every theme" if chosen is None else "; ".join(chosen)
                note("themes", detail=detail)
            if choices.rename(session, subscriber_id, name):
                note("name", detail="changed")
            wanted = set(lists)
            for choice in before.lists:
                mailing_list = list_row(session, settings, choice.slug)
                assert mailing_list.id is not None
                if choice.slug in wanted and not choice.subscribed and before.active:
                    changed = lifecycle.join(session, mailing_list, subscriber_id, now)
                    action = "join"
                elif choice.slug not in wanted and choice.subscribed:
                    changed = lifecycle.unsubscribe(
                        session,
                        mailing_list.id,
                        subscriber_id,
                        origin="preferences",
                        reason="preference centre",
                    )
                    action = "unsubscribe"
                else:
                    continue
                if changed:
                    note(action, mailing_list.id)
            session.commit()
            return self._preferences(session, subscriber_id)

    def unsubscribe_everywhere(self, token: str, visit: Visit) -> int:
        """Leave every list at once; returns how many subscriptions ended."""
        subscriber_id = self.reader(token)
        now = self.app.now()
        left = 0
        with self.app.session() as session:
            for subscription in session.exec(
                select(Subscription).where(col(Subscription.subscriber_id) == subscriber_id)
            ).all():
                if lifecycle.unsubscribe(
                    session,
                    subscription.list_id,
                    subscriber_id,
                    origin="preferences",
                    reason="preference centre: everything",
                ):
                    left += 1
                    consent.record(
                        session,
                        subscriber_id,
                        "unsubscribe",
                        list_id=subscription.list_id,
                        origin="preferences",
                        page=visit.page,
                        client=visit.client,
                        at=now,
                    )
            session.commit()
        return left

    def data(self, token: str) -> str:
        """Everything stored about the reader, as `subscribers show` has it, as JSON."""
        subscriber_id = self.reader(token)
        with self.app.session() as session:
            subscriber = session.get(Subscriber, subscriber_id)
            assert subscriber is not None
            record: dict[str, Any] | None = store.record_of(session, subscriber.email)
        return json.dumps(record, indent=2, default=str, ensure_ascii=False)

    def forget(self, token: str) -> None:
        """Delete the reader for good (as `subscribers forget`): only a hash of the address is
        kept, so that no import adds them again."""
        subscriber_id = self.reader(token)
        with self.app.session() as session:
            subscriber = session.get(Subscriber, subscriber_id)
            assert subscriber is not None
            lifecycle.forget(session, subscriber.email)
            session.commit()
        compact_after_erasure(self.app.database.engine)

    def link(self, subscriber_id: int) -> str:
        return preferences_url(self.app.settings, self.app.signing_key(), subscriber_id)


def before_themes(preferences: Preferences) -> list[str] | None:
    if not preferences.chose_themes:
        return None
    return [choice.name for choice in preferences.themes if choice.received]
