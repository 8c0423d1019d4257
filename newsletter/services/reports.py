"""Reports: what the publication looks like now (the database, lists, digests and ledgers)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError
from sqlmodel import col, select

from newsletter.audience.store import list_counts
from newsletter.digest.builder import digest_view
from newsletter.models import Digest, DigestStatus, MailingList
from newsletter.send.ledger import ledger_counts

if TYPE_CHECKING:
    from newsletter.app import Newsletter


@dataclass(frozen=True)
class InitReport:
    database_url: str  # its password masked
    feeds: int
    lists: int
    key_origin: str  # "environment" or the path of the development key file


@dataclass(frozen=True)
class ListSummary:
    slug: str
    name: str
    double_opt_in: bool
    counts: dict[str, int]


@dataclass(frozen=True)
class DigestStatusRow:
    digest_id: int
    list_slug: str
    subject: str
    status: DigestStatus
    briefings: int
    counts: dict[str, int]


def shown_url(url: str) -> str:
    """A database URL fit to print: its password, if it has one, masked."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return url


class ReportService:
    def __init__(self, app: Newsletter) -> None:
        self.app = app

    def database_ready(self) -> InitReport:
        """Open the database (creating or upgrading its schema) and say what it holds."""
        settings = self.app.settings
        self.app.database  # noqa: B018 (opening it creates or upgrades the schema)
        return InitReport(
            shown_url(settings.database_url),
            len(settings.feeds),
            len(settings.lists),
            self.app.signing_key().origin,
        )

    def lists(self) -> list[ListSummary]:
        """Every list of config.toml with how many subscriptions are in each status."""
        with self.app.session() as session:
            counts = list_counts(session)
            rows = {row.slug: row for row in session.exec(select(MailingList)).all()}
        return [
            ListSummary(
                declared.slug,
                declared.name,
                declared.double_opt_in,
                dict(counts.get(rows[declared.slug].id or 0, {})),
            )
            for declared in self.app.settings.lists
        ]

    def digests(self, slug: str | None = None) -> list[DigestStatusRow]:
        """Every digest (of one list, or all) with its ledger counts."""
        rows: list[DigestStatusRow] = []
        with self.app.session() as session:
            query = select(Digest, MailingList).join(MailingList).order_by(col(Digest.id))
            if slug:
                self.app.settings.mailing_list(slug)
                query = query.where(MailingList.slug == slug)
            for digest, mailing_list in session.exec(query).all():
                assert digest.id is not None
                briefings = len(digest_view(session, digest).briefings)
                rows.append(
                    DigestStatusRow(
                        digest.id,
                        mailing_list.slug,
                        digest.subject,
                        digest.status,
                        briefings,
                        ledger_counts(session, digest.id),
                    )
                )
        return rows
