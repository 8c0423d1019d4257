"""Feeds: fetch every feed of config.toml and store its briefings; how each feed is doing."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Executor, Future, ThreadPoolExecutor, wait
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal

from sqlmodel import col, func, select

from newsletter.db import DriverConnection
from newsletter.errors import FeedError
from newsletter.feeds.clean import CleanEntry, prepare_entries
from newsletter.feeds.fetch import FetchResult, FetchRules, HttpClient, fetch, http_client
from newsletter.feeds.ingest import IngestCounts, record_fetch, store_entries, stored_hashes
from newsletter.feeds.pool import parser_pool, settle
from newsletter.feeds.probe import ImageSizes, images_to_probe, probe_sizes
from newsletter.models import Briefing, Feed

if TYPE_CHECKING:
    from newsletter.app import Newsletter

FeedOutcome = Literal["ok", "not modified", "gone", "error"]
GONE = "the server says the feed is gone (HTTP 410); it is now disabled"


@dataclass(frozen=True)
class FeedReport:
    name: str
    status: FeedOutcome
    counts: IngestCounts = field(default_factory=IngestCounts)
    error: str = ""


@dataclass(frozen=True)
class FeedStatus:
    name: str
    url: str
    disabled: bool
    last_fetched_at: datetime | None
    last_error: str | None
    briefings: int


class FeedService:
    def __init__(self, app: Newsletter) -> None:
        self.app = app

    def fetch(self, on_feed: Callable[[FeedReport], None] | None = None) -> list[FeedReport]:
        """Fetch every feed of config.toml at once (bounded), parse in worker processes, store.

        One bad feed is reported and never stops the others; each entry is committed as stored.
        """
        settings = self.app.settings
        order = {source.name: index for index, source in enumerate(settings.feeds)}
        reports: dict[str, FeedReport] = {}
        rules = FetchRules.of(settings.fetch.total_deadline, settings.fetch.allow_private_hosts)
        # As far back as a digest's window reaches (digest/builder.py): a new briefing dated
        # earlier is counted apart, since no digest will carry it.
        window_start = self.app.now() - timedelta(days=settings.digest.window_days)

        def report(feed: Feed, outcome: FeedReport) -> None:
            feed.last_fetched_at = self.app.now()
            feed.last_error = outcome.error or None
            record_fetch(store, feed)
            reports[feed.name] = outcome
            if on_feed:
                on_feed(outcome)

        with ExitStack() as resources:
            parsers = resources.enter_context(
                parser_pool(settings.fetch.processes, len(settings.feeds))
            )
            client_ready: Future[HttpClient] = Future()
            resources.callback(_close_when_made, client_ready)  # after the downloads have ended
            downloads = resources.enter_context(
                ThreadPoolExecutor(settings.fetch.concurrency, "fetch")
            )
            # Loading the CA certificates lets go of the GIL: it runs beside opening the database.
            downloads.submit(settle, client_ready, http_client, settings.fetch.timeout)
            database = self.app.database
            # Read once: what the fetch learns of each feed is written by record_fetch, a
            # statement on the store connection (a session's flush per feed cost four times as
            # much).
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
                    configured=feed.config_url,
                    rules=rules,
                ): feed
                for feed in feeds
            }
            parsing: dict[Future[list[CleanEntry]], tuple[Feed, FetchResult]] = {}
            Parsed = tuple[Feed, FetchResult, Future[list[CleanEntry]]]
            probing: dict[Future[ImageSizes], Parsed] = {}
            # Downloads and parses are waited on together: each feed is parsed the moment it
            # has arrived, and stored (on this thread: the store connection is not
            # thread-safe) the moment it is parsed, whatever the slowest server is doing. A
            # feed whose new items have images of unknown size is stored once those are
            # probed, on a download thread.
            pending: set[Future[Any]] = set(fetching)
            while pending:
                done, pending = wait(pending, return_when=FIRST_COMPLETED)
                for future in done:
                    if future in fetching:
                        job = self._downloaded(fetching[future], future, parsers, report)
                        if job is not None:
                            parsing[job] = (fetching[future], future.result())
                            pending.add(job)
                    elif future in parsing:
                        feed, result = parsing.pop(future)
                        sizing = self.app.settings.fetch.probe_images
                        urls = self._unsized_images(feed, future, store) if sizing else []
                        if not urls:
                            self._parsed(feed, result, future, {}, store, report, window_start)
                            continue
                        probe = downloads.submit(probe_sizes, urls, client=client, rules=rules)
                        probing[probe] = (feed, result, future)
                        pending.add(probe)
                    else:
                        feed, result, parsed = probing.pop(future)
                        sizes = future.result() if future.exception() is None else {}
                        self._parsed(feed, result, parsed, sizes, store, report, window_start)
        return [reports[name] for name in names if name in reports]

    @staticmethod
    def _downloaded(
        feed: Feed,
        download: Future[FetchResult],
        parsers: Executor,
        report: Callable[[Feed, FeedReport], None],
    ) -> Future[list[CleanEntry]] | None:
        """Report a download that failed or brought nothing new; else start parsing it."""
        try:
            result = download.result()
        except FeedError as exc:
            report(feed, FeedReport(feed.name, "error", error=str(exc)))
            return None
        except Exception as exc:  # one broken download must not stop the rest
            error = f"feed {feed.name!r}: could not be fetched: {exc!r}"
            report(feed, FeedReport(feed.name, "error", error=error))
            return None
        if result.moved_to:
            feed.url = result.moved_to
        if result.status == "gone":
            feed.disabled = True
            report(feed, FeedReport(feed.name, "gone", error=GONE))
        elif result.status == "not_modified":
            report(feed, FeedReport(feed.name, "not modified"))
        else:
            return parsers.submit(
                prepare_entries, result.content, result.headers, feed.name, result.url
            )
        return None

    @staticmethod
    def _unsized_images(
        feed: Feed, job: Future[list[CleanEntry]], store: DriverConnection
    ) -> list[str]:
        """The images to probe before storing a parsed feed: none when the parse failed."""
        if job.exception() is not None or feed.id is None:
            return []  # _parsed reports it
        try:
            return images_to_probe(job.result(), stored_hashes(store, feed.id))
        except Exception:  # the store reports a database that fails, when it fails again
            store.rollback()
            return []

    @staticmethod
    def _parsed(
        feed: Feed,
        result: FetchResult,
        job: Future[list[CleanEntry]],
        image_sizes: ImageSizes,
        store: DriverConnection,
        report: Callable[[Feed, FeedReport], None],
        window_start: datetime,
    ) -> None:
        assert feed.id is not None
        try:
            counts = store_entries(
                store, feed.id, job.result(), window_start=window_start, image_sizes=image_sizes
            )
        except FeedError as exc:
            store.rollback()
            report(feed, FeedReport(feed.name, "error", error=str(exc)))
            return
        except Exception as exc:  # one broken feed must not stop the rest
            store.rollback()
            error = f"feed {feed.name!r}: could not be processed: {exc!r}"
            report(feed, FeedReport(feed.name, "error", error=error))
            return
        feed.etag, feed.last_modified = result.etag, result.last_modified
        report(feed, FeedReport(feed.name, "ok", counts))

    def statuses(self) -> list[FeedStatus]:
        """Every feed of config.toml with its last fetch, last error and briefing count."""
        names = [source.name for source in self.app.settings.feeds]
        with self.app.session() as session:
            counts = dict(
                session.exec(
                    select(Briefing.feed_id, func.count()).group_by(col(Briefing.feed_id))
                ).all()
            )
            feeds = {
                feed.name: feed
                for feed in session.exec(select(Feed).where(col(Feed.name).in_(names))).all()
            }
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


def _close_when_made(made: Future[HttpClient]) -> None:
    if made.done() and not made.exception():
        made.result().close()
