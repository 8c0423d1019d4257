"""The sections of config.toml, each a frozen, validated model; `config.Settings` holds them."""

from __future__ import annotations

from email.utils import parseaddr
from pathlib import Path
from string import Formatter
from typing import Annotated, Literal
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator, model_validator

from newsletter.schedule import Schedule, parse_schedule, time_zone


def _absolute_http_url(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"must be an absolute http(s) URL, got {value!r}")
    return value.rstrip("/")


def _single_line(value: str) -> str:
    if any(ch in value for ch in "\r\n\0"):
        raise ValueError("must be a single line")
    return value


def _mailbox(value: str) -> str:
    _single_line(value)
    _, address = parseaddr(value)
    if "@" not in address:
        raise ValueError(f"must be an address like 'Name <user@example.com>', got {value!r}")
    return value


def _time_zone(value: str) -> str:
    time_zone(value)
    return value


def _schedule(value: str) -> str:
    parse_schedule(value)
    return value


HttpUrl = Annotated[str, AfterValidator(_absolute_http_url)]
Line = Annotated[str, AfterValidator(_single_line)]


# Languages written right to left (ISO 639 codes).
_RIGHT_TO_LEFT = frozenset(
    {"ar", "arc", "dv", "fa", "ha", "he", "iw", "khw", "ks", "ku", "ps", "sd", "ur", "yi"}
)


class _Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)


class Publication(_Section):
    name: Line
    from_: Annotated[str, AfterValidator(_mailbox)] = Field(alias="from")
    base_url: HttpUrl
    standards_url: HttpUrl
    postal_address: Line
    description: Line = ""  # one line under the name on the home page
    # The standards page served at standards_url when that lies under base_url: Markdown,
    # beside config.toml (a starter is served until the file exists).
    standards_page: Path = Path("standards.md")
    standards_note: str = (
        "How {publication} works: every briefing is written or edited by us from the outside "
        "source it names, which we link so you can read the original."
    )
    # The line under every briefing naming the outside source it began from ({source}: the
    # outlet), and the words of the link to it.
    # The line under every briefing naming the outside source it began from ({source}: the
    # outlet's name, linked to the original), and the words that say where that link goes.
    attribution: Line = "From reporting by {source}"
    attribution_link: Line = "Read the original"
    # The brand: a logo (an http(s) URL, or a PNG/JPEG/GIF/WebP file beside config.toml that
    # `serve` publishes under base_url/brand/), an optional variant for dark backgrounds, the
    # accent colour of links, labels and rules, and a line under the name.
    logo: Line = ""
    logo_dark: Line = ""
    logo_width: int | None = Field(default=None, ge=1, le=2000)  # needed for a logo URL
    logo_height: int | None = Field(default=None, ge=1, le=2000)
    accent_color: Annotated[str, Field(pattern=r"^#[0-9A-Fa-f]{6}$")] = "#1d4ed8"
    tagline: Line = ""
    # The language the issue is written in (BCP 47: "en", "de", "ar"): screen readers and
    # hyphenation follow it, and right-to-left scripts set the direction.
    language: Annotated[str, Field(pattern=r"^[A-Za-z]{2,3}(-[A-Za-z0-9]{2,8})*$")] = "en"
    reply_to: Annotated[str, AfterValidator(_mailbox)] | None = None
    unsubscribe_mailto: Line | None = None
    # With it, each message's envelope sender is bounces+<signed id>@bounce_domain (VERP), so a
    # bounce names its reader whatever the remote server writes in it.
    bounce_domain: Annotated[str, Field(pattern=r"^[A-Za-z0-9.-]+$")] | None = None
    # The IANA zone the lists' schedules are read in (daylight saving included).
    timezone: Annotated[str, AfterValidator(_time_zone)] = "UTC"

    @model_validator(mode="after")
    def _logo_size_known(self) -> Publication:
        for logo in (self.logo, self.logo_dark):
            remote = urlsplit(logo).scheme in ("http", "https")
            if remote and (self.logo_width is None or self.logo_height is None):
                raise ValueError(
                    f"logo {logo!r} is a URL: give logo_width and logo_height (its size in "
                    "pixels), so the mail keeps its layout while images are blocked"
                )
        return self

    @property
    def direction(self) -> Literal["ltr", "rtl"]:
        primary = self.language.split("-")[0].lower()
        return "rtl" if primary in _RIGHT_TO_LEFT else "ltr"

    @property
    def zone(self) -> ZoneInfo:
        return time_zone(self.timezone)

    @property
    def domain(self) -> str:
        """The publication's own domain: Message-IDs and List-Id live under it."""
        return urlsplit(self.base_url).hostname or "localhost"

    @property
    def from_address(self) -> str:
        return parseaddr(self.from_)[1]


class Database(_Section):
    url: str = "sqlite:///newsletter.db"


class Delivery(_Section):
    transport: Literal["maildir", "smtp"] = "maildir"
    maildir: Path = Path("outbox")
    max_attempts: int = Field(default=5, ge=1, le=50)  # per run, for 4xx and dropped connections
    retry_base_seconds: float = Field(default=2.0, gt=0, le=3600)
    give_up_after_days: float = Field(default=3.0, gt=0, le=60)  # then a deferral is a failure
    claim_lease_seconds: float = Field(default=120.0, ge=1, le=86400)


class Smtp(_Section):
    host: str = "127.0.0.1"
    port: int = Field(default=25, ge=1, le=65535)
    security: Literal["none", "starttls", "tls"] = "none"
    username: str = ""
    concurrency: int = Field(default=4, ge=1, le=100)
    timeout: float = Field(default=30.0, gt=0)
    ca_file: Path | None = None
    rate_per_second: float = Field(
        default=0, ge=0
    )  # at most this many messages a second; 0: no cap


class Dkim(_Section):
    domain: Annotated[str, Field(pattern=r"^[A-Za-z0-9.-]+$")]
    selector: Annotated[str, Field(pattern=r"^[A-Za-z0-9._-]+$")]
    key_file: Path  # PEM private key, relative to config.toml; never in config.toml itself


class Fetch(_Section):
    timeout: float = Field(default=20.0, gt=0, le=600)  # for each read of a feed request
    # The whole of one feed's download, however slowly a server trickles; default 3 x timeout.
    deadline: float | None = Field(default=None, gt=0, le=3600)
    concurrency: int = Field(default=8, ge=1, le=64)
    processes: int = Field(default=0, ge=0, le=64)  # parser processes; 0: one per CPU
    # Hosts (names, addresses or networks like "10.0.0.0/8") on loopback, link-local or private
    # ranges that feeds may be fetched from, or redirected to. A feed's own configured host and
    # port is always allowed for its first request.
    allow_private_hosts: tuple[str, ...] = ()
    # Read the first bytes of a story picture whose size the feed does not give (its size
    # holds the mail's layout while images are blocked); off: such pictures are not shown.
    probe_images: bool = True

    @property
    def total_deadline(self) -> float:
        return self.deadline if self.deadline is not None else 3 * self.timeout


class FeedSource(_Section):
    name: Line
    url: str

    @field_validator("url")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must not be empty")
        return value.strip()


class Theme(_Section):
    name: Line
    tags: tuple[str, ...] = ()
    keywords: tuple[str, ...] = ()


class MailingList(_Section):
    slug: Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_-]*$")]
    name: Line
    description: str = ""
    double_opt_in: bool = False  # new subscribers confirm by a link before they get digests
    public: bool = True  # offered on the signup form and in the preference centre
    # `send` (and a scheduled run) waits for `newsletter digest approve`; any change to the
    # plan after that asks for approval again.
    require_approval: bool = False
    # When `newsletter run` sends it: "mon 08:00", "daily 07:30" (in [publication] timezone);
    # none: only `newsletter send` does. A slot missed by more than the grace is not sent.
    schedule: Annotated[str, AfterValidator(_schedule)] | None = None
    schedule_grace_hours: float = Field(default=6, gt=0, le=24 * 7)

    @property
    def parsed_schedule(self) -> Schedule | None:
        return None if self.schedule is None else parse_schedule(self.schedule)


SUBJECT_FIELDS = frozenset({"publication", "lead", "count", "more", "and_more", "themes", "date"})


class Imap(_Section):
    host: str
    port: int = Field(default=993, ge=1, le=65535)
    security: Literal["tls", "starttls", "none"] = "tls"
    username: str
    folder: str = "INBOX"
    processed_folder: str = "processed"
    ca_file: Path | None = None
    timeout: float = Field(default=30.0, gt=0)
    # the password only from NEWSLETTER_IMAP_PASSWORD


class Bounces(_Section):
    soft_limit: int = Field(default=3, ge=1, le=100)  # soft bounces that suppress an address...
    soft_days: int = Field(default=30, ge=1, le=365)  # ...when they come within this many days
    # Senders (addresses, or "@domain") whose mail may carry provider notifications as JSON
    # (Amazon SES through SNS); such JSON from anyone else changes nothing.
    json_senders: tuple[str, ...] = ()
    imap: Imap | None = None


class Security(_Section):
    # Without NEWSLETTER_SECRET_KEY, a random key kept in newsletter.secret beside config.toml;
    # fine on one machine for trying things out, refused by `send` unless this says so.
    allow_development_key: bool = False
    confirm_link_days: int = Field(default=7, ge=1, le=365)


class Signup(_Section):
    """The web signup form's defences; every signup is confirmed by mail whatever these say."""

    min_seconds: float = Field(default=2.0, ge=0, le=600)  # faster than a person: refused
    max_age_hours: float = Field(default=24.0, gt=0, le=24 * 30)  # an older form: refused
    per_client_per_hour: int = Field(default=10, ge=1, le=10_000)  # signups from one network
    per_domain_per_hour: int = Field(default=50, ge=1, le=100_000)  # to one mail domain
    # A proof of work the page's own script solves (the ALTCHA scheme); off, the form needs
    # no script at all.
    proof_of_work: bool = False
    proof_of_work_max: int = Field(default=150_000, ge=1_000, le=10_000_000)


class DigestSettings(_Section):
    window_days: int = Field(default=7, ge=1, le=366)
    max_per_theme: int = Field(default=6, ge=1, le=100)
    max_briefings: int = Field(default=30, ge=1, le=500)
    merge_similarity: float = Field(default=0.85, gt=0, le=1)
    templates: Path = Path("templates")  # beside config.toml; the bundled ones when missing
    fallback_theme: Line = "More briefings"
    subject: Line = "{publication}: {lead}{and_more}"
    preheader: Line = "This week: {themes}"
    # Story pictures from the feed: for the top story only, for every story card, or none.
    images: Literal["lead", "all", "none"] = "lead"
    # How many stories of each theme are cards (headline, dek or why it matters, the source);
    # the rest are a headline and one line. The top story is always shown whole.
    cards_per_theme: int = Field(default=0, ge=0, le=100)

    @field_validator("subject", "preheader")
    @classmethod
    def _known_fields(cls, template: str) -> str:
        try:
            fields = [name for _, name, _, _ in Formatter().parse(template) if name is not None]
        except ValueError as exc:
            raise ValueError(f"{template!r} is not a valid template: {exc}") from None
        unknown = sorted(set(fields) - SUBJECT_FIELDS)
        if unknown:
            known = ", ".join("{" + name + "}" for name in sorted(SUBJECT_FIELDS))
            raise ValueError(f"unknown field {{{unknown[0]}}}; use {known}")
        return template
