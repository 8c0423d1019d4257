"""Signing up from the web form: pending until the button behind the mailed link is pressed,
whatever the list's double_opt_in; the same answer whatever the address; mailed at most once a
day; deleted when never confirmed. The form's bot gate (web/antibot.py) runs before this.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Literal

from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, delete

from newsletter.audience import choices, consent, lifecycle, signups, store
from newsletter.audience.addresses import normalize_email
from newsletter.audience.signups import SignupOutcome
from newsletter.audience.tokens import (
    preferences_url,
    verify_confirm_token,
)
from newsletter.db import list_row
from newsletter.errors import BadToken, NewsletterError
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


class SignupService:
    def __init__(self, app: Newsletter) -> None:
        self.app = app

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
        chosen = self.app.preferences.normalise_themes(themes)
        to_mail: list[PendingConfirmation] = []
        record = f"web form {visit.page} ({visit.client or 'no address'}) {now:%Y-%m-%d %H:%M}Z"
        with self.app.session() as session:
            known = store.find(session, address) is not None
            for slug in wanted:
                mailing_list = list_row(session, settings, slug)
                assert mailing_list.id is not None
                outcome, subscriber = signups.web_signup(
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
                signups.confirmation_mailed(session, mailing_list.id, subscriber.id, now)
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
            signups.purge_unconfirmed(
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
                        signups.confirmation_mailed(session, item.list_id, item.subscriber_id, None)
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
            purged = signups.purge_unconfirmed(session, self.app.now() - timedelta(days=days))
            session.commit()
        return purged
