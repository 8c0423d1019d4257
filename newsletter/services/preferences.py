"""The preference centre reached from every digest: themes, lists, name, leave everything,
download my data, delete me. Every change a reader makes is recorded in their consent history
(audience/consent.py). Signing up is services/signup.py.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlmodel import Session, col, select

from newsletter.audience import choices, consent, lifecycle, store
from newsletter.audience.tokens import (
    preferences_url,
    verify_preferences_token,
)
from newsletter.db import compact_after_erasure, list_row
from newsletter.digest.themes import ThemeMatcher
from newsletter.errors import BadToken, ReaderGone
from newsletter.models import (
    MailingList,
    Subscriber,
    SubscriberStatus,
    Subscription,
    SubscriptionStatus,
)
from newsletter.services.signup import Visit

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
