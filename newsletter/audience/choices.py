"""What a reader chose beside their subscriptions: the themes they receive and their name."""

from __future__ import annotations

from sqlmodel import Session

from newsletter.audience.csv_io import MAX_NAME
from newsletter.feeds.sanitize import visible_line
from newsletter.models import Subscriber, utcnow


def choose_themes(session: Session, subscriber_id: int, themes: list[str] | None) -> bool:
    """What a reader receives: these themes, or every theme (None); True if it changed."""
    subscriber = session.get(Subscriber, subscriber_id)
    if subscriber is None or subscriber.themes == themes:
        return False
    subscriber.themes = themes
    subscriber.updated_at = utcnow()
    session.add(subscriber)
    return True


def rename(session: Session, subscriber_id: int, name: str) -> bool:
    subscriber = session.get(Subscriber, subscriber_id)
    cleaned = visible_line(name)[:MAX_NAME]  # a reader's name reaches the To: header
    if subscriber is None or subscriber.name == cleaned:
        return False
    subscriber.name, subscriber.updated_at = cleaned, utcnow()
    session.add(subscriber)
    return True
