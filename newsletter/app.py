"""The app object: one `Newsletter` per process (a CLI command, the web server, a bench, a test).

It is built from Settings and owns what every use case shares: the database (opened once, on
first use, and closed with the app), the link-signing key, the clock, the mail transport and
the hooks for side effects. The use cases live in `newsletter.services`, one service per
area, reached as attributes (`app.feeds.fetch()`, `app.subscribers.add(...)`), each returning
a typed report; the CLI and the web handlers only parse, call one of them and present.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

from sqlmodel import Session

from newsletter.audience.tokens import SigningKey, signing_key
from newsletter.config import Settings, load_settings, smtp_password
from newsletter.models import utcnow
from newsletter.send.transport import Transport

if TYPE_CHECKING:
    from newsletter.db import Database
    from newsletter.send.dispatch import PoolFactory
    from newsletter.services.bounces import BounceService
    from newsletter.services.check import CheckService
    from newsletter.services.desk import DeskService
    from newsletter.services.digests import DigestService
    from newsletter.services.feeds import FeedService
    from newsletter.services.preferences import PreferenceService
    from newsletter.services.readers import ReaderService
    from newsletter.services.reports import ReportService
    from newsletter.services.schedule import ScheduleService
    from newsletter.services.sending import SendingService
    from newsletter.services.signup import SignupService
    from newsletter.services.subscribers import PendingConfirmation, SubscriberService


@dataclass(frozen=True)
class Transports:
    """How mail leaves: a factory for one transport per sending thread, and how many threads."""

    factory: Callable[[], Transport]
    concurrency: int
    description: str  # "Maildir /path/outbox", "SMTP host:port": for the editor
    # A send's connections, given how many; None: `factory`'s transports in threads.
    pool: PoolFactory | None = None


@dataclass
class Hooks:
    """Side effects the services trigger, injected so the CLI, the web form, imports and tests
    share one subscribe. `confirmation_needed` is handed the pending subscriptions that need a
    confirmation mail and returns how many went out; None means the app's own mailer."""

    confirmation_needed: Callable[[list[PendingConfirmation]], int] | None = None


class Newsletter:
    """The publisher, for one config: the CLI, `newsletter serve`, benches and tests hold one."""

    def __init__(
        self,
        settings: Settings,
        *,
        clock: Callable[[], datetime] = utcnow,
        transports: Callable[[Settings], Transports] | None = None,
        hooks: Hooks | None = None,
    ) -> None:
        self.settings = settings
        self.clock = clock
        self.hooks = hooks or Hooks()
        self._transports = transports or default_transports
        self._keys: dict[bool, SigningKey] = {}
        self._database: Database | None = None
        # The web server's threads may ask for the database at once: it is opened only once.
        self._opening = threading.Lock()

    @classmethod
    def from_config(cls, path: str | Path | None = None) -> Newsletter:
        """The app for a config file (default: $NEWSLETTER_CONFIG or ./config.toml)."""
        return cls(load_settings(None if path is None else Path(path)))

    def reloaded(self) -> Newsletter:
        """A new app on config.toml as it is now, with this one's clock, transports and
        hooks (a long-running process that must hear an editor's edits)."""
        return type(self)(
            load_settings(self.settings.path),
            clock=self.clock,
            transports=self._transports,
            hooks=self.hooks,
        )

    # -- what the app owns ---------------------------------------------------------------------

    @property
    def database(self) -> Database:
        """Opened on first use: the schema created or upgraded, feeds and lists synced."""
        if self._database is None:
            with self._opening:
                if self._database is None:
                    self._database = _open_database(self.settings)
        return self._database

    @property
    def database_opened(self) -> bool:
        return self._database is not None

    @contextmanager
    def session(self) -> Iterator[Session]:
        with self.database.session() as session:
            yield session

    def signing_key(self, *, for_mail: bool = False) -> SigningKey:
        """The key that signs links; `for_mail` refuses a development key unless config allows."""
        if for_mail not in self._keys:
            self._keys[for_mail] = signing_key(self.settings, for_mail=for_mail)
        return self._keys[for_mail]

    def transports(self) -> Transports:
        return self._transports(self.settings)

    def now(self) -> datetime:
        return self.clock()

    def close(self) -> None:
        """Close the database (if it was opened); the app is not to be used after this."""
        with self._opening:
            if self._database is not None:
                self._database.dispose()
                self._database = None

    def __enter__(self) -> Newsletter:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    # -- the services --------------------------------------------------------------------------

    @cached_property
    def feeds(self) -> FeedService:
        from newsletter.services.feeds import FeedService

        return FeedService(self)

    @cached_property
    def subscribers(self) -> SubscriberService:
        from newsletter.services.subscribers import SubscriberService

        return SubscriberService(self)

    @cached_property
    def digests(self) -> DigestService:
        from newsletter.services.digests import DigestService

        return DigestService(self)

    @cached_property
    def desk(self) -> DeskService:
        """The editor's desk: see, drop, note and approve the next digest."""
        from newsletter.services.desk import DeskService

        return DeskService(self)

    @cached_property
    def check(self) -> CheckService:
        """The preflight of the next digest: offline checks, and its links fetched."""
        from newsletter.services.check import CheckService

        return CheckService(self)

    @cached_property
    def sending(self) -> SendingService:
        from newsletter.services.sending import SendingService

        return SendingService(self)

    @cached_property
    def schedule(self) -> ScheduleService:
        """Scheduled sending: `run` (fetch, then each list whose slot is due), `loop`, `slots`."""
        from newsletter.services.schedule import ScheduleService

        return ScheduleService(self)

    @cached_property
    def bounces(self) -> BounceService:
        from newsletter.services.bounces import BounceService

        return BounceService(self)

    @cached_property
    def reports(self) -> ReportService:
        from newsletter.services.reports import ReportService

        return ReportService(self)

    @cached_property
    def signup(self) -> SignupService:
        """The web form's signups and their confirmation."""
        from newsletter.services.signup import SignupService

        return SignupService(self)

    @cached_property
    def preferences(self) -> PreferenceService:
        """The reader's own side: the signup form and the preference centre."""
        from newsletter.services.preferences import PreferenceService

        return PreferenceService(self)

    @cached_property
    def readers(self) -> ReaderService:
        """What readers do from the links in mail and on the web: unsubscribe, confirm, read."""
        from newsletter.services.readers import ReaderService

        return ReaderService(self)


def _open_database(settings: Settings) -> Database:
    from newsletter.db import Database, sync_config

    database = Database(settings)
    try:
        sync_config(database)
    except BaseException:
        database.dispose()
        raise
    return database


def default_transports(settings: Settings) -> Transports:
    """The transport config.toml names: a Maildir outbox, or SMTP with its password from the
    environment."""
    if settings.delivery.transport == "maildir":
        from newsletter.send.maildir import MaildirTransport

        path = settings.maildir_path
        return Transports(lambda: MaildirTransport(path), 1, f"Maildir {path}")
    from newsletter.send.multiplex import SmtpMultiplexer
    from newsletter.send.smtp import SmtpTransport

    smtp, password, ca_file = settings.smtp, smtp_password(), settings.smtp_ca_file
    return Transports(
        lambda: SmtpTransport(smtp, password, ca_file),
        smtp.concurrency,
        f"SMTP {smtp.host}:{smtp.port}",
        pool=lambda size: SmtpMultiplexer(smtp, password, ca_file, size),
    )
