"""Bounces: act on returned mail and complaints, and list what was done."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from sqlmodel import col, select

from newsletter.bounces.imap import ImapBox
from newsletter.bounces.process import LocalBox, ProcessReport, Source, process_mailbox
from newsletter.errors import NewsletterError
from newsletter.models import Bounce, BounceKind, Subscriber

if TYPE_CHECKING:
    from newsletter.app import Newsletter


@dataclass(frozen=True)
class BounceRow:
    email: str
    kind: BounceKind
    reason: str
    status_code: str
    action: str
    received_at: datetime


class BounceService:
    def __init__(self, app: Newsletter) -> None:
        self.app = app

    def process(self, path: Path | None) -> ProcessReport:
        """Read returned mail (a Maildir, an mbox, or with no path the IMAP folder of
        [bounces.imap]) and act on every report tied to a message we sent (see
        newsletter.bounces.process for what ties one)."""
        settings = self.app.settings
        if path is not None:
            box: Source = LocalBox(path)
        else:
            imap = settings.bounces.imap
            if imap is None:
                raise NewsletterError(
                    f"{settings.path}: [bounces.imap] is not set",
                    hint="add host and username (the password goes in NEWSLETTER_IMAP_PASSWORD), "
                    "or give a Maildir or mbox path",
                )
            ca_file = (settings.folder / imap.ca_file).resolve() if imap.ca_file else None
            box = ImapBox(imap, ca_file)
        with self.app.session() as session:
            return process_mailbox(session, settings, self.app.signing_key(), box)

    def recent(self, limit: int = 200) -> list[BounceRow]:
        """The latest bounces and complaints, newest first."""
        with self.app.session() as session:
            rows = session.exec(
                select(Bounce, Subscriber)
                .join(Subscriber, col(Subscriber.id) == Bounce.subscriber_id)
                .order_by(col(Bounce.received_at).desc())
                .limit(limit)
            ).all()
            return [
                BounceRow(
                    subscriber.email,
                    bounce.kind,
                    bounce.reason,
                    bounce.status_code,
                    bounce.action,
                    bounce.received_at,
                )
                for bounce, subscriber in rows
            ]
