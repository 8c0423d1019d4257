"""Subscriber imports: exact, atomic, and never re-subscribing someone who left.

Driven through `app.subscribers`; what the CLI prints about an import is in
tests/test_cli_audience.py.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import pytest
from sqlmodel import select

from newsletter.app import Newsletter
from newsletter.audience.importer import ImportReport
from newsletter.config import load_settings
from newsletter.errors import DatabaseError, ImportFileError, UnknownListError
from newsletter.models import Subscriber, Subscription
from tests.conftest import Project

WEEKLY_CSV = Path("subscribers") / "weekly.csv"  # the shipped sample list of six readers
# Files the CLI tests import too.
BAD_ROWS = (
    "email,name\nok@example.com,Ok\nnot-an-address,Bad\n"
    "fine@example.com,Fine\nalso@bad@example.com,\n"
)  # lines 3 and 5 are not addresses
SPREADSHEET = "\ufeffemail;name\nok@example.com;Ok\nbroken;No\n"  # line 3 is not an address
CASE_VARIANTS = "email,name\nAda@Example.com,Ada\nada@EXAMPLE.COM,Ada 2\n"
INTERNATIONAL = "email,name\nuser@bücher.example,Idn\nzoë@example.com,Zoe\n"


def write(project: Project, name: str, text: str) -> Path:
    path = project.folder / name
    path.write_bytes(text.encode("utf-8"))
    return path


def app_on(project: Project) -> Newsletter:
    """An app on the project's config as it is now (after a test changed it)."""
    return Newsletter(load_settings(project.config_path))


def tally(report: ImportReport) -> tuple[int, int, int, int, int, int]:
    """added, unchanged, updated, suppressed, skipped, repeated."""
    return (
        report.added,
        report.unchanged,
        report.updated,
        report.suppressed,
        len(report.skipped),
        len(report.repeated),
    )


def lines_named(path: Path, notes: Iterable[str]) -> list[int]:
    """The line numbers that `FILE:LINE: reason` notes about `path` name, in order."""
    prefix = f"{path}:"
    numbers: list[int] = []
    for note in notes:
        assert note.startswith(prefix), note
        numbers.append(int(note.removeprefix(prefix).split(":", 1)[0]))
    return numbers


def emails(app: Newsletter, slug: str = "weekly", status: str | None = None) -> list[str]:
    return [row.email for row in app.subscribers.listed(slug, status)]


def stored_rows(app: Newsletter) -> tuple[int, int]:
    """How many subscribers and subscriptions the database holds."""
    with app.session() as session:
        return (
            len(session.exec(select(Subscriber)).all()),
            len(session.exec(select(Subscription)).all()),
        )


def test_a_bad_row_anywhere_writes_nothing(newsletter: Newsletter, project: Project) -> None:
    path = write(project, "bad.csv", BAD_ROWS)
    with pytest.raises(ImportFileError) as refused:
        newsletter.subscribers.import_csv(path, "weekly")
    assert lines_named(path, refused.value.message.splitlines()) == [3, 5]
    assert stored_rows(newsletter) == (0, 0)
    newsletter.feeds.fetch()
    assert newsletter.sending.send("weekly", dry_run=True).no_audience


def test_skip_invalid_imports_the_good_rows(newsletter: Newsletter, project: Project) -> None:
    path = write(project, "mixed.csv", SPREADSHEET)
    report = newsletter.subscribers.import_csv(path, "weekly", skip_invalid=True)
    assert tally(report) == (1, 0, 0, 0, 1, 0)
    assert lines_named(path, report.skipped) == [3]
    # The byte-order mark and the semicolons are read as a spreadsheet writes them.
    assert [
        (row.email, row.name, row.status) for row in newsletter.subscribers.listed("weekly")
    ] == [("ok@example.com", "Ok", "active")]


def test_case_variants_are_one_subscriber_and_reimport_is_idempotent(
    newsletter: Newsletter, project: Project
) -> None:
    path = write(project, "case.csv", CASE_VARIANTS)
    first = newsletter.subscribers.import_csv(path, "weekly")
    assert tally(first) == (1, 0, 0, 0, 0, 1)
    assert lines_named(path, first.repeated) == [3]
    listed = newsletter.subscribers.listed("weekly")
    assert [(row.email, row.name) for row in listed] == [("Ada@example.com", "Ada")]
    # ada@example.com in the sample list is the same person as Ada@Example.com; its row
    # there gives her another name.
    assert tally(newsletter.subscribers.import_csv(WEEKLY_CSV, "weekly")) == (5, 0, 1, 0, 0, 0)
    assert tally(newsletter.subscribers.import_csv(WEEKLY_CSV, "weekly")) == (0, 6, 0, 0, 0, 0)
    names = {row.email: row.name for row in newsletter.subscribers.listed("weekly")}
    assert len(names) == 6
    assert names["Ada@example.com"] == "Ada Lovelace"
    assert stored_rows(newsletter) == (6, 6)


def test_unknown_list_is_a_clear_error(newsletter: Newsletter) -> None:
    with pytest.raises(UnknownListError):
        newsletter.subscribers.import_csv(WEEKLY_CSV, "daily")
    assert stored_rows(newsletter) == (0, 0)


def test_missing_email_column_names_the_file(newsletter: Newsletter, project: Project) -> None:
    path = write(project, "nohead.csv", "ada@example.com,Ada\n")
    with pytest.raises(ImportFileError) as refused:
        newsletter.subscribers.import_csv(path, "weekly")
    assert lines_named(path, [refused.value.message]) == [1]
    assert stored_rows(newsletter) == (0, 0)


def test_international_addresses(newsletter: Newsletter, project: Project) -> None:
    path = write(project, "idn.csv", INTERNATIONAL)
    report = newsletter.subscribers.import_csv(path, "weekly", skip_invalid=True)
    assert tally(report) == (1, 0, 0, 0, 1, 0)
    assert lines_named(path, report.skipped) == [3]  # zoë@: non-ASCII before the @
    assert emails(newsletter) == ["user@bücher.example"]
    newsletter.feeds.fetch()
    assert newsletter.sending.send("weekly").summary.sent == 1
    delivered = project.folder / "outbox" / "new"
    (message,) = [p.read_text() for p in delivered.iterdir()]
    assert "Delivered-To: user@xn--bcher-kva.example" in message


def test_unreadable_inputs_are_refused_as_newsletter_errors(
    newsletter: Newsletter, project: Project
) -> None:
    with pytest.raises(ImportFileError) as refused:
        newsletter.subscribers.import_csv(project.folder, "weekly")
    assert refused.value.message.startswith(f"{project.folder}:")
    assert stored_rows(newsletter) == (0, 0)
    data = project.config()
    data["database"]["url"] = "nonsense://x"
    project.write_config(data)
    with app_on(project) as app, pytest.raises(DatabaseError):
        app.reports.database_ready()
