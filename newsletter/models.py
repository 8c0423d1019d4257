"""Every table, in one file. Times are stored as UTC and always come back timezone-aware."""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, TypeVar

from sqlalchemy import JSON, Column, DateTime, Index, UniqueConstraint
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator
from sqlmodel import AutoString, Field, SQLModel

from newsletter.personalize import new_nonce


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """Naive UTC in the database (SQLite has no time zones), aware UTC in Python."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given; use an aware UTC datetime")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        return None if value is None else value.replace(tzinfo=UTC)


E = TypeVar("E", bound=StrEnum)


class EnumText(TypeDecorator[StrEnum]):
    """A status stored as its plain text (no database enum type to migrate), read back as the
    enum member, so a status is never a bare string in Python."""

    impl = AutoString
    cache_ok = True

    def __init__(self, enum: type[StrEnum]) -> None:
        super().__init__()
        self.enum = enum
        # Looked up in a dict, not by calling the enum: an import reads 100,000 statuses at once.
        self._members: dict[str | None, StrEnum | None] = {None: None}
        self._members.update((member.value, member) for member in enum)

    def process_bind_param(self, value: StrEnum | str | None, dialect: Dialect) -> str | None:
        member = self._members[value]  # an unknown status is an error, never stored
        return None if member is None else member.value

    def process_result_value(self, value: str | None, dialect: Dialect) -> StrEnum | None:
        return self._members[value]

    def result_processor(self, dialect: Dialect, coltype: object) -> Any:
        return self._members.__getitem__  # the same as process_result_value, without a call


def _status(default: E) -> Any:
    column: Column[StrEnum] = Column(EnumText(type(default)), nullable=False, default=default)
    return Field(default=default, sa_column=column)


def _time(*, nullable: bool = False, index: bool = False) -> Any:
    column: Column[datetime] = Column(UTCDateTime(), nullable=nullable, index=index)
    if nullable:
        return Field(default=None, sa_column=column)
    return Field(default_factory=utcnow, sa_column=column)


def _with_server_default(default: str | int) -> Any:
    # The database's default too, as migration 0005 gave the rows stored before it.
    return Field(default=default, sa_column_kwargs={"server_default": str(default)})


class SubscriberStatus(StrEnum):
    ACTIVE = "active"
    UNSUBSCRIBED = "unsubscribed"
    BOUNCED = "bounced"
    COMPLAINED = "complained"


class SubscriptionStatus(StrEnum):
    PENDING = "pending"
    ACTIVE = "active"
    UNSUBSCRIBED = "unsubscribed"


class DigestStatus(StrEnum):
    DRAFT = "draft"
    SENDING = "sending"
    SENT = "sent"


class DeliveryStatus(StrEnum):
    QUEUED = "queued"
    SENDING = "sending"
    SENT = "sent"
    DEFERRED = "deferred"  # retries ran out for this run; the next send tries again
    FAILED = "failed"
    SKIPPED = "skipped"  # the reader left (unsubscribed, bounced) before it was sent


class Feed(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(unique=True)
    config_url: str  # as config.toml says; a change there starts the feed afresh
    url: str  # where it is fetched now: follows permanent redirects
    etag: str | None = None
    last_modified: str | None = None
    last_fetched_at: datetime | None = _time(nullable=True)
    last_error: str | None = None
    disabled: bool = False


class Briefing(SQLModel, table=True):
    __table_args__ = (UniqueConstraint("feed_id", "guid"),)

    id: int | None = Field(default=None, primary_key=True)
    feed_id: int = Field(foreign_key="feed.id", index=True)
    guid: str
    url: str
    title: str
    dek: str = ""
    body_html: str = ""
    key_points: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    tags: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    source_name: str
    source_url: str
    content_hash: str
    published_at: datetime = _time(index=True)
    first_seen_at: datetime = _time()
    updated_at: datetime = _time()
    # The story image, shown above the briefing: only ever stored with both its width and
    # height in pixels (the feed's or what the fetch read from the image), else none at all
    # (url "", 0, 0). alt is the feed's description of it; "" means: use the title.
    image_url: str = _with_server_default("")
    image_width: int = _with_server_default(0)
    image_height: int = _with_server_default(0)
    image_alt: str = _with_server_default("")
    # The first sentence of the item's "Why it matters" section, plain text; "" when none.
    why_it_matters: str = _with_server_default("")


class MailingList(SQLModel, table=True):
    __tablename__ = "mailing_list"

    id: int | None = Field(default=None, primary_key=True)
    slug: str = Field(unique=True)
    name: str
    created_at: datetime = _time()


class Subscriber(SQLModel, table=True):
    # Ids are in signed links that live on in old mail: a forgotten reader's id is never reused.
    __table_args__ = {"sqlite_autoincrement": True}

    id: int | None = Field(default=None, primary_key=True)
    email: str
    email_key: str = Field(unique=True)  # case-folded: Ada@ and ada@ are one subscriber
    name: str = ""
    status: SubscriberStatus = _status(SubscriberStatus.ACTIVE)
    attributes: dict[str, str] = Field(
        default_factory=dict, sa_column=Column(JSON, nullable=False)
    )  # the extra columns of an import
    created_at: datetime = _time()
    updated_at: datetime = _time()
    # The themes a reader chose to receive (names from config, the fallback theme included);
    # None: never chosen, so every theme. An empty list is never stored (that is "leave").
    themes: list[str] | None = Field(
        default=None, sa_column=Column(JSON(none_as_null=True), nullable=True)
    )


class Subscription(SQLModel, table=True):
    """One person on one list, with the record of their consent."""

    __table_args__ = (Index("ix_subscription_list_status", "list_id", "status"),)

    list_id: int = Field(foreign_key="mailing_list.id", primary_key=True)
    subscriber_id: int = Field(foreign_key="subscriber.id", primary_key=True)
    status: SubscriptionStatus = _status(SubscriptionStatus.ACTIVE)
    origin: str = ""  # how: import, cli, web
    consent: str = ""  # from where: "subscribers/weekly.csv:12", "cli (user@host)", a form
    created_at: datetime = _time()
    updated_at: datetime = _time()
    confirmed_at: datetime | None = _time(nullable=True)
    unsubscribed_at: datetime | None = _time(nullable=True)
    unsubscribe_reason: str = ""
    # When the last confirmation mail went out: a pending address is mailed at most once a day.
    confirmation_sent_at: datetime | None = _time(nullable=True)


class ConsentEvent(SQLModel, table=True):
    """The consent history: every change a reader (or an editor, an import, a bounce) made to
    what they receive, with where it came from. Erased with the person when they are forgotten."""

    __tablename__ = "consent_event"

    id: int | None = Field(default=None, primary_key=True)
    subscriber_id: int = Field(foreign_key="subscriber.id", index=True)
    list_id: int | None = Field(default=None, foreign_key="mailing_list.id")
    action: str  # subscribe, confirm, unsubscribe, resubscribe, themes, name, ...
    detail: str = ""  # e.g. the themes chosen
    origin: str = ""  # web, preferences, one-click, cli, import
    page: str = ""  # the page the form was on
    client: str = ""  # the client's network, truncated (see audience/consent.py)
    at: datetime = _time()


class UsedFormToken(SQLModel, table=True):
    """A signup form's token, once it was used: a form works once (replays mail nobody)."""

    __tablename__ = "used_form_token"

    nonce: str = Field(primary_key=True)
    used_at: datetime = _time(index=True)


class BounceKind(StrEnum):
    HARD = "hard"
    SOFT = "soft"
    COMPLAINT = "complaint"


class Bounce(SQLModel, table=True):
    """Returned mail or a complaint about one subscriber, and what was done about it."""

    id: int | None = Field(default=None, primary_key=True)
    subscriber_id: int = Field(foreign_key="subscriber.id", index=True)
    digest_id: int | None = Field(default=None, foreign_key="digest.id")
    kind: BounceKind = Field(sa_column=Column(EnumText(BounceKind), nullable=False))
    status_code: str = ""
    reason: str = ""
    diagnostic: str = ""
    action: str = ""
    report_id: str = Field(default="", index=True)  # Message-ID of the returned mail
    received_at: datetime = _time()


class Suppression(SQLModel, table=True):
    """An address that must never be mailed or re-added, kept only as a hash once forgotten."""

    email_hash: str = Field(primary_key=True)  # sha256 of the case-folded address
    reason: str
    created_at: datetime = _time()


class Digest(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    list_id: int = Field(foreign_key="mailing_list.id", index=True)
    status: DigestStatus = _status(DigestStatus.DRAFT)
    nonce: str = Field(default_factory=new_nonce)  # in markers and Message-IDs: never guessable
    subject: str
    preheader: str = ""
    html: str = ""  # rendered once, with recipient placeholders; what was sent is kept
    text: str = ""
    window_start: datetime = _time()
    window_end: datetime = _time()
    created_at: datetime = _time()
    sent_at: datetime | None = _time(nullable=True)
    note: str = ""  # the editor's note atop this digest (Markdown), as it was when built


class DigestEdition(SQLModel, table=True):
    """One rendering of a digest for the readers who chose the same themes. The digest's own
    html/text are the full edition (every theme); an edition holds only its themes' stories,
    with its own lead, subject and preheader. Stored, so a resumed send sends the same bytes."""

    __tablename__ = "digest_edition"
    __table_args__ = (UniqueConstraint("digest_id", "themes_key"),)

    id: int | None = Field(default=None, primary_key=True)
    digest_id: int = Field(foreign_key="digest.id", index=True)
    themes_key: str  # the chosen theme names, sorted, joined by a newline
    themes: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    subject: str
    preheader: str = ""
    html: str = ""
    text: str = ""
    briefings: int = 0  # stories in it; 0: nothing new for these themes (nobody is mailed)


class DigestItem(SQLModel, table=True):
    """A briefing's place in a digest. (list_id, briefing_id) is unique: never twice to one list."""

    __tablename__ = "digest_item"
    __table_args__ = (UniqueConstraint("list_id", "briefing_id"),)

    digest_id: int = Field(foreign_key="digest.id", primary_key=True)
    briefing_id: int = Field(foreign_key="briefing.id", primary_key=True)
    list_id: int = Field(foreign_key="mailing_list.id")
    position: int
    theme: str
    lead: bool = False
    in_email: bool = True  # False: over a cap, shown on the web edition only
    merged_into: int | None = None  # the same story from another source: shown with that one


class DigestPin(SQLModel, table=True):
    """The briefing an editor chose to lead the next digest of a list."""

    __tablename__ = "digest_pin"

    list_id: int = Field(foreign_key="mailing_list.id", primary_key=True)
    briefing_id: int = Field(foreign_key="briefing.id")
    created_at: datetime = _time()


class DigestDrop(SQLModel, table=True):
    """A briefing an editor left out of a list's digests."""

    __tablename__ = "digest_drop"

    list_id: int = Field(foreign_key="mailing_list.id", primary_key=True)
    briefing_id: int = Field(foreign_key="briefing.id", primary_key=True)
    created_at: datetime = _time()


class DigestNote(SQLModel, table=True):
    """The editor's note for the next digest of a list (Markdown); used once, like a pin."""

    __tablename__ = "digest_note"

    list_id: int = Field(foreign_key="mailing_list.id", primary_key=True)
    text: str
    created_at: datetime = _time()


class DigestApproval(SQLModel, table=True):
    """An editor's approval of the next digest of a list, as it was planned then: any change
    to the plan (a fetch adding stories, a drop, a pin, a note) needs approving again."""

    __tablename__ = "digest_approval"

    list_id: int = Field(foreign_key="mailing_list.id", primary_key=True)
    fingerprint: str  # of the plan approved
    approved_at: datetime = _time()
    approved_by: str = ""


class Delivery(SQLModel, table=True):
    """The ledger: one row per (digest, subscriber); a row marked sent is never sent again."""

    # Claims read a digest's queued rows in reader order (see send/claims.py).
    __table_args__ = (Index("ix_delivery_digest_status", "digest_id", "status", "subscriber_id"),)

    digest_id: int = Field(foreign_key="digest.id", primary_key=True)
    subscriber_id: int = Field(foreign_key="subscriber.id", primary_key=True)
    status: DeliveryStatus = _status(DeliveryStatus.QUEUED)
    attempts: int = 0
    next_attempt_at: datetime | None = _time(nullable=True)
    last_reply: str | None = None
    message_id: str | None = None
    claimed_by: str | None = None
    claimed_at: datetime | None = _time(nullable=True)
    sent_at: datetime | None = _time(nullable=True)
    # The edition this reader gets (None: the full digest); chosen when the audience is
    # snapshotted, so a resumed send mails each reader what it would have before.
    edition_id: int | None = Field(default=None, foreign_key="digest_edition.id")


class ScheduledOutcome(StrEnum):
    RUNNING = "running"  # a `newsletter run` holds the slot now
    SENT = "sent"
    NOTHING_NEW = "nothing new"
    NO_AUDIENCE = "no audience"
    WAITING = "waits for approval"  # a later run within the grace sends it once approved
    MISSED = "missed"  # past the grace: not sent
    FAILED = "failed"  # a later run within the grace tries again
    STOPPED = "stopped"  # stopped part-way (SIGTERM); a later run within the grace goes on


class ScheduledRun(SQLModel, table=True):
    """A list's scheduled slot, claimed by the `newsletter run` that handles it: the primary
    key lets only one process have it, so a slot sends at most one digest however many runs
    there are."""

    __tablename__ = "scheduled_run"

    list_id: int = Field(foreign_key="mailing_list.id", primary_key=True)
    slot_at: datetime = Field(sa_column=Column(UTCDateTime(), primary_key=True))
    started_at: datetime = _time()
    finished_at: datetime | None = _time(nullable=True)
    outcome: ScheduledOutcome = _status(ScheduledOutcome.RUNNING)
    digest_id: int | None = Field(default=None, foreign_key="digest.id")
    sent: int = 0  # messages this slot's run sent
    detail: str = ""  # the error line of a failure, what a wait waits for
