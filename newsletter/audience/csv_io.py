"""Subscriber files: reading an import's CSV (streamed, checked row by row) and writing an
export.

Formula escaping, both ways. A spreadsheet runs a cell that starts with =, +, - or @ (CSV
injection), so an export writes such a cell with a leading apostrophe: names, attributes,
attribute column names, consent, and the email column, since `=cmd|'/Ccalc'!A0@example.com` is
a valid address. An import undoes it where it can tell: an email cell (or a column name) that is
one apostrophe, then apostrophes or one of = + - @, loses that first apostrophe when what is left
is still a valid address (any column name), so an exported list imports as it was. An address
that really starts with an apostrophe before one of those is exported with a second one.
"""

from __future__ import annotations

import csv
import io
import os
import re
from collections import deque
from collections.abc import Generator, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from itertools import chain
from pathlib import Path
from types import TracebackType
from typing import BinaryIO, TextIO

from sqlmodel import Session

from newsletter.audience.addresses import AddressCheck, check_address, email_key
from newsletter.audience.formats import MAX_ATTRIBUTE as MAX_ATTRIBUTE
from newsletter.audience.formats import MAX_NAME as MAX_NAME
from newsletter.audience.formats import Layout, Status, layout_for
from newsletter.audience.store import list_subscribers
from newsletter.errors import ImportFileError
from newsletter.models import MailingList

CHUNK = 5_000  # rows read, checked and handed on at a time: what a file costs in memory
# Characters in one line of the file: far over any real row (csv allows 128 KiB a field), and a
# file without line breaks is not held whole.
_LINE_LIMIT = 1 << 20
_PARALLEL_FROM = 20_000  # rows; below this a process pool costs more than it saves


@dataclass(frozen=True)
class Row:
    line: int
    email: str
    name: str
    attributes: dict[str, str]
    status: Status = ""  # an export's own status (`formats`): who left stays out
    consent: str = ""  # from a `consent` column: where the consent was first given
    themes: list[str] | None = None  # from a `themes` column; None: no such cell, keep theirs


_ESCAPED = re.compile(r"'+[=+\-@]")


def check_import_address(raw: str) -> AddressCheck:
    """Check an email cell: spreadsheet padding stripped, an export's formula escape undone."""
    address = raw.strip(" \t")
    if _ESCAPED.match(address):
        unescaped = check_address(address[1:])
        if unescaped.verdict == "valid":
            return unescaped
    return check_address(address)


def _check_chunk(raws: Sequence[str]) -> list[AddressCheck]:
    return [check_import_address(raw) for raw in raws]


class SubscriberCsv:
    """An import's CSV, read once from start to end in chunks of rows, never whole.

    The header is read (and refused, with `FILE:1: reason`) on opening, and tells the layout:
    ours, or another tool's export (`layout.format`, see `formats`). `chunks()` yields the
    good rows, checked, a chunk at a time; `problems` (`FILE:LINE: reason`, the first
    `keep_problems` of them when that is set; `bad_rows` counts them all) and `repeated` (a
    row whose address an earlier row had: the first counts) fill as they go. What is kept for
    the whole file is the first line of each address, to know a repeat."""

    def __init__(
        self,
        path: Path,
        *,
        keep_problems: int | None = None,
        theme_names: Sequence[str] = (),
    ) -> None:
        self.path = path
        self._theme_names = theme_names
        self.problems: list[str] = []
        self.repeated: list[str] = []
        self.bad_rows = 0
        self._keep = keep_problems
        self._first_line: dict[str, int] = {}  # email key -> the line that counts
        self._chunks: Generator[list[Row]] | None = None
        try:
            self._binary: BinaryIO = path.open("rb")
        except FileNotFoundError:
            raise ImportFileError(f"{path}: no such file") from None
        except IsADirectoryError:
            raise ImportFileError(f"{path}: is a folder", hint="name the CSV file itself") from None
        except OSError as exc:
            raise ImportFileError(f"{path}: cannot read: {exc.strerror}") from None
        self._text = io.TextIOWrapper(self._binary, encoding="utf-8-sig", newline="")
        self._lines_read = 0
        try:
            self._start()
        except BaseException:
            self.close()
            raise

    def __enter__(self) -> SubscriberCsv:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        if self._chunks is not None:
            self._chunks.close()  # lets a process pool go
        self._text.close()

    def _start(self) -> None:
        lines = self._lines()
        with self._readable():
            first_line = next(lines, "")
            delimiter = max(",;\t", key=first_line.count)
            self._reader = csv.reader(chain([first_line], lines), delimiter=delimiter)
            header = [_unescaped_name(column.strip()).lower() for column in next(self._reader, [])]
        self.layout: Layout = layout_for(header, self.path, self._theme_names)

    def _lines(self) -> Iterator[str]:
        readline = self._text.readline
        while line := readline(_LINE_LIMIT):
            self._lines_read += 1
            if len(line) == _LINE_LIMIT and not line.endswith(("\n", "\r")):
                raise ImportFileError(
                    f"{self.path}:{self._lines_read}: a line of over {_LINE_LIMIT:,} characters",
                    hint="is this a CSV file with one reader a line?",
                )
            yield line

    @contextmanager
    def _readable(self) -> Iterator[None]:
        """Turns what the decoder and the csv module raise into `FILE:LINE: reason`."""
        try:
            yield
        except UnicodeDecodeError as exc:
            # The decoder's input is the bytes it was handed last, which end where the file
            # has been read to.
            at = self._binary.tell() - len(exc.object) + exc.start
            raise ImportFileError(
                f"{self.path}:{_line_at(self.path, at)}: not UTF-8 text (byte {at})",
                hint="save the file as UTF-8 CSV",
            ) from None
        except csv.Error as exc:
            raise ImportFileError(
                f"{self.path}:{self._reader.line_num}: not readable as CSV: {exc}",
                hint="check the quotes on that line",
            ) from None

    def chunks(self) -> Generator[list[Row]]:
        """The good rows, a chunk at a time, in the file's order."""
        self._chunks = self._checked_chunks()
        return self._chunks

    def _records(self) -> Iterator[list[tuple[int, list[str]]]]:
        """The file's rows with their line numbers, blank ones left out, CHUNK at a time."""
        reader = self._reader
        batch: list[tuple[int, list[str]]] = []
        with self._readable():
            for values in reader:
                if "".join(values).strip():  # a row of blank cells is no row
                    batch.append((reader.line_num, values))
                    if len(batch) == CHUNK:
                        yield batch
                        batch = []
        if batch:
            yield batch

    def _checked_chunks(self) -> Generator[list[Row]]:
        records = self._records()
        first = next(records, None)
        if first is None:
            return
        workers = os.cpu_count() or 1
        if workers < 2 or len(first) < CHUNK or self._expected_rows(len(first)) < _PARALLEL_FROM:
            for batch in chain([first], records):
                yield self._rows(batch, _check_chunk(self._raws(batch)))
            return
        # Addresses are checked on every core while this process reads on and the importer
        # writes; a few chunks ahead at most, so memory stays a few chunks.
        with ProcessPoolExecutor(workers) as pool:
            ahead: deque[tuple[list[tuple[int, list[str]]], Future[list[AddressCheck]]]] = deque()
            try:
                ahead.append((first, pool.submit(_check_chunk, self._raws(first))))
                for batch in records:
                    ahead.append((batch, pool.submit(_check_chunk, self._raws(batch))))
                    if len(ahead) > 2 * workers:
                        done, checks = ahead.popleft()
                        yield self._rows(done, checks.result())
                while ahead:
                    done, checks = ahead.popleft()
                    yield self._rows(done, checks.result())
            finally:
                for _, pending in ahead:
                    pending.cancel()

    def _expected_rows(self, rows_read: int) -> float:
        """How many rows the file has, going by the size of the ones read so far."""
        read = max(self._binary.tell(), 1)
        return rows_read * os.fstat(self._binary.fileno()).st_size / read

    def _raws(self, batch: list[tuple[int, list[str]]]) -> list[str]:
        email_at = self.layout.email_at
        return [values[email_at] if email_at < len(values) else "" for _, values in batch]

    def _rows(self, batch: list[tuple[int, list[str]]], checks: list[AddressCheck]) -> list[Row]:
        rows: list[Row] = []
        path, first_line, read = self.path, self._first_line, self.layout.read
        email_at = self.layout.email_at
        for (line, values), check in zip(batch, checks, strict=True):
            if check.verdict != "valid":
                raw = values[email_at].strip() if email_at < len(values) else ""
                self._problem(
                    line,
                    f"{raw!r} is not an address we can mail: {check.reason}"
                    if raw
                    else "the email column is empty",
                )
                continue
            fields = read(values)
            if isinstance(fields, str):
                self._problem(line, fields)
                continue
            key = email_key(check.normalized)
            if key in first_line:
                self.repeated.append(
                    f"{path}:{line}: the address of line {first_line[key]} again; not used"
                )
                continue
            first_line[key] = line
            rows.append(Row(line, check.normalized, *fields))
        return rows

    def _problem(self, line: int, reason: str) -> None:
        self.bad_rows += 1
        if self._keep is None or len(self.problems) < self._keep:
            self.problems.append(f"{self.path}:{line}: {reason}")


def _line_at(path: Path, offset: int) -> int:
    """The line of the file that byte `offset` is on (only when reporting a bad byte)."""
    lines = 1
    with path.open("rb") as handle:
        while offset > 0 and (block := handle.read(min(offset, 1 << 20))):
            lines += block.count(b"\n")
            offset -= len(block)
    return lines


def _unescaped_name(column: str) -> str:
    return column[1:] if _ESCAPED.match(column) else column


_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_ESCAPE_AGAIN = re.compile(r"'+[=+\-@\t\r]")


def _cell(value: str) -> str:
    """A spreadsheet must not run what a subscriber typed as their name (CSV injection)."""
    return "'" + value if value.startswith(_FORMULA_START) else value


def _reversible_cell(value: str) -> str:
    """`_cell` for what an import unescapes (an address, a column name): one that already
    starts with apostrophes before a formula character gets one more, to lose on import."""
    return "'" + value if value.startswith(_FORMULA_START) or _ESCAPE_AGAIN.match(value) else value


def write_csv(
    session: Session, mailing_list: MailingList, out: TextIO, status: str | None = None
) -> int:
    """Write a list as CSV (email, name, status, since, consent, themes, then every attribute
    seen)
    and return how many rows. Two passes over the database, the first for the attribute
    columns, so that a list of millions is written without being held in memory."""
    extra = sorted(
        {key for row in list_subscribers(session, mailing_list, status) for key in row.attributes}
    )
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(
        [
            "email",
            "name",
            "status",
            "since",
            "consent",
            "themes",
            *(_reversible_cell(k) for k in extra),
        ]
    )
    written = 0
    for row in list_subscribers(session, mailing_list, status):
        writer.writerow(
            [
                _reversible_cell(row.email),
                _cell(row.name),
                row.status,
                row.since,
                _cell(row.consent),
                _cell("; ".join(row.themes or ())),
                *(_cell(row.attributes.get(key, "")) for key in extra),
            ]
        )
        written += 1
    return written
