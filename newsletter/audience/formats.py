"""The layouts an import reads: our own CSV, and the subscriber exports of other tools.

Read as our layout, a Mailchimp export had no 'email' column (it says "Email Address"), its
"First Name" and "Last Name" became attributes, and listmonk's JSON `attributes` column was kept
as one string. Each `ExportFormat` below says where a tool's export keeps the address, the name,
the status (in the tool's words, mapped to ours, so that whoever left there stays out here), the
consent, tags and attribute data; `layout_for` recognises the format from the header row and
compiles it to column positions once, and `Layout.read` turns one row's cells into its fields.

Where each layout comes from (the sample files in tests/data/exports/ follow them):

- Mailchimp, "Export audience": a zip with one CSV per status, subscribed, unsubscribed and
  cleaned members. Columns "Email Address", "First Name", "Last Name" (merge fields, which an
  audience may rename or drop), the audience's own fields, then MEMBER_RATING, OPTIN_TIME,
  OPTIN_IP, CONFIRM_TIME, CONFIRM_IP, LATITUDE, LONGITUDE, GMTOFF, DSTOFF, TIMEZONE, CC, REGION,
  LAST_CHANGED, LEID, EUID, NOTES, TAGS; the unsubscribed file adds UNSUB_TIME,
  UNSUB_CAMPAIGN_TITLE, UNSUB_CAMPAIGN_ID, UNSUB_REASON, UNSUB_REASON_OTHER and the cleaned file
  CLEAN_TIME, CLEAN_CAMPAIGN_TITLE, CLEAN_CAMPAIGN_ID. There is no status column: the file is the
  status, told apart by its UNSUB_/CLEAN_ columns. (Exports quoted in public code and tests, and
  ginkgo.st's notes on Mailchimp data exports for the three files.)
- listmonk, "Export" on the subscribers page: uuid, email, name, attributes (the subscriber's
  JSON object), status (enabled, disabled, blocklisted), created_at, updated_at: the header
  written by handleExportSubscribers in knadh/listmonk cmd/subscribers.go.
- Substack, "Export" of the subscriber list (email_list.*.csv): email, active_subscription,
  expiry, plan, email_disabled, created_at, first_payment_at; older files lack plan and
  first_payment_at. email_disabled true: they get no mail (Ghost's migrator, TryGhost/migrate
  mg-substack-members-csv, reads it the same way). No name column.
- Buttondown, the subscribers export: email (email_address since the API's 2024 rename), notes,
  metadata (a JSON object), tags, referrer_url, secondary_id, creation_date, subscriber_type
  (type after the rename): regular, premium, trialed, unpaid, gifted, churning, paused, past_due
  (all receiving mail), unactivated (never confirmed), unsubscribed, removed, spammy, and
  undeliverable in the dashboard. The names are those of Buttondown's API schema and of its
  OpenAPI enums (buttondown/openapi enums.json, SubscriberType); its CSV's column order is not
  documented, and nothing here depends on it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from newsletter.audience.consent import client_network
from newsletter.audience.store import STATUSES, MemberStatus
from newsletter.errors import ImportFileError
from newsletter.feeds.sanitize import single_line

MAX_NAME = 200  # characters: a name goes into the To: header of every message
MAX_ATTRIBUTE = 1000

# "": the file does not say; they join active, or pending when the list asks for a confirmation.
Status = MemberStatus | Literal[""]
# What a row reads as: name, attributes, status, consent, themes (a `Row` after line and email).
Fields = tuple[str, dict[str, str], Status, str, list[str] | None]


@dataclass(frozen=True)
class ExportFormat:
    """Where one tool's export keeps each thing; column names as `SubscriberCsv` reads them
    (stripped, lower-cased)."""

    name: str  # "plain" for our own layout
    recognises: Callable[[frozenset[str]], bool]  # from the header's column names
    email: tuple[str, ...]  # the first of these the header has holds the address
    # The first group the header has any column of makes the name, its parts joined by a space.
    name_from: tuple[tuple[str, ...], ...] = (("name",),)
    status: tuple[str, ...] = ()  # the first of these the header has holds a status
    statuses: Mapping[str, Status] = field(default_factory=dict)  # its words ("": empty) -> ours
    # A file that has one of these columns holds people in that status: (column, status, what).
    kinds: tuple[tuple[str, Status, str], ...] = ()
    # Where consent was given: (time column, words for it, the client's address column or "").
    consent: tuple[tuple[str, str, str], ...] = ()
    themes: str = ""  # our `themes` column: every name in it must be a theme of config.toml
    tags: str = ""  # a tool's tags: themes when every tag names one, otherwise an attribute
    json_attributes: str = ""  # a column holding a JSON object of attributes
    json_strict: bool = True  # False: a cell that is not JSON stays an attribute as it is
    ignored: frozenset[str] = frozenset()  # neither read nor kept


_OURS: dict[str, Status] = {"": "", **{status: status for status in STATUSES}}

PLAIN = ExportFormat(
    "plain",
    lambda header: "email" in header,
    email=("email",),
    status=("status",),
    statuses=_OURS,
    consent=(("consent", "", ""),),  # our own export's record, kept as it is
    themes="themes",
    ignored=frozenset({"since"}),  # the date of that consent, which `consent` records
)

MAILCHIMP = ExportFormat(
    "Mailchimp",
    # With an `email` column as well, "Email Address" is just another column of our layout.
    lambda header: "email address" in header and "email" not in header,
    email=("email address",),
    name_from=(("first name", "last name"), ("name",)),
    kinds=(
        ("unsub_time", "unsubscribed", "unsubscribed members"),
        ("clean_time", "bounced", "cleaned members: bounced here"),
    ),
    consent=(("optin_time", "opted in", "optin_ip"), ("confirm_time", "confirmed", "confirm_ip")),
    tags="tags",
)

LISTMONK = ExportFormat(
    "listmonk",
    lambda header: {"email", "attributes"} <= header,
    email=("email",),
    status=("status",),
    # A disabled subscriber gets no campaigns there; mailing them here would undo that.
    statuses={
        "": "",
        "enabled": "active",
        "disabled": "unsubscribed",
        "blocklisted": "unsubscribed",
    },
    consent=(("created_at", "subscriber since", ""),),
    json_attributes="attributes",
)

SUBSTACK = ExportFormat(
    "Substack",
    lambda header: "email" in header and bool({"active_subscription", "email_disabled"} & header),
    email=("email",),
    status=("email_disabled",),
    statuses={"": "", "false": "active", "true": "unsubscribed"},
    consent=(("created_at", "subscribed", ""),),
)

_BUTTONDOWN_MARKS = frozenset({"subscriber_type", "creation_date", "referrer_url", "secondary_id"})
BUTTONDOWN = ExportFormat(
    "Buttondown",
    lambda header: (
        "email_address" in header or ("email" in header and bool(_BUTTONDOWN_MARKS & header))
    ),
    email=("email_address", "email"),
    status=("subscriber_type", "type"),
    statuses={
        "": "",
        **dict.fromkeys(
            ("regular", "premium", "trialed", "unpaid", "gifted", "churning", "paused", "past_due"),
            "active",
        ),
        "unactivated": "pending",
        "unsubscribed": "unsubscribed",
        "removed": "unsubscribed",  # taken off by the newsletter
        "spammy": "unsubscribed",  # never mailed there
        "undeliverable": "bounced",
    },
    consent=(("creation_date", "subscribed", ""),),
    tags="tags",
    json_attributes="metadata",
    # Only the API documents metadata as JSON; an export that writes it otherwise keeps it.
    json_strict=False,
)

# The first that recognises a header reads the file: the tools' layouts before our own, which
# takes any file with an `email` column.
FORMATS = (MAILCHIMP, LISTMONK, SUBSTACK, BUTTONDOWN, PLAIN)

_THEME_SEPARATORS = re.compile(r"[;|]")
_TAG_SEPARATORS = re.compile(r"[,;|]")
_TAG_WRAPPING = " \t\"'[]"  # Mailchimp quotes each tag; a list may come as ["a", "b"]


def layout_for(header: Sequence[str], path: Path, theme_names: Sequence[str] = ()) -> Layout:
    """The layout of a file with this header row (`FILE:1: reason` when none fits)."""
    columns = frozenset(column for column in header if column)
    for export in FORMATS:
        if export.recognises(columns):
            return Layout(export, header, path, theme_names)
    raise ImportFileError(
        f"{path}:1: the header row has no 'email' column",
        hint="the first row must name the columns, e.g. email,name; exports of Mailchimp, "
        "listmonk, Substack and Buttondown are read as they come",
    )


class Layout:
    """A format compiled to the column positions of one file's header."""

    def __init__(
        self, export: ExportFormat, header: Sequence[str], path: Path, theme_names: Sequence[str]
    ) -> None:
        self.format = export
        # Where each column is (the first, when a tool's export repeats one); blank ones are none.
        at = {column: index for index, column in reversed(list(enumerate(header))) if column}
        email = next(column for column in export.email if column in at)
        status = next((column for column in export.status if column in at), None)
        parts = next((group for group in export.name_from if set(group) & at.keys()), ())
        consent = [
            (at[time], words, at.get(address))
            for time, words, address in export.consent
            if time in at
        ]
        read = {email, status, *parts, export.themes, export.tags, export.json_attributes}
        read |= {time for time, _, _ in export.consent} | {ip for _, _, ip in export.consent}
        _refuse_repeats(header, path, read if export is not PLAIN else None)
        self.email_at = at[email]
        self.detail = ""
        self._status: Status = ""
        for column, kind, detail in export.kinds:
            if column in at:
                self._status, self.detail = kind, detail
                break
        self._status_at = at[status] if status else None
        self._status_column = status
        self._status_known = ", ".join(word for word in export.statuses if word)
        self._name_at = tuple(at[part] for part in parts if part in at)
        self._consent_at = consent
        self._themes_at = at.get(export.themes)
        self._tags_at = at.get(export.tags)
        self._json_at = at.get(export.json_attributes)
        self._json_name = export.json_attributes
        # A `themes` cell names config themes, matched whatever their case.
        self._themes = {name.casefold(): name for name in theme_names}
        self._extra = [
            (index, column)
            for index, column in enumerate(header)
            if column
            and at[column] == index
            and column not in read
            and column not in export.ignored
        ]

    def read(self, values: Sequence[str]) -> Fields | str:
        """One row's fields, or why the row is bad."""
        count = len(values)
        status = self._status
        if self._status_at is not None:
            word = _cell(values, self._status_at).lower()
            mapped = self.format.statuses.get(word)
            if mapped is None:
                return f"{self._status_column} {word!r} is not one of {self._status_known}"
            status = mapped or status
        attributes = {
            name: single_line(values[index])[:MAX_ATTRIBUTE]
            for index, name in self._extra
            if index < count and values[index].strip()
        }
        themes: list[str] | None = None
        if self._themes_at is not None:
            names = _names(_cell(values, self._themes_at), _THEME_SEPARATORS, None)
            themes, unknown = self._themes_of(names)
            if unknown:
                known = ", ".join(self._themes.values()) or "none are configured"
                return f"no theme {unknown!r} in config.toml ({known})"
        if self._tags_at is not None and (tags := _cell(values, self._tags_at)):
            # Only tags that are all themes choose the reader's themes: one tag that happens
            # to share a theme's name would otherwise narrow their digest to that theme.
            names = _names(tags, _TAG_SEPARATORS, _TAG_WRAPPING)
            themes, unknown = self._themes_of(names)
            if unknown:
                attributes[self.format.tags] = ", ".join(names)[:MAX_ATTRIBUTE]
        json_at = self._json_at
        if json_at is not None and json_at < count and (cell := values[json_at].strip()):
            parsed = _json_attributes(cell)
            if isinstance(parsed, str):
                if self.format.json_strict:
                    return f"the {self._json_name} cell is not a JSON object: {parsed}"
                attributes[self._json_name] = single_line(cell)[:MAX_ATTRIBUTE]
            else:
                attributes = {**parsed, **attributes}  # the export's own columns win
        return self._name(values), attributes, status, self._consent(values), themes

    def _name(self, values: Sequence[str]) -> str:
        parts = self._name_at
        if len(parts) == 1:
            return _cell(values, parts[0])[:MAX_NAME]
        return " ".join(filter(None, (_cell(values, index) for index in parts)))[:MAX_NAME]

    def _consent(self, values: Sequence[str]) -> str:
        said = []
        for time_at, words, address_at in self._consent_at:
            if when := _cell(values, time_at):
                # The client's network, not its address, as for a signup here (consent.py).
                network = "" if address_at is None else client_network(_cell(values, address_at))
                said.append(" ".join(filter(None, (words, when, network and f"from {network}"))))
        if self.format is PLAIN:
            return ", ".join(said)
        return f"{self.format.name} export" + (": " + ", ".join(said) if said else "")

    def _themes_of(self, names: list[str]) -> tuple[list[str] | None, str]:
        """The themes of these names, in config order (None for no names), and the first name
        that is not a theme."""
        if not names:
            return None, ""
        for name in names:
            if name.casefold() not in self._themes:
                return None, name
        chosen = {self._themes[name.casefold()] for name in names}
        return [name for name in self._themes.values() if name in chosen], ""


def _names(cell: str, separators: re.Pattern[str], wrapping: str | None) -> list[str]:
    return [name for part in separators.split(cell) if (name := part.strip(wrapping))]


def _refuse_repeats(header: Sequence[str], path: Path, read: set[str | None] | None) -> None:
    """Two of one column: which one holds the address, or the name? Guessing would import the
    other as an attribute (or lose it). Our layout refuses any; a tool's export only those it
    reads (Mailchimp repeats a merge field that shares a name with its UNSUB_ columns), and
    keeps the first of the others."""
    named: set[str] = set()
    for column in header:
        if column and column.casefold() in named and (read is None or column in read):
            raise ImportFileError(
                f"{path}:1: the header row names the column {column!r} twice",
                hint="rename or remove one of them; nothing was imported",
            )
        named.add(column.casefold())


def _json_attributes(cell: str) -> dict[str, str] | str:
    """A JSON object's members as attributes: strings as they are, other values as compact
    JSON; or why the cell is not a JSON object."""
    try:
        parsed = json.loads(cell)
        if parsed is None:
            return {}
        if not isinstance(parsed, dict):
            return f"a JSON {type(parsed).__name__}, not an object"
        attributes: dict[str, str] = {}
        for key, value in parsed.items():
            if value is None:
                continue
            text = (
                value
                if isinstance(value, str)
                else json.dumps(value, ensure_ascii=False, separators=(",", ":"))
            )
            if (name := single_line(key)) and (text := single_line(text)):
                attributes[name] = text[:MAX_ATTRIBUTE]
        return attributes
    except json.JSONDecodeError as exc:
        return f"{exc.msg} at character {exc.pos + 1}"
    except ValueError:  # Python reads no integer of over 4,300 digits
        return "a number too long to read"
    except RecursionError:  # a cell can nest a list 100,000 deep
        return "nested too deeply"


def _cell(values: Sequence[str], index: int | None) -> str:
    return single_line(values[index]) if index is not None and index < len(values) else ""
