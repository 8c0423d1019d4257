"""The one place that wires the stages and the concrete transports together. The CLI calls these."""

from __future__ import annotations

import getpass
import os
import socket
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import (
    Executor,
    Future,
    ProcessPoolExecutor,
    ThreadPoolExecutor,
    as_completed,
)
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from email.utils import formataddr
from html import escape as escape_html
from pathlib import Path
from typing import Any, TextIO, TypeVar

from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, func, select

from newsletter.audience import subscribers as audience
from newsletter.audience.addresses import ascii_address, normalize_email
from newsletter.audience.tokens import (
    PREVIEW_UNSUBSCRIBE_PATH,
    BadToken,
    SigningKey,
    confirm_url,
    signing_key,
    unsubscribe_url,
    verify_confirm_token,
)
from newsletter.bounces.imap import ImapBox
from newsletter.bounces.process import LocalBox, ProcessReport, Source, process_mailbox
from newsletter.config import Settings, smtp_password
from newsletter.db import (
    Database,
    DriverConnection,
    compact_after_erasure,
    list_row,
    sync_config,
)
from newsletter.digest.builder import (
    DigestView,
    build_digest,
    candidate_briefings,
    digest_view,
    pending_digest,
)
from newsletter.errors import DeliveryRefused, FeedError, NewsletterError
from newsletter.feeds.clean import CleanEntry, prepare_entries
from newsletter.feeds.fetch import FetchResult, HttpClient, fetch, http_client
from newsletter.feeds.ingest import IngestCounts, record_fetch, store_entries
from newsletter.feeds.processes import parser_context, start_fork_server
from newsletter.models import (
    Bounce,
    Briefing,
    DeliveryStatus,
    Digest,
    DigestItem,
    DigestPin,
    DigestStatus,
    Feed,
    MailingList,
    Subscriber,
    Subscription,
    SubscriptionStatus,
    utcnow,
)
from newsletter.personalize import Markers, Recipient
from newsletter.render.templating import RenderedDigest, render_confirmation, render_digest
from newsletter.send.dispatch import (
    Dispatcher,
    ProgressCallback,
    Reader,
    RetryPolicy,
    SendSummary,
    digests_with_deferrals,
    give_up_stale_deferrals,
    ledger_counts,
    snapshot_audience,
)
from newsletter.send.dkim import DkimSigner
from newsletter.send.maildir import MaildirTransport
from newsletter.send.message import Envelope, PreparedMessage, single_message
from newsletter.send.ratelimit import RateLimiter
from newsletter.send.smtp import SmtpTransport
from newsletter.send.transport import Transport

T = TypeVar("T")


@contextmanager
def database_session(settings: Settings) -> Iterator[Session]:
    """A session on a database opened for one command, and closed with it."""
    database = open_database(settings)
    try:
        with database.session() as session:
            yield session
    finally:
        database.dispose()


def open_database(settings: Settings) -> Database:
    """Open (creating when missing) the database and bring feeds and lists in line with config."""
    database = Database(settings)
    sync_config(database)
    return database


# -- init ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class InitReport:
    database_url: str
    feeds: int
    lists: int
    key_origin: str


def initialize(settings: Settings) -> InitReport:
    database = open_database(settings)
    database.dispose()
    return InitReport(
        settings.database_url,
        len(settings.feeds),
        len(settings.lists),
        signing_key(settings).origin,
    )


# -- fetch --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FeedReport:
    name: str
    status: str  # "ok" | "not modified" | "gone" | "error"
    counts: IngestCounts = field(default_factory=IngestCounts)
    error: str = ""


def fetch_feeds(
    settings: Settings, on_feed: Callable[[FeedReport], None] | None = None
) -> list[FeedReport]:
    """Fetch every feed of config.toml at once (bounded), parse in worker processes, store.

    One bad feed is reported and never stops the others; each entry is committed as stored.
    """
    order = {source.name: index for index, source in enumerate(settings.feeds)}
    reports: dict[str, FeedReport] = {}

    def report(feed: Feed, outcome: FeedReport) -> None:
        feed.last_fetched_at = utcnow()
        feed.last_error = outcome.error or None
        record_fetch(store, feed)
        reports[feed.name] = outcome
        if on_feed:
            on_feed(outcome)

    with ExitStack() as resources:
        parsers = resources.enter_context(_parser_pool(settings, len(settings.feeds)))
        client_ready: Future[HttpClient] = Future()
        resources.callback(_close_when_made, client_ready)  # after the downloads have ended
        downloads = resources.enter_context(ThreadPoolExecutor(settings.fetch.concurrency, "fetch"))
        # Loading the CA certificates lets go of the GIL: it runs beside opening the database.
        downloads.submit(_settle, client_ready, http_client, settings.fetch.timeout)
        database = open_database(settings)
        resources.callback(database.dispose)
        # Read once: what the fetch learns of each feed is written by record_fetch, a statement
        # on the store connection (a session's flush per feed cost four times as much).
        with database.session() as session:
            feeds = sorted(
                session.exec(
                    select(Feed).where(col(Feed.name).in_(order), col(Feed.disabled).is_(False))
                ).all(),
                key=lambda feed: order[feed.name],
            )
        client = client_ready.result()
        store = resources.enter_context(DriverConnection(database.engine))
        names = [feed.name for feed in feeds]
        fetching = {
            downloads.submit(
                fetch,
                feed.name,
                feed.url,
                client=client,
                etag=feed.etag,
                last_modified=feed.last_modified,
            ): feed
            for feed in feeds
        }
        parsing: dict[Future[list[CleanEntry]], tuple[Feed, FetchResult]] = {}
        for future in as_completed(fetching):
            feed = fetching[future]
            try:
                result = future.result()
            except FeedError as exc:
                report(feed, FeedReport(feed.name, "error", error=str(exc)))
                continue
            if result.moved_to:
                feed.url = result.moved_to
            if result.status == "gone":
                feed.disabled = True
                report(feed, FeedReport(feed.name, "gone", error=GONE))
            elif result.status == "not_modified":
                report(feed, FeedReport(feed.name, "not modified"))
            else:
                job = parsers.submit(
                    prepare_entries, result.content, result.headers, feed.name, result.url
                )
                parsing[job] = (feed, result)
        for job in as_completed(parsing):
            feed, result = parsing[job]
            assert feed.id is not None
            try:
                counts = store_entries(store, feed.id, job.result())
            except FeedError as exc:
                store.rollback()
                report(feed, FeedReport(feed.name, "error", error=str(exc)))
                continue
            except Exception as exc:  # one broken feed must not stop the rest
                store.rollback()
                error = f"feed {feed.name!r}: could not be processed: {exc!r}"
                report(feed, FeedReport(feed.name, "error", error=error))
                continue
            feed.etag, feed.last_modified = result.etag, result.last_modified
            report(feed, FeedReport(feed.name, "ok", counts))
    return [reports[name] for name in names if name in reports]


def _close_when_made(made: Future[HttpClient]) -> None:
    if made.done() and not made.exception():
        made.result().close()


GONE = "the server says the feed is gone (HTTP 410); it is now disabled"


class _InlineExecutor(Executor):
    """Runs jobs at once in this process: for one feed a process pool costs more than it saves."""

    def submit(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> Future[T]:
        return _settle(Future(), fn, *args, **kwargs)


def _settle(future: Future[T], fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> Future[T]:
    """Run fn and put its result, or what it raised, in the future."""
    try:
        future.set_result(fn(*args, **kwargs))
    except BaseException as exc:  # handed to whoever waits on the future
        future.set_exception(exc)
    return future


def _parser_processes(settings: Settings, feeds: int) -> int:
    """How many parser processes: none for one feed or one core, where a pool costs more."""
    workers = settings.fetch.processes or os.cpu_count() or 1
    return 0 if feeds < 2 or workers < 2 else min(workers, feeds)


def _parser_pool(settings: Settings, feeds: int) -> Executor:
    processes = _parser_processes(settings, feeds)
    if not processes:
        return _InlineExecutor()
    start_fork_server()  # unless `newsletter fetch` started it already
    pool = ProcessPoolExecutor(processes, mp_context=parser_context())
    # Starting a process waits for the fork server: done in the background, while the database
    # opens and the feeds download, the processes are up when the first feed arrives.
    threading.Thread(target=_start_processes, args=(pool, processes), daemon=True).start()
    return pool


def _start_processes(pool: ProcessPoolExecutor, processes: int) -> None:
    with suppress(RuntimeError):  # the fetch ended first, and shut the pool down
        for _ in range(processes):
            pool.submit(os.getpid)


@dataclass(frozen=True)
class FeedStatus:
    name: str
    url: str
    disabled: bool
    last_fetched_at: datetime | None
    last_error: str | None
    briefings: int


def feed_statuses(settings: Settings) -> list[FeedStatus]:
    """Every feed of config.toml with its last fetch, last error and briefing count."""
    database = open_database(settings)
    names = [source.name for source in settings.feeds]
    with database.session() as session:
        counts = dict(
            session.exec(
                select(Briefing.feed_id, func.count()).group_by(col(Briefing.feed_id))
            ).all()
        )
        feeds = {
            feed.name: feed
            for feed in session.exec(select(Feed).where(col(Feed.name).in_(names))).all()
        }
    database.dispose()
    return [
        FeedStatus(
            feed.name,
            feed.url,
            feed.disabled,
            feed.last_fetched_at,
            feed.last_error,
            counts.get(feed.id or 0, 0),
        )
        for feed in (feeds[name] for name in names)
    ]


# -- subscribers --------------------------------------------------------------------------------


@dataclass
class SubscribeReport:
    outcome: str  # added | pending | unchanged | suppressed
    email: str  # as stored: the domain lower-cased
    confirmations_sent: int = 0


def import_subscribers(
    settings: Settings, path: Path, slug: str, *, skip_invalid: bool = False
) -> audience.ImportReport:
    """Import a CSV; on a double opt-in list the new subscribers are mailed a confirmation."""
    double_opt_in = settings.mailing_list(slug).double_opt_in
    key = signing_key(settings, for_mail=True) if double_opt_in else None
    with database_session(settings) as session:
        mailing_list = list_row(session, settings, slug)
        report = audience.import_subscribers(
            session,
            mailing_list,
            path,
            double_opt_in=double_opt_in,
            skip_invalid=skip_invalid,
        )
        if key is not None and report.pending:
            _send_confirmations(settings, session, key, mailing_list, report.pending)
    return report


def add_subscriber(settings: Settings, email: str, slug: str, name: str = "") -> SubscribeReport:
    double_opt_in = settings.mailing_list(slug).double_opt_in
    key = signing_key(settings, for_mail=True) if double_opt_in else None
    with database_session(settings) as session:
        mailing_list = list_row(session, settings, slug)
        outcome, subscriber = audience.subscribe(
            session,
            mailing_list,
            email,
            name,
            origin="cli",
            consent=f"cli ({getpass.getuser()}@{socket.gethostname()})",
            double_opt_in=double_opt_in,
        )
        stored = subscriber.email if subscriber else normalize_email(email)
        report = SubscribeReport(outcome, stored)
        if outcome == "pending" and key is not None and subscriber and subscriber.id:
            report.confirmations_sent = _send_confirmations(
                settings, session, key, mailing_list, [subscriber.id]
            )
    return report


def _send_confirmations(
    settings: Settings,
    session: Session,
    key: SigningKey,
    mailing_list: MailingList,
    subscriber_ids: list[int],
) -> int:
    """Mail each pending subscriber a signed confirmation link, over one transport."""
    assert mailing_list.id is not None
    factory, _ = transport_factory(settings)
    transport = factory()
    sent = 0
    try:
        for subscriber_id in subscriber_ids:
            subscriber = session.get(Subscriber, subscriber_id)
            if subscriber is None:
                continue
            address = ascii_address(subscriber.email)
            mail = render_confirmation(
                settings,
                list_name=mailing_list.name,
                email=subscriber.email,
                confirm_url=confirm_url(settings, key, mailing_list.id, subscriber_id),
            )
            raw = single_message(
                sender=settings.publication.from_,
                to=formataddr((subscriber.name, address)),
                subject=mail.subject,
                text=mail.text,
                html_body=mail.html,
                message_id_domain=settings.publication.domain,
                reply_to=settings.publication.reply_to,
            )
            try:
                transport.send(Envelope(settings.publication.from_address, address), raw)
                sent += 1
            except DeliveryRefused:
                continue  # they stay pending; `subscribers add` again resends
    finally:
        transport.close()
    return sent


def confirm_subscription(settings: Settings, token: str) -> tuple[str, bool]:
    """Act on a confirmation link: (list name, whether it changed anything)."""
    database = open_database(settings)
    try:
        return confirm_subscription_in(settings, database, signing_key(settings), token)
    finally:
        database.dispose()


def confirm_subscription_in(
    settings: Settings, database: Database, key: SigningKey, token: str
) -> tuple[str, bool]:
    list_id, subscriber_id = verify_confirm_token(settings, key, token)
    with database.session() as session:
        mailing_list = session.get(MailingList, list_id)
        if mailing_list is None:
            raise BadToken("this link is not valid")
        return mailing_list.name, audience.confirm(session, list_id, subscriber_id)


def remove_subscriber(settings: Settings, email: str, slug: str) -> tuple[str, str]:
    """What happened (unsubscribed, already unsubscribed, not on the list) and the address."""
    with database_session(settings) as session:
        return audience.remove_subscriber(session, list_row(session, settings, slug), email)


def subscriber_rows(
    settings: Settings, slug: str, status: str | None = None
) -> list[audience.ListedSubscriber]:
    with database_session(settings) as session:
        return list(audience.list_subscribers(session, list_row(session, settings, slug), status))


def export_subscribers(
    settings: Settings, slug: str, out: TextIO, status: str | None = None
) -> int:
    """Write a list as CSV to `out`, streamed from the database; returns how many rows."""
    with database_session(settings) as session:
        return audience.write_csv(session, list_row(session, settings, slug), out, status)


def subscriber_record(settings: Settings, email: str) -> dict[str, Any] | None:
    """Everything stored about a person; None when nothing is (see `was_forgotten`)."""
    with database_session(settings) as session:
        return audience.record_of(session, email)


def was_forgotten(settings: Settings, email: str) -> bool:
    with database_session(settings) as session:
        return audience.was_forgotten(session, email)


def forget_subscriber(settings: Settings, email: str) -> bool:
    database = open_database(settings)
    try:
        with database.session() as session:
            forgotten = audience.forget(session, email)
        compact_after_erasure(database.engine)
        return forgotten
    finally:
        database.dispose()


@dataclass(frozen=True)
class ListSummary:
    slug: str
    name: str
    double_opt_in: bool
    counts: dict[str, int]


def list_summaries(settings: Settings) -> list[ListSummary]:
    with database_session(settings) as session:
        counts = audience.list_counts(session)
        rows = {row.slug: row for row in session.exec(select(MailingList)).all()}
    return [
        ListSummary(
            declared.slug,
            declared.name,
            declared.double_opt_in,
            dict(counts.get(rows[declared.slug].id or 0, {})),
        )
        for declared in settings.lists
    ]


def active_count(session: Session, mailing_list: MailingList) -> int:
    return int(
        session.exec(
            select(func.count())
            .select_from(Subscription)
            .join(Subscriber)
            .where(
                Subscription.list_id == mailing_list.id,
                Subscription.status == SubscriptionStatus.ACTIVE,
                Subscriber.status == "active",
            )
        ).one()
    )


def pin_lead(settings: Settings, slug: str, guid: str) -> str:
    """Make a briefing the lead of the list's next digest; returns its title."""
    with database_session(settings) as session:
        mailing_list = list_row(session, settings, slug)
        briefing = session.exec(
            select(Briefing).where(Briefing.guid == guid).order_by(col(Briefing.id).desc())
        ).first()
        if briefing is None or briefing.id is None:
            raise NewsletterError(
                f"no briefing with guid {guid!r}",
                hint="run `newsletter fetch` first; the guid is the feed item's <guid> or <id>",
            )
        assert mailing_list.id is not None
        start, candidates = candidate_briefings(session, settings, mailing_list, utcnow())
        if briefing.id not in {candidate.id for candidate in candidates}:
            raise NewsletterError(_not_pinnable(session, briefing, mailing_list, start))
        pin = session.get(DigestPin, mailing_list.id) or DigestPin(
            list_id=mailing_list.id, briefing_id=briefing.id
        )
        pin.briefing_id = briefing.id
        session.add(pin)
        session.commit()
        return briefing.title


def _not_pinnable(
    session: Session, briefing: Briefing, mailing_list: MailingList, start: datetime
) -> str:
    """Why a briefing cannot lead the list's next digest."""
    sent_in = session.exec(
        select(DigestItem.digest_id).where(
            DigestItem.list_id == mailing_list.id, DigestItem.briefing_id == briefing.id
        )
    ).first()
    if sent_in is not None:
        return f"“{briefing.title}” was already in digest {sent_in} of {mailing_list.slug}"
    return (
        f"“{briefing.title}” ({briefing.published_at:%Y-%m-%d}) is not in the next digest of "
        f"{mailing_list.slug}, which takes briefings from {start:%Y-%m-%d} on that no digest "
        "of the list carried"
    )


# -- preview ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PreviewReport:
    html_path: Path
    text_path: Path
    eml_path: Path
    briefings: int
    web_only: int
    html_bytes: int
    clipped_by_gmail: bool
    sent_at: datetime | None = None  # nothing new: this is the list's last digest, sent then


SAMPLE_EMAIL = "reader@example.com"


@dataclass(frozen=True)
class Draft:
    view: DigestView
    rendered: RenderedDigest
    message: PreparedMessage
    sent_at: datetime | None = None  # set when this is a digest that already went out


def draft(
    settings: Settings, slug: str, *, or_last_sent: bool = False, subject_prefix: str = ""
) -> Draft | None:
    """What `send` would send now, built and rendered but not stored; None if nothing is new.

    With `or_last_sent`, when nothing is new: the list's last digest, as it went out. The
    message's subject starts with `subject_prefix` (a test copy's mark)."""
    with database_session(settings) as session:
        mailing_list = list_row(session, settings, slug)
        digest = pending_digest(session, mailing_list) or build_digest(
            session, settings, mailing_list
        )
        if digest is None and or_last_sent:
            digest = session.exec(
                select(Digest)
                .where(Digest.list_id == mailing_list.id, Digest.status == DigestStatus.SENT)
                .order_by(col(Digest.id).desc())
            ).first()
        if digest is None:
            return None
        rendered = _rendered(session, settings, digest)
        view = digest_view(session, digest)
        digest.html, digest.text = rendered.html, rendered.text
        message = prepare_message(settings, digest, mailing_list, subject_prefix)
        sent_at = digest.sent_at if digest.status == DigestStatus.SENT else None
        session.rollback()
        return Draft(view, rendered, message, sent_at)


def sample_recipient(settings: Settings, email: str = SAMPLE_EMAIL) -> Recipient:
    """Who a preview or a test copy is addressed to; its unsubscribe link leads nowhere."""
    return Recipient(0, email, "", settings.publication.base_url + PREVIEW_UNSUBSCRIBE_PATH)


@dataclass(frozen=True)
class CopyReport:
    subject: str
    sent_at: datetime | None  # nothing new: the copy is of the list's last digest, sent then


# A test copy says so in the inbox, where it sits beside the real issue.
TEST_COPY_MARK = "[Test] "


def send_test(
    settings: Settings, slug: str, address: str, *, dry_run: bool = False
) -> CopyReport | None:
    """Mail one copy of the next digest (or, when nothing is new, of the last one) to an
    address, outside the ledger; None when the list never had a digest and nothing is new.

    A dry run renders the copy and sends nothing."""
    to = ascii_address(normalize_email(address))
    current = draft(settings, slug, or_last_sent=True, subject_prefix=TEST_COPY_MARK)
    if current is None:
        return None
    copy = CopyReport(current.view.subject, current.sent_at)
    raw = current.message.render(sample_recipient(settings, to))
    if dry_run:
        return copy
    signer = dkim_signer(settings)
    factory, _ = transport_factory(settings)
    transport = factory()
    try:
        transport.send(
            Envelope(settings.publication.from_address, to), signer.sign(raw) if signer else raw
        )
    except DeliveryRefused as refused:
        raise NewsletterError(f"the test copy to {to} was refused: {refused.message}") from None
    finally:
        transport.close()
    return copy


def preview(settings: Settings, slug: str, out_dir: Path) -> PreviewReport | None:
    """Render what `send` would send now (when nothing is new, the list's last digest), without
    storing anything; None when the list never had a digest and nothing is new."""
    current = draft(settings, slug, or_last_sent=True)
    if current is None:
        return None
    view, rendered, message = current.view, current.rendered, current.message
    sample = sample_recipient(settings)
    html_path, text_path = out_dir / "digest.html", out_dir / "digest.txt"
    markers = message.markers
    atomic_write(html_path, markers.fill(rendered.html, sample, escape_html))
    atomic_write(text_path, markers.fill(rendered.text, sample))
    atomic_write(out_dir / "digest.eml", message.render(sample).replace(b"\r\n", b"\n"))
    return PreviewReport(
        html_path,
        text_path,
        out_dir / "digest.eml",
        len(view.briefings),
        view.web_only,
        rendered.html_bytes,
        rendered.clipped_by_gmail,
        current.sent_at,
    )


def atomic_write(path: Path, content: str | bytes) -> None:
    """Write a whole file or nothing: a temporary file in the same folder, then a rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    data = content.encode("utf-8") if isinstance(content, str) else content
    try:
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(data)
        os.chmod(temporary, 0o666 & ~_umask())  # mkstemp makes 0600; a preview is to be shared
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def _umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current


def _rendered(session: Session, settings: Settings, digest: Digest) -> RenderedDigest:
    if digest.html:
        return RenderedDigest(digest.subject, digest.preheader, digest.html, digest.text)
    return render_digest(digest_view(session, digest), settings)


# -- send ---------------------------------------------------------------------------------------


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

    @property
    def nothing_new(self) -> bool:
        return self.digest_id is None and not self.no_audience


def destination(settings: Settings) -> str:
    if settings.delivery.transport == "maildir":
        return f"Maildir {settings.maildir_path}"
    return f"SMTP {settings.smtp.host}:{settings.smtp.port}"


def transport_factory(settings: Settings) -> tuple[Callable[[], Transport], int]:
    """A factory for one transport per worker thread, and how many workers the transport wants."""
    if settings.delivery.transport == "maildir":
        path = settings.maildir_path
        return (lambda: MaildirTransport(path)), 1
    smtp, password, ca_file = settings.smtp, smtp_password(), settings.smtp_ca_file
    return (lambda: SmtpTransport(smtp, password, ca_file)), smtp.concurrency


def retry_policy(settings: Settings) -> RetryPolicy:
    delivery = settings.delivery
    return RetryPolicy(
        max_attempts=delivery.max_attempts,
        base_delay=delivery.retry_base_seconds,
        lease_seconds=delivery.claim_lease_seconds,
    )


def send(
    settings: Settings,
    slug: str,
    *,
    dry_run: bool = False,
    progress: ProgressCallback | None = None,
    on_start: Callable[[SendReport], None] | None = None,
    stop: threading.Event | None = None,
    retry: RetryPolicy | None = None,
    workers: int = 1,
) -> SendReport:
    """Retry earlier deferrals, then build the digest if none is pending and deliver it once.

    With `workers` > 1 on PostgreSQL, that many processes share the ledger (this one and
    `newsletter worker` children); on SQLite, one process uses that many times the connections.

    A new digest is only built when the list has active subscribers: otherwise its briefings
    wait for the next send instead of being used up on nobody.
    """
    database = open_database(settings)
    report = SendReport(slug, destination=destination(settings), dry_run=dry_run)
    key = signing_key(settings, for_mail=not dry_run)
    jobs: list[tuple[int, PreparedMessage]] = []
    try:
        with database.session() as session:
            mailing_list = list_row(session, settings, slug)
            list_id = mailing_list.id
            assert list_id is not None
            if not dry_run:
                give_up_after = timedelta(days=settings.delivery.give_up_after_days)
                for earlier in digests_with_deferrals(session, list_id):
                    report.given_up += give_up_stale_deferrals(session, earlier, give_up_after)
                    if ledger_counts(session, earlier.id or 0).get(DeliveryStatus.DEFERRED):
                        jobs.append(
                            (earlier.id or 0, prepare_message(settings, earlier, mailing_list))
                        )
                        report.retried_digests.append(earlier.id or 0)
            digest = pending_digest(session, mailing_list)
            report.resumed = digest is not None
            if digest is None and active_count(session, mailing_list) == 0:
                report.no_audience = True
            elif digest is None:
                try:
                    digest = build_digest(session, settings, mailing_list)
                except IntegrityError:  # its flush lost a race for the same briefings
                    raise NewsletterError(
                        f"another `newsletter send` is building a digest of {slug} right now",
                        hint="wait for it to finish; nobody is mailed twice",
                    ) from None
            if digest is not None:
                assert digest.id is not None
                report.digest_id, report.subject = digest.id, digest.subject
                if dry_run:
                    _rendered(session, settings, digest)
                    report.audience = active_count(session, mailing_list)
                    session.rollback()
                    return report
                if digest.status == DigestStatus.DRAFT:
                    rendered = render_digest(digest_view(session, digest), settings)
                    digest.html, digest.text = rendered.html, rendered.text
                    snapshot_audience(session, digest)
                jobs.append((digest.id, prepare_message(settings, digest, mailing_list)))
            session.rollback()
            for digest_id, _ in jobs:
                counts = ledger_counts(session, digest_id)
                report.audience += sum(counts.get(status, 0) for status in OPEN_STATUSES)
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
                report.summary.add(
                    dispatcher(
                        settings,
                        database,
                        key,
                        digest_id,
                        list_id,
                        message,
                        retry=retry,
                        progress=progress,
                        stop=stop,
                        concurrency_factor=workers,
                    ).run()
                )
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
    finally:
        database.dispose()


def dispatcher(
    settings: Settings,
    database: Database,
    key: SigningKey,
    digest_id: int,
    list_id: int,
    message: PreparedMessage,
    *,
    retry: RetryPolicy | None = None,
    progress: ProgressCallback | None = None,
    stop: threading.Event | None = None,
    concurrency_factor: int = 1,
) -> Dispatcher:
    factory, concurrency = transport_factory(settings)
    signer = dkim_signer(settings)
    limiter = RateLimiter(
        settings.smtp.rate_per_second if settings.delivery.transport == "smtp" else 0
    )
    return Dispatcher(
        database,
        digest_id,
        list_id,
        message,
        envelope_sender=envelope_sender(settings, key, digest_id),
        transport_factory=factory,
        recipient=lambda subscriber: recipient_for(settings, key, list_id, subscriber),
        concurrency=concurrency * concurrency_factor,
        retry=retry or retry_policy(settings),
        progress=progress,
        stop=stop,
        signer=signer.sign if signer else None,
        rate_limiter=limiter,
    )


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


def work(
    settings: Settings, slug: str | None = None, *, stop: threading.Event | None = None
) -> SendSummary:
    """Join every send in progress (of one list, or all) until none has work left."""
    key = signing_key(settings, for_mail=True)
    database = open_database(settings)
    summary = SendSummary()
    try:
        with database.session() as session:
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
            summary.add(
                dispatcher(settings, database, key, digest_id, list_id, message, stop=stop).run()
            )
            if stop is not None and stop.is_set():
                break
    finally:
        database.dispose()
    return summary


OPEN_STATUSES = (DeliveryStatus.QUEUED, DeliveryStatus.SENDING, DeliveryStatus.DEFERRED)


def envelope_sender(
    settings: Settings, key: SigningKey, digest_id: int
) -> Callable[[Recipient], str]:
    """The return path: VERP (bounces+<signed digest.subscriber>@bounce_domain) when configured."""
    publication = settings.publication
    if not publication.bounce_domain:
        return lambda _recipient: publication.from_address
    domain = publication.bounce_domain
    return lambda recipient: (
        f"bounces+{key.sign('bounce', digest_id, recipient.subscriber_id)}@{domain}"
    )


def dkim_signer(settings: Settings) -> DkimSigner | None:
    if settings.dkim is None or settings.dkim_key_file is None:
        return None
    return DkimSigner(settings.dkim.domain, settings.dkim.selector, settings.dkim_key_file)


def prepare_message(
    settings: Settings, digest: Digest, mailing_list: MailingList, subject_prefix: str = ""
) -> PreparedMessage:
    publication = settings.publication
    return PreparedMessage(
        sender=publication.from_,
        subject=subject_prefix + digest.subject,
        text=digest.text,
        html_body=digest.html,
        list_id=f"{mailing_list.name} <{mailing_list.slug}.{publication.domain}>",
        message_id_domain=publication.domain,
        markers=Markers(digest.nonce),
        reply_to=publication.reply_to,
        unsubscribe_mailto=publication.unsubscribe_mailto,
        extra_headers={
            "Feedback-ID": f"{digest.id}:{mailing_list.slug}:digest:{publication.domain}"
        },
    )


def recipient_for(
    settings: Settings, key: SigningKey, list_id: int, subscriber: Reader
) -> Recipient:
    return Recipient(
        subscriber.id,
        ascii_address(subscriber.email),
        subscriber.name,
        unsubscribe_url(settings, key, list_id, subscriber.id),
    )


# -- bounces ------------------------------------------------------------------------------------


def process_bounces(settings: Settings, path: Path | None) -> ProcessReport:
    """Read returned mail (a Maildir, an mbox, or with no path the IMAP folder of
    [bounces.imap]) and act on every report that names a reader."""
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
    with database_session(settings) as session:
        return process_mailbox(session, settings, signing_key(settings), box)


@dataclass(frozen=True)
class BounceRow:
    email: str
    kind: str
    reason: str
    status_code: str
    action: str
    received_at: datetime


def bounce_rows(settings: Settings, limit: int = 200) -> list[BounceRow]:
    with database_session(settings) as session:
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


# -- status -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DigestStatusRow:
    digest_id: int
    list_slug: str
    subject: str
    status: str
    briefings: int
    counts: dict[str, int]


def digest_statuses(settings: Settings, slug: str | None = None) -> list[DigestStatusRow]:
    database = open_database(settings)
    rows: list[DigestStatusRow] = []
    with database.session() as session:
        query = select(Digest, MailingList).join(MailingList).order_by(col(Digest.id))
        if slug:
            settings.mailing_list(slug)
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
    database.dispose()
    return rows
