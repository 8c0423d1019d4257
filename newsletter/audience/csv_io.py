"""Subscriber files: reading an import's CSV (checked row by row) and writing an export."""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, TextIO

from sqlmodel import Session

from newsletter.audience.addresses import AddressCheck, check_address, email_key
from newsletter.audience.store import STATUSES, MemberStatus, chunks, list_subscribers
from newsletter.errors import ImportFileError
from newsletter.feeds.sanitize import single_line
from newsletter.models import MailingList

MAX_NAME = 200  # characters: a name goes into the To: header of every message
MAX_ATTRIBUTE = 1000


@dataclass(frozen=True)
class Row:
    line: int
    email: str
    name: str
    attributes: dict[str, str]
    status: MemberStatus | Literal[""] = ""  # an export's `status` column: who left stays out
    consent: str = ""  # from a `consent` column: where the consent was first given


_PARALLEL_FROM = 20_000  # rows; below this a process pool costs more than it saves


def check_addresses(raws: Sequence[str]) -> list[AddressCheck]:
    """Check many addresses (spreadsheet padding stripped), on every core for big files."""
    padded = [raw.strip(" \t") for raw in raws]
    workers = os.cpu_count() or 1
    if len(padded) < _PARALLEL_FROM or workers < 2:
        return [check_address(raw) for raw in padded]
    size = -(-len(padded) // (workers * 4))
    with ProcessPoolExecutor(workers) as pool:
        checked = pool.map(_check_chunk, chunks(padded, size))
        return [check for chunk in checked for check in chunk]


def _check_chunk(raws: Sequence[str]) -> list[AddressCheck]:
    return [check_address(raw) for raw in raws]


def read_subscriber_csv(path: Path) -> tuple[list[Row], list[str], list[str]]:
    """Rows, `FILE:LINE: reason` problems, and notes on rows that repeat an address (case
    variants of one address are one reader: the first row counts)."""
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except FileNotFoundError:
        raise ImportFileError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise ImportFileError(f"{path}: is a folder", hint="name the CSV file itself") from None
    except OSError as exc:
        raise ImportFileError(f"{path}: cannot read: {exc.strerror}") from None
    except UnicodeDecodeError as exc:
        raise ImportFileError(
            f"{path}: not UTF-8 text (byte {exc.start})", hint="save the file as UTF-8 CSV"
        ) from None
    first_line = text.split("\n", 1)[0]
    delimiter = max(",;\t", key=first_line.count)
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    header = [column.strip().lower() for column in next(reader, [])]
    if "email" not in header:
        raise ImportFileError(
            f"{path}:1: the header row has no 'email' column",
            hint="the first row must name the columns, e.g. email,name",
        )
    email_at = header.index("email")
    name_at = header.index("name") if "name" in header else None
    status_at = header.index("status") if "status" in header else None
    consent_at = header.index("consent") if "consent" in header else None
    # An export's own columns: `since` is the date of that consent, not an attribute.
    extra = [
        (index, name)
        for index, name in enumerate(header)
        if index not in (email_at, name_at, status_at, consent_at) and name and name != "since"
    ]
    try:
        records = [
            (reader.line_num, values) for values in reader if any(value.strip() for value in values)
        ]
    except csv.Error as exc:
        raise ImportFileError(
            f"{path}:{reader.line_num}: not readable as CSV: {exc}",
            hint="check the quotes on that line",
        ) from None
    raws = [values[email_at] if email_at < len(values) else "" for _, values in records]
    rows: dict[str, Row] = {}
    problems: list[str] = []
    repeated: list[str] = []
    for (line, values), raw, check in zip(records, raws, check_addresses(raws), strict=True):
        if check.verdict != "valid":
            problem = (
                f"{raw.strip()!r} is not an address we can mail: {check.reason}"
                if raw.strip()
                else "the email column is empty"
            )
            problems.append(f"{path}:{line}: {problem}")
            continue
        status = _cell_at(values, status_at).lower()
        if status and status not in STATUSES:
            problems.append(f"{path}:{line}: status {status!r} is not one of {', '.join(STATUSES)}")
            continue
        name = _cell_at(values, name_at)[:MAX_NAME]
        attributes = {
            name_: single_line(values[index])[:MAX_ATTRIBUTE]
            for index, name_ in extra
            if index < len(values) and values[index].strip()
        }
        key = email_key(check.normalized)
        if key in rows:
            repeated.append(f"{path}:{line}: the address of line {rows[key].line} again; not used")
            continue
        rows[key] = Row(
            line,
            check.normalized,
            name,
            attributes,
            status,
            _cell_at(values, consent_at),
        )
    return list(rows.values()), problems, repeated


def _cell_at(values: Sequence[str], index: int | None) -> str:
    return single_line(values[index]) if index is not None and index < len(values) else ""


_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _cell(value: str) -> str:
    """A spreadsheet must not run what a subscriber typed as their name (CSV injection)."""
    return "'" + value if value.startswith(_FORMULA_START) else value


def write_csv(
    session: Session, mailing_list: MailingList, out: TextIO, status: str | None = None
) -> int:
    """Write a list as CSV (email, name, status, since, consent, then every attribute seen)
    and return how many rows. Two passes over the database, the first for the attribute
    columns, so that a list of millions is written without being held in memory."""
    extra = sorted(
        {key for row in list_subscribers(session, mailing_list, status) for key in row.attributes}
    )
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["email", "name", "status", "since", "consent", *extra])
    written = 0
    for row in list_subscribers(session, mailing_list, status):
        writer.writerow(
            [
                row.email,
                _cell(row.name),
                row.status,
                row.since,
                row.consent,
                *(_cell(row.attributes.get(key, "")) for key in extra),
            ]
        )
        written += 1
    return written
