"""Importing a subscriber CSV into a list: set-based, in one transaction, honouring a `status`
column (or another tool's way of saying it, see `formats`) so a list moved between tools keeps
out everyone who left."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from sqlalchemy import and_, bindparam, func, update
from sqlalchemy import select as core_select
from sqlmodel import Session, col

from newsletter.audience import lifecycle
from newsletter.audience.addresses import email_hash, email_key
from newsletter.audience.csv_io import Row, SubscriberCsv
from newsletter.audience.store import LEFT, PERSON_SUPPRESSIONS, chunks, suppressed_hashes
from newsletter.db import bulk_insert
from newsletter.errors import ImportFileError
from newsletter.models import (
    MailingList,
    Subscriber,
    SubscriberStatus,
    Subscription,
    SubscriptionStatus,
    utcnow,
)


@dataclass
class ImportReport:
    added: int = 0  # new on this list (active, or pending on a double opt-in list)
    unchanged: int = 0  # already on the list
    updated: int = 0  # already on the list, with a new name or attributes from the file
    repeated: list[str] = field(default_factory=list)  # "FILE:LINE: ..." for a second row
    suppressed: int = 0
    skipped: list[str] = field(default_factory=list)
    pending: list[int] = field(default_factory=list)  # subscriber ids awaiting confirmation
    format_name: str = "plain"  # the layout the header was read as: ours, or "Mailchimp", ...
    format_detail: str = ""  # which of the tool's files, when it writes several


def _consent(path: Path, row: Row) -> str:
    """Where a subscription's consent comes from: the file's line, and an export's own record."""
    return f"{path.name}:{row.line}" + (f" (earlier: {row.consent})" if row.consent else "")


# Bad rows a refusal names; past this it counts them (a file of garbage would otherwise make
# a message as big as itself). --skip-invalid reports every one it skips.
SHOWN_PROBLEMS = 1000


def import_subscribers(
    session: Session,
    mailing_list: MailingList,
    path: Path,
    *,
    double_opt_in: bool = False,
    skip_invalid: bool = False,
    theme_names: Sequence[str] = (),
) -> ImportReport:
    """Import a CSV into a list in one transaction; a bad row writes nothing unless skip_invalid.

    Streamed: each chunk of the file is written as it is read, inside the one transaction,
    which is rolled back if a bad row turns up later; so memory does not grow with the file
    (beyond the first line of each address, see `SubscriberCsv`). Set-based: a few queries
    per 500 rows, so 100,000 rows take seconds, not minutes.
    """
    list_id = mailing_list.id
    assert list_id is not None
    try:
        keep = None if skip_invalid else SHOWN_PROBLEMS
        with SubscriberCsv(path, keep_problems=keep, theme_names=theme_names) as file:
            report = ImportReport(
                skipped=file.problems,
                repeated=file.repeated,
                format_name=file.layout.format.name,
                format_detail=file.layout.detail,
            )
            chunk = _Chunk(session, list_id, path, report, double_opt_in)
            for rows in file.chunks():
                if file.bad_rows and not skip_invalid:
                    continue  # nothing will be written: read on only to name every bad row
                chunk.write(rows)
            if file.bad_rows and not skip_invalid:
                unnamed = file.bad_rows - len(file.problems)
                more = [f"{path}: and {unnamed:,} more bad rows"] if unnamed else []
                # A refusal names a tool's layout too: a misread file shows here first.
                name = report.format_name
                read_as = f" (read as a {name} export)" if name != "plain" else ""
                raise ImportFileError(
                    "\n".join([*file.problems, *more]),
                    hint=f"{file.bad_rows} bad row(s), nothing imported{read_as}; "
                    "fix them or use --skip-invalid",
                )
    except BaseException:
        session.rollback()
        raise
    session.commit()
    return report


class _Chunk:
    """Writes the rows of an import a chunk at a time (the caller commits once, at the end).
    A file names each address once, so every chunk is about other people than the last."""

    def __init__(
        self,
        session: Session,
        list_id: int,
        path: Path,
        report: ImportReport,
        double_opt_in: bool,
    ) -> None:
        self.session = session
        self.list_id = list_id
        self.path = path
        self.report = report
        self.double_opt_in = double_opt_in
        self.now = utcnow()
        self.stamp = self.now.replace(tzinfo=None)  # database form of a time, for bulk_insert

    def write(self, rows: Sequence[Row]) -> None:
        session, list_id, path, report = self.session, self.list_id, self.path, self.report
        now, stamp = self.now, self.stamp
        keys = [email_key(row.email) for row in rows]
        known = _subscribers_by_key(session, list_id, keys)
        unknown = [(row, key) for row, key in zip(rows, keys, strict=True) if key not in known]
        forgotten = suppressed_hashes(session, [email_hash(row.email) for row, _ in unknown])
        fresh = [(row, key) for row, key in unknown if email_hash(row.email) not in forgotten]
        if fresh:
            newest = session.execute(core_select(func.max(Subscriber.id))).scalar() or 0
            bulk_insert(
                session,
                "subscriber",
                (
                    "email",
                    "email_key",
                    "name",
                    "status",
                    "attributes",
                    "themes",
                    "created_at",
                    "updated_at",
                ),
                (
                    (
                        row.email,
                        key,
                        row.name,
                        row.status
                        if row.status in PERSON_SUPPRESSIONS
                        else SubscriberStatus.ACTIVE,
                        json.dumps(row.attributes),
                        None if row.themes is None else json.dumps(row.themes),
                        stamp,
                        stamp,
                    )
                    for row, key in fresh
                ),
            )
            known.update(_subscribers_after(session, newest))

        joining: list[tuple[Any, ...]] = []
        edits: list[dict[str, Any]] = []
        leaving_people: list[tuple[int, SubscriberStatus]] = []
        leaving_list: list[tuple[int, str]] = []
        for row, key in zip(rows, keys, strict=True):
            subscriber = known.get(key)
            left = row.status in LEFT  # the file says so: an export from another list or tool
            if subscriber is None or subscriber.status != SubscriberStatus.ACTIVE or left:
                report.suppressed += 1
                if subscriber is None or not left:  # forgotten, or already left: nothing to add
                    continue
                if (
                    row.status in PERSON_SUPPRESSIONS
                    and subscriber.status == SubscriberStatus.ACTIVE
                ):
                    leaving_people.append((subscriber.id, SubscriberStatus(row.status)))
                membership = subscriber.membership
                reason = f"{row.status} before the import of {path.name}"
                if membership is None:  # on the list as someone who left, so they stay out
                    joining.append(
                        (list_id, subscriber.id, SubscriptionStatus.UNSUBSCRIBED, "import",
                         _consent(path, row), stamp, stamp, None, stamp, reason)
                    )  # fmt: skip
                elif membership != SubscriptionStatus.UNSUBSCRIBED:
                    leaving_list.append((subscriber.id, reason))
                continue
            membership = subscriber.membership
            if membership == SubscriptionStatus.UNSUBSCRIBED:
                report.suppressed += 1
            elif membership is not None:
                merged = {**subscriber.attributes, **row.attributes}
                # Themes on record (the reader's own, or an earlier file's) are kept.
                themes = row.themes if subscriber.themes is None else subscriber.themes
                if (
                    (row.name and row.name != subscriber.name)
                    or merged != subscriber.attributes
                    or themes != subscriber.themes
                ):
                    report.updated += 1
                    edits.append(
                        {
                            "subscriber_id": subscriber.id,
                            "name": row.name or subscriber.name,
                            "attributes": merged,
                            "themes": themes,
                            "updated_at": now,
                        }
                    )
                else:
                    report.unchanged += 1
            else:
                # Someone an earlier list had as pending never confirmed: pending here too.
                pending = self.double_opt_in or row.status == "pending"
                joining.append(
                    (
                        list_id,
                        subscriber.id,
                        SubscriptionStatus.PENDING if pending else SubscriptionStatus.ACTIVE,
                        "import",
                        _consent(path, row),
                        stamp,
                        stamp,
                        None if pending else stamp,
                        None,
                        "",
                    )
                )
                report.added += 1
                if self.double_opt_in:
                    report.pending.append(subscriber.id)
        if joining:
            bulk_insert(
                session,
                "subscription",
                (
                    "list_id",
                    "subscriber_id",
                    "status",
                    "origin",
                    "consent",
                    "created_at",
                    "updated_at",
                    "confirmed_at",
                    "unsubscribed_at",
                    "unsubscribe_reason",
                ),
                joining,
            )
        lifecycle.mark_people_left(session, leaving_people, now)
        lifecycle.unsubscribe_many(session, list_id, leaving_list, now)
        if edits:
            session.connection().execute(
                update(Subscriber)
                .where(col(Subscriber.id) == bindparam("subscriber_id"))
                .values(
                    name=bindparam("name"),
                    attributes=bindparam("attributes"),
                    themes=bindparam("themes"),
                    updated_at=bindparam("updated_at"),
                ),
                edits,
            )


class _Known(NamedTuple):  # not a dataclass: an import makes one per row
    id: int
    status: SubscriberStatus
    name: str
    attributes: dict[str, str]
    membership: str | None  # their subscription's status on the list, if any
    themes: list[str] | None = None


def _subscribers_by_key(session: Session, list_id: int, keys: Sequence[str]) -> dict[str, _Known]:
    """The subscribers with these keys, and their status on the list (one query per 500)."""
    found: dict[str, _Known] = {}
    columns = (
        col(Subscriber.email_key),
        col(Subscriber.id),
        col(Subscriber.status),
        col(Subscriber.name),
        col(Subscriber.attributes),
        col(Subscription.status),
        col(Subscriber.themes),
    )
    on_list = and_(
        col(Subscription.subscriber_id) == Subscriber.id, col(Subscription.list_id) == list_id
    )
    for chunk in chunks(keys):
        query = core_select(*columns).outerjoin(Subscription, on_list)
        for key, id_, status, name, attributes, membership, themes in session.execute(
            query.where(col(Subscriber.email_key).in_(chunk))
        ).all():
            found[key] = _Known(id_, status, name, attributes or {}, membership, themes)
    return found


def _subscribers_after(session: Session, newest: int) -> dict[str, _Known]:
    """Subscribers added after id `newest`: the ones an import just inserted. Their names and
    attributes are not read back: they are new, so nothing compares against them, and no list
    has them yet."""
    query = core_select(col(Subscriber.email_key), col(Subscriber.id), col(Subscriber.status))
    return {
        key: _Known(id_, status, "", {}, None)
        for key, id_, status in session.execute(query.where(col(Subscriber.id) > newest))
    }
