"""Sending: deliver a list's digest once to every active reader (`send`), join sends in
progress (`work`), mail one test copy outside the ledger (`send_test`)."""

from __future__ import annotations

import subprocess
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from newsletter.audience.addresses import ascii_address, normalize_email
from newsletter.audience.store import active_count
from newsletter.audience.tokens import SigningKey, preferences_url, signing_key, unsubscribe_url
from newsletter.config import Settings
from newsletter.db import list_row
from newsletter.digest.builder import build_digest, digest_view, next_pin, pending_digest
from newsletter.errors import DeliveryRefused, NewsletterError
from newsletter.models import DeliveryStatus, Digest, DigestEdition, DigestStatus, MailingList
from newsletter.personalize import Markers, Recipient
from newsletter.render.templating import RenderedDigest, compile_templates, render_digest
from newsletter.send.dispatch import Dispatcher
from newsletter.send.dkim import DkimSigner
from newsletter.send.ledger import (
    OPEN_STATUSES,
    ProgressCallback,
    Reader,
    RetryPolicy,
    SendSummary,
    digests_with_deferrals,
    give_up_stale_deferrals,
    ledger_counts,
    snapshot_audience,
    theme_choices,
    themes_skipped,
)
from newsletter.send.message import Envelope, PreparedMessage
from newsletter.send.ratelimit import RateLimiter

if TYPE_CHECKING:
    from newsletter.app import Newsletter

# A test copy says so in the inbox, where it sits beside the real issue.
TEST_COPY_MARK = "[Test] "


@dataclass
class SendReport:
    list_slug: str
    digest_id: int | None = None
    subject: str = ""
    audience: int = 0  # deliveries this run works on
    destination: str = ""
    summary: SendSummary = field(default_factory=SendSummary)
    resumed: bool = False
    dry_run: bool = False
    no_audience: bool = False
    retried_digests: list[int] = field(default_factory=list)
    given_up: int = 0
    skipped_themes: int = 0  # readers of the digest not mailed: nothing new in their themes

    @property
    def nothing_new(self) -> bool:
        return self.digest_id is None and not self.no_audience


@dataclass(frozen=True)
class CopyReport:
    subject: str
    sent_at: datetime | None  # nothing new: the copy is of the list's last digest, sent then


class SendingService:
    def __init__(self, app: Newsletter) -> None:
        self.app = app

    def send(
        self,
        slug: str,
        *,
        dry_run: bool = False,
        progress: ProgressCallback | None = None,
        on_start: Callable[[SendReport], None] | None = None,
        stop: threading.Event | None = None,
        retry: RetryPolicy | None = None,
        workers: int = 1,
        force: bool = False,
    ) -> SendReport:
        """Retry earlier deferrals, then build the digest if none is pending and deliver it
        once.

        With `workers` > 1 on PostgreSQL, that many processes share the ledger (this one and
        `newsletter worker` children); on SQLite, one process uses that many times the
        connections. A new digest is only built when the list has active subscribers:
        otherwise its briefings wait for the next send instead of being used up on nobody.
        A new digest that fails the offline preflight (`app.check`) is refused unless `force`.
        """
        app, settings = self.app, self.app.settings
        database = app.database
        transports = app.transports()
        report = SendReport(slug, destination=transports.description, dry_run=dry_run)
        key = app.signing_key(for_mail=not dry_run)
        jobs: list[tuple[int, PreparedMessage]] = []
        with database.session() as session:
            mailing_list = list_row(session, settings, slug)
            list_id = mailing_list.id
            assert list_id is not None
            if not dry_run:
                give_up_after = timedelta(days=settings.delivery.give_up_after_days)
                for earlier in digests_with_deferrals(session, list_id):
                    report.given_up += give_up_stale_deferrals(session, earlier, give_up_after)
                    if ledger_counts(session, earlier.id or 0).get(DeliveryStatus.DEFERRED):
                        message = prepare_message(settings, earlier, mailing_list)
                        jobs.append((earlier.id or 0, message))
                        report.retried_digests.append(earlier.id or 0)
            digest = pending_digest(session, mailing_list)
            report.resumed = digest is not None
            pin = next_pin(session, mailing_list)  # building uses it up; the editions need it
            choices: dict[str | None, int] | None = None
            if digest is None and active_count(session, list_id) == 0:
                report.no_audience = True
            elif digest is None:
                if not dry_run:
                    # Read and compiled before the build writes: on SQLite, its write lock is
                    # then held until the audience is queued, and readers' unsubscribes wait.
                    choices = theme_choices(session, list_id)
                    compile_templates(settings)
                try:
                    digest = build_digest(session, settings, mailing_list, app.now())
                except IntegrityError:  # its flush lost a race for the same briefings
                    raise NewsletterError(
                        f"another `newsletter send` is building a digest of {slug} right now",
                        hint="wait for it to finish; nobody is mailed twice",
                    ) from None
                if digest is not None and not dry_run:
                    try:
                        app.desk.check_approved(session, mailing_list, digest)
                    except NewsletterError:
                        session.rollback()  # nothing built, the pin and the note kept
                        raise
            if digest is not None:
                assert digest.id is not None
                report.digest_id, report.subject = digest.id, digest.subject
                if dry_run:
                    app.digests.rendered(session, digest)
                    report.audience = active_count(session, list_id)
                    session.rollback()
                    return report
                if digest.status == DigestStatus.DRAFT:
                    view = digest_view(session, digest)
                    rendered = render_digest(view, settings)
                    digest.html, digest.text = rendered.html, rendered.text
                    if not report.resumed and not force:
                        message = prepare_message(settings, digest, mailing_list)
                        try:
                            app.check.before_send(slug, view, rendered, message)
                        except NewsletterError:
                            session.rollback()  # nothing built: fix it and send again
                            raise
                    if choices is None:  # a draft resumed
                        choices = theme_choices(session, list_id)
                    editions = app.digests.store_editions(session, digest, choices, pin)
                    snapshot_audience(session, digest, editions)
                jobs.append((digest.id, prepare_message(settings, digest, mailing_list)))
            session.rollback()
            for digest_id, _ in jobs:
                counts = ledger_counts(session, digest_id)
                report.audience += sum(counts.get(status, 0) for status in OPEN_STATUSES)
            if report.digest_id is not None:
                report.skipped_themes = themes_skipped(session, report.digest_id)
        if not jobs:
            return report
        if on_start:
            on_start(report)
        children = []
        if workers > 1 and database.engine.dialect.name == "postgresql":
            children = [start_worker(settings, slug) for _ in range(workers - 1)]
            workers = 1
        try:
            for digest_id, message in jobs:
                dispatcher = self.dispatcher(
                    key, digest_id, list_id, message, retry, progress, stop, workers
                )
                report.summary.add(dispatcher.run())
                if stop is not None and stop.is_set():
                    break
        finally:
            for child in children:
                child.wait()
        if children:
            # Every process sent its share: the ledger holds the totals.
            with database.session() as session:
                report.summary = summary_from_ledger(
                    session, [d for d, _ in jobs], report.summary.stopped_early
                )
        return report

    def work(self, slug: str | None = None, *, stop: threading.Event | None = None) -> SendSummary:
        """Join every send in progress (of one list, or all) until none has work left."""
        settings = self.app.settings
        key = self.app.signing_key(for_mail=True)
        summary = SendSummary()
        with self.app.session() as session:
            query = (
                select(Digest, MailingList)
                .join(MailingList)
                .where(Digest.status == DigestStatus.SENDING)
                .order_by(col(Digest.id))
            )
            if slug:
                query = query.where(MailingList.slug == slug)
            jobs = [
                (
                    digest.id or 0,
                    mailing_list.id or 0,
                    prepare_message(settings, digest, mailing_list),
                )
                for digest, mailing_list in session.exec(query).all()
            ]
        for digest_id, list_id, message in jobs:
            dispatcher = self.dispatcher(key, digest_id, list_id, message, None, None, stop, 1)
            summary.add(dispatcher.run())
            if stop is not None and stop.is_set():
                break
        return summary

    def dispatcher(
        self,
        key: SigningKey,
        digest_id: int,
        list_id: int,
        message: PreparedMessage,
        retry: RetryPolicy | None,
        progress: ProgressCallback | None,
        stop: threading.Event | None,
        concurrency_factor: int,
    ) -> Dispatcher:
        settings = self.app.settings
        transports = self.app.transports()
        signer = dkim_signer(settings)
        smtp = settings.delivery.transport == "smtp"
        return Dispatcher(
            self.app.database,
            digest_id,
            list_id,
            message,
            envelope_sender=envelope_sender(settings, key, digest_id),
            transport_factory=transports.factory,
            recipient=lambda subscriber: recipient_for(settings, key, list_id, subscriber),
            concurrency=transports.concurrency * concurrency_factor,
            retry=retry or retry_policy(settings),
            progress=progress,
            stop=stop,
            signer=signer.sign if signer else None,
            rate_limiter=RateLimiter(settings.smtp.rate_per_second if smtp else 0),
            editions=self.edition_message,
            pool=transports.pool,
        )

    def edition_message(self, edition_id: int) -> PreparedMessage:
        """The message of a stored edition, as it was rendered when its digest left draft."""
        with self.app.session() as session:
            edition = session.get(DigestEdition, edition_id)
            assert edition is not None
            digest = session.get(Digest, edition.digest_id)
            assert digest is not None
            mailing_list = session.get(MailingList, digest.list_id)
            assert mailing_list is not None
            return prepare_message(self.app.settings, digest, mailing_list, edition=edition)

    def send_test(self, slug: str, address: str, *, dry_run: bool = False) -> CopyReport | None:
        """Mail one copy of the next digest (or, when nothing is new, of the last one) to an
        address, outside the ledger; None when the list never had a digest and nothing is new.

        A dry run renders the copy and sends nothing."""
        settings = self.app.settings
        to = ascii_address(normalize_email(address))
        current = self.app.digests.draft(slug, or_last_sent=True, subject_prefix=TEST_COPY_MARK)
        if current is None:
            return None
        copy = CopyReport(current.view.subject, current.sent_at)
        raw = current.message.render(self.app.digests.sample_recipient(to))
        if dry_run:
            return copy
        signer = dkim_signer(settings)
        transport = self.app.transports().factory()
        try:
            transport.send(
                Envelope(settings.publication.from_address, to),
                signer.sign(raw) if signer else raw,
            )
        except DeliveryRefused as refused:
            raise NewsletterError(f"the test copy to {to} was refused: {refused.message}") from None
        finally:
            transport.close()
        return copy


def start_worker(settings: Settings, slug: str | None = None) -> subprocess.Popen[bytes]:
    """A `newsletter worker` process with the same config, joining the sends in progress."""
    command = [sys.executable, "-m", "newsletter", "--config", str(settings.path), "worker"]
    if slug:
        command += ["--list", slug]
    return subprocess.Popen(command, stdout=subprocess.DEVNULL)  # noqa: S603 (our own CLI)


def summary_from_ledger(
    session: Session, digest_ids: list[int], stopped_early: bool
) -> SendSummary:
    totals = SendSummary(stopped_early=stopped_early)
    for digest_id in digest_ids:
        counts = ledger_counts(session, digest_id)
        totals.sent += counts.get(DeliveryStatus.SENT, 0)
        totals.failed += counts.get(DeliveryStatus.FAILED, 0)
        totals.deferred += counts.get(DeliveryStatus.DEFERRED, 0)
    return totals


def retry_policy(settings: Settings) -> RetryPolicy:
    delivery = settings.delivery
    return RetryPolicy(
        max_attempts=delivery.max_attempts,
        base_delay=delivery.retry_base_seconds,
        lease_seconds=delivery.claim_lease_seconds,
    )


def envelope_sender(
    settings: Settings, key: SigningKey, digest_id: int
) -> Callable[[Recipient], str]:
    """The return path: VERP (bounces+<signed digest.subscriber>@bounce_domain) when configured."""
    publication = settings.publication
    if not publication.bounce_domain:
        sender = publication.from_address  # parsed once, not for every reader
        return lambda _recipient: sender
    domain = publication.bounce_domain
    return lambda recipient: (
        f"bounces+{key.sign('bounce', digest_id, recipient.subscriber_id)}@{domain}"
    )


def dkim_signer(settings: Settings) -> DkimSigner | None:
    if settings.dkim is None or settings.dkim_key_file is None:
        return None
    return DkimSigner(settings.dkim.domain, settings.dkim.selector, settings.dkim_key_file)


def prepare_message(
    settings: Settings,
    digest: Digest,
    mailing_list: MailingList,
    subject_prefix: str = "",
    *,
    edition: DigestEdition | RenderedDigest | None = None,
) -> PreparedMessage:
    """The message of a digest, or with `edition` of one of its editions (or of a rendering
    not stored): the digest's markers and headers either way."""
    publication = settings.publication
    rendered = edition or digest
    key = signing_key(settings)  # the key of the app's links, from the environment or its file
    return PreparedMessage(
        sender=publication.from_,
        subject=subject_prefix + rendered.subject,
        text=rendered.text,
        html_body=rendered.html,
        list_id=f"{mailing_list.name} <{mailing_list.slug}.{publication.domain}>",
        message_id_domain=publication.domain,
        markers=Markers(digest.nonce),
        reply_to=publication.reply_to,
        unsubscribe_mailto=publication.unsubscribe_mailto,
        extra_headers={
            "Feedback-ID": f"{digest.id}:{mailing_list.slug}:digest:{publication.domain}"
        },
        message_id_tag=lambda local: key.tag("message-id", local),
    )


def recipient_for(
    settings: Settings, key: SigningKey, list_id: int, subscriber: Reader
) -> Recipient:
    return Recipient(
        subscriber.id,
        ascii_address(subscriber.email),
        subscriber.name,
        unsubscribe_url(settings, key, list_id, subscriber.id),
        preferences_url(settings, key, subscriber.id),
    )
