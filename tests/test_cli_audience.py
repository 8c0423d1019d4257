"""What the audience commands print: `subscribers import/add/remove/confirm/list/export/show/
forget` and `lists` (their messages, exit codes, `FILE:LINE: reason` lines, the CSV on
stdout, the prompt). What they do is tested on the services in tests/test_subscribers.py
and tests/test_consent.py."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from newsletter.app import Newsletter
from newsletter.cli import app as cli_app
from tests.conftest import Project
from tests.test_consent import (
    OTHER_TOOL,
    TWO_READERS,
    UNCLOSED_QUOTE,
    WITH_ATTRIBUTES,
    confirm_link,
    double_opt_in,
    exported,
    tampered,
    token_of,
    with_alerts_list,
)
from tests.test_subscribers import (
    BAD_ROWS,
    CASE_VARIANTS,
    INTERNATIONAL,
    SPREADSHEET,
    WEEKLY_CSV,
    write,
)


def import_file(project: Project, path: Path | str, *options: str, expect: int = 0) -> str:
    """What `subscribers import FILE --list weekly` prints (stdout and stderr)."""
    result = project.cli(
        "subscribers", "import", str(path), "--list", "weekly", *options, expect=expect
    )
    return str(result.output)


def subscribers(project: Project, *args: str, expect: int = 0) -> str:
    return str(project.cli("subscribers", *args, expect=expect).output)


def says(project: Project, *steps: tuple[tuple[str, ...], str]) -> None:
    """Run `subscribers add|remove EMAIL [LIST]` (weekly when no list is named) step by step;
    each must print its message."""
    for (command, email, *slug), message in steps:
        output = subscribers(project, command, email, "--list", *(slug or ["weekly"]))
        assert message in output, (command, email, output)


def lists_line(project: Project, slug: str) -> str:
    """The line `newsletter lists` prints for one list."""
    lines = project.cli("lists").output.splitlines()
    return next(line for line in lines if line.startswith(f"{slug} "))


def answering(project: Project, answer: str, *args: str) -> Any:
    """Run a command that asks first, typing `answer` at its prompt."""
    return project.runner.invoke(
        cli_app, ["--config", str(project.config_path), *args], input=f"{answer}\n"
    )


def test_import_names_every_bad_row_and_exits_1(project: Project) -> None:
    path = write(project, "bad.csv", BAD_ROWS)
    output = import_file(project, path, expect=1)
    assert f"{path}:3: 'not-an-address' is not an address we can mail" in output
    assert f"{path}:5:" in output
    assert "nothing imported" in output
    project.cli("fetch")
    assert "No active subscribers" in project.cli("send", "--list", "weekly", "--dry-run").output


@pytest.mark.parametrize(
    ("name", "text", "reason"),
    [
        ("mixed.csv", SPREADSHEET, "'broken' is not an address we can mail"),
        ("idn.csv", INTERNATIONAL, "non-ASCII letters before the @"),
    ],
)
def test_skip_invalid_prints_each_skipped_row(
    project: Project, name: str, text: str, reason: str
) -> None:
    path = write(project, name, text)
    output = import_file(project, path, "--skip-invalid")
    assert "1 added" in output
    assert "1 skipped." in output
    skipped = [line for line in output.splitlines() if line.startswith("skipped ")]
    assert len(skipped) == 1
    assert skipped[0].startswith(f"skipped {path}:3: ")
    assert reason in skipped[0]


def test_import_summary_counts_repeats_updates_and_suppressions(project: Project) -> None:
    path = write(project, "case.csv", CASE_VARIANTS)
    first = import_file(project, path)
    assert "1 added" in first
    assert f"{path}:3: the address of line 2 again; not used" in first
    assert "0 skipped, 1 repeated an address." in first
    assert "5 added, 1 already subscribed (1 with a new name or attributes)" in import_file(
        project, WEEKLY_CSV
    )
    assert f"{WEEKLY_CSV}: 0 added, 6 already subscribed, 0 suppressed" in import_file(
        project, WEEKLY_CSV
    )
    subscribers(project, "remove", "ada@example.com", "--list", "weekly")
    assert (
        f"{WEEKLY_CSV}: 0 added, 5 already subscribed, 1 suppressed (left earlier; not re-added),"
        " 0 skipped." in import_file(project, WEEKLY_CSV)
    )


def test_unknown_list_is_a_clear_error(project: Project) -> None:
    result = project.cli("subscribers", "import", str(WEEKLY_CSV), "--list", "daily", expect=1)
    assert "no list 'daily'" in result.output
    assert "weekly" in result.output


def test_missing_email_column_names_the_file(project: Project) -> None:
    path = write(project, "nohead.csv", "ada@example.com,Ada\n")
    output = import_file(project, path, expect=1)
    assert f"{path}:1: the header row has no 'email' column" in output


def test_unreadable_inputs_are_one_line_errors(project: Project) -> None:
    assert "is a folder" in import_file(project, project.folder, expect=1)
    broken = write(project, "broken.csv", UNCLOSED_QUOTE)
    assert "not readable as CSV" in import_file(project, broken, expect=1)
    data = project.config()
    data["database"]["url"] = "nonsense://x"
    project.write_config(data)
    result = project.cli("init", expect=1)
    assert "[database] url 'nonsense://x'" in result.output


def test_confirm_takes_the_link_and_says_what_happened(project: Project) -> None:
    double_opt_in(project)
    assert "2 added" in import_file(project, write(project, "two.csv", TWO_READERS))
    assert lists_line(project, "weekly") == (
        "weekly “The Weekly Briefing” (double opt-in): "
        "active 0 · pending 2 · unsubscribed 0 · bounced 0 · complained 0"
    )
    link = confirm_link(next(m for m in project.outbox() if "ada@" in str(m["To"])))
    confirmed = subscribers(project, "confirm", link)
    assert "Confirmed: The Weekly Briefing." in confirmed
    assert "Already confirmed: The Weekly Briefing." in subscribers(project, "confirm", link)
    assert "not valid" in subscribers(project, "confirm", tampered(token_of(link)), expect=1)


def test_adding_a_pending_reader_again_says_a_fresh_link_went_out(project: Project) -> None:
    double_opt_in(project)
    for spelling in ("new@example.com", "NEW@example.com"):  # the second: the same reader
        output = subscribers(project, "add", spelling, "--list", "weekly")
        assert "new@example.com is pending: a confirmation mail went out." in output


def test_add_and_remove_say_what_happened_to_the_address_as_stored(project: Project) -> None:
    with_alerts_list(project)
    says(
        project,
        (("add", "New.Person@Example.COM"), "New.Person@example.com now receives weekly."),
        (("add", "new.person@example.com"), "New.Person@example.com was already on weekly."),
        (
            ("remove", "new.person@EXAMPLE.com"),
            "New.Person@example.com is unsubscribed from weekly.",
        ),
        (("remove", "New.Person@example.com"), "New.Person@example.com had already left weekly."),
        (
            ("remove", "New.Person@example.com", "alerts"),
            "New.Person@example.com is not on alerts.",
        ),
    )


def test_forget_show_and_re_adding_a_forgotten_address(project: Project) -> None:
    import_file(project, WEEKLY_CSV)
    forgot = subscribers(project, "forget", "alan@example.com", "--yes")
    assert "alan@example.com: erased; only a hash is kept so they are never re-added." in forgot
    added = subscribers(project, "add", "ALAN@example.com", "--list", "weekly", expect=1)
    assert "not re-added" in added
    shown = subscribers(project, "show", "alan@example.com", expect=1)
    assert "Nothing is stored about alan@example.com: it was forgotten on request" in shown
    never = subscribers(project, "show", "nobody@example.com", expect=1)
    assert "Nothing is stored about nobody@example.com." in never
    again = subscribers(project, "forget", "alan@example.com", "--yes")
    assert "Nothing is stored about alan@example.com." in again


def test_forget_asks_first_and_no_keeps_everything(project: Project) -> None:
    import_file(project, WEEKLY_CSV)
    declined = answering(project, "n", "subscribers", "forget", "ada@example.com")
    assert declined.exit_code == 1
    assert "Erase everything about ada@example.com?" in declined.output
    assert "erased" not in declined.output
    subscribers(project, "show", "ada@example.com")  # still there: exit 0
    accepted = answering(project, "y", "subscribers", "forget", "ada@example.com")
    assert accepted.exit_code == 0, accepted.output
    assert "ada@example.com: erased" in accepted.output
    subscribers(project, "show", "ada@example.com", expect=1)


def test_show_prints_the_record_as_json_and_export_writes_csv_to_stdout(
    project: Project, newsletter: Newsletter
) -> None:
    import_file(project, write(project, "attrs.csv", WITH_ATTRIBUTES))
    record = json.loads(subscribers(project, "show", "ADA@example.com"))
    assert record["subscriber"]["email"] == "ada@example.com"
    assert record == json.loads(
        json.dumps(newsletter.subscribers.record("ada@example.com"), default=str)
    )
    result = project.cli("subscribers", "export", "--list", "weekly")
    assert result.stdout == exported(newsletter)  # the CSV and nothing else on stdout
    assert result.stdout.splitlines()[0] == "email,name,status,since,consent,themes,company,plan"
    assert len(result.stdout.splitlines()) == 2
    assert "1 subscriber(s) exported." in result.stderr
    assert lists_line(project, "weekly").startswith(
        "weekly “The Weekly Briefing” (single opt-in): active 1 · pending 0"
    )
    listing = subscribers(project, "list", "--list", "weekly", "--status", "active")
    assert "ada@example.com (Ada)  active  since " in listing
    assert listing.rstrip().endswith("attrs.csv:2\n1 subscriber(s).")


def test_list_filters_by_status_and_refuses_an_unknown_one(project: Project) -> None:
    path = write(
        project, "left.csv", "email,name,status\nada@example.com,Ada,bounced\nbob@example.com,,\n"
    )
    import_file(project, path)
    bounced = subscribers(project, "list", "--list", "weekly", "--status", "bounced")
    assert bounced.startswith("ada@example.com (Ada)  bounced")
    assert "1 subscriber(s)." in bounced
    active = subscribers(project, "list", "--list", "weekly", "--status", "active")
    assert "ada@" not in active
    assert active.startswith("bob@example.com  active")
    refused = subscribers(project, "list", "--list", "weekly", "--status", "bogus", expect=1)
    assert "no status 'bogus'" in refused


def test_an_export_on_stdout_imports_elsewhere_and_lists_counts_every_status(
    project: Project,
) -> None:
    with_alerts_list(project)
    import_file(project, WEEKLY_CSV)
    subscribers(project, "remove", "grace@example.com", "--list", "weekly")
    export = write(
        project,
        "weekly-export.csv",
        project.cli("subscribers", "export", "--list", "weekly").stdout,
    )
    imported = subscribers(project, "import", str(export), "--list", "alerts")
    assert "5 added, 0 already subscribed, 1 suppressed" in imported
    assert lists_line(project, "alerts") == (
        "alerts “Alerts” (single opt-in): "
        "active 5 · pending 0 · unsubscribed 1 · bounced 0 · complained 0"
    )
    other = write(project, "other.csv", OTHER_TOOL)
    refused = import_file(project, other, expect=1)
    assert f"{other}:4: status 'vip' is not one of pending, active, unsubscribed" in refused
    import_file(project, other, "--skip-invalid")
    assert lists_line(project, "weekly") == (
        "weekly “The Weekly Briefing” (single opt-in): "
        "active 4 · pending 1 · unsubscribed 1 · bounced 1 · complained 1"
    )


def test_send_refuses_without_a_key_unless_the_config_allows_a_development_key(
    project: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("NEWSLETTER_SECRET_KEY")
    import_file(project, WEEKLY_CSV)
    project.cli("fetch")
    project.update("security", allow_development_key=False)
    refused = project.cli("send", "--list", "weekly", "--yes", expect=1)
    assert "NEWSLETTER_SECRET_KEY is not set" in refused.output
    project.update("security", allow_development_key=True)
    assert "6 sent" in project.cli("send", "--list", "weekly", "--yes").output
