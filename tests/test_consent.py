"""Consent: double opt-in, suppression that survives imports, privacy (show, export, forget)."""

from __future__ import annotations

import json
import re
import sqlite3
from email.utils import getaddresses
from pathlib import Path

import pytest
from sqlmodel import select

from newsletter.config import load_settings
from newsletter.db import Database
from newsletter.models import Subscriber, SubscriberStatus
from tests.conftest import Project, sqlite_only


def write(project: Project, name: str, text: str) -> str:
    path = project.folder / name
    path.write_text(text, encoding="utf-8")
    return str(path)


def recipients(project: Project) -> list[str]:
    return [getaddresses([str(m["To"])])[0][1] for m in project.outbox()]


def double_opt_in(project: Project) -> None:
    data = project.config()
    data["lists"][0]["double_opt_in"] = True
    project.write_config(data)


def test_double_opt_in_mails_a_link_and_only_confirmed_readers_get_digests(
    project: Project,
) -> None:
    double_opt_in(project)
    path = write(project, "two.csv", "email,name\nada@example.com,Ada\nbob@example.com,Bob\n")
    assert "2 added" in project.cli("subscribers", "import", path, "--list", "weekly").output
    confirmations = project.outbox()
    assert len(confirmations) == 2
    assert all(
        m["Subject"] == "Confirm your subscription to The Weekly Briefing" for m in confirmations
    )
    ada = next(m for m in confirmations if "ada@" in str(m["To"]))
    text = ada.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    link = re.search(r"https://signaldesk\.example/confirm/\S+", text)
    assert link
    assert link.group(0) in ada.get_body(("html",)).get_content()  # type: ignore[union-attr]
    assert "pending 2" in project.cli("lists").output

    assert (
        "Confirmed: The Weekly Briefing."
        in project.cli("subscribers", "confirm", link.group(0)).output
    )
    assert "Already confirmed" in project.cli("subscribers", "confirm", link.group(0)).output
    project.cli("fetch")
    project.cli("send", "--list", "weekly", "--yes")
    assert recipients(project)[2:] == ["ada@example.com"]


def test_tampered_and_expired_confirmation_links_are_refused(project: Project) -> None:
    double_opt_in(project)
    project.cli("subscribers", "add", "ada@example.com", "--list", "weekly")
    text = project.outbox()[0].get_body(("plain",)).get_content()  # type: ignore[union-attr]
    token = re.search(r"/confirm/(\S+)", text).group(1)  # type: ignore[union-attr]
    tampered = token[:-2] + ("AA" if not token.endswith("AA") else "BB")
    assert "not valid" in project.cli("subscribers", "confirm", tampered, expect=1).output
    project.update("security", allow_development_key=True, confirm_link_days=1)
    settings = load_settings(project.config_path)
    from newsletter.audience.tokens import SigningKey, verify_confirm_token

    key = SigningKey(b"test-key-0123456789abcdef0123456789", "environment")
    old = key.sign("confirm", 1, 1, 0)  # issued on 1 January 1970
    with pytest.raises(Exception, match="expired"):
        verify_confirm_token(settings, key, old)


def test_nobody_who_left_is_re_added_by_an_import(project: Project) -> None:
    project.cli("subscribers", "import", "subscribers/weekly.csv", "--list", "weekly")
    project.cli("subscribers", "remove", "ada@example.com", "--list", "weekly")
    database = Database(load_settings(project.config_path))
    with database.session() as session:
        grace = session.exec(
            select(Subscriber).where(Subscriber.email == "grace@example.com")
        ).one()
        grace.status = SubscriberStatus.BOUNCED
        zoe = session.exec(select(Subscriber).where(Subscriber.email == "zoe@example.com")).one()
        zoe.status = SubscriberStatus.COMPLAINED
        session.add_all([grace, zoe])
        session.commit()
    database.dispose()
    project.cli("subscribers", "forget", "alan@example.com", "--yes")
    again = project.cli("subscribers", "import", "subscribers/weekly.csv", "--list", "weekly")
    assert "0 added, 2 already subscribed, 4 suppressed" in again.output
    forgotten = project.cli("subscribers", "add", "ALAN@example.com", "--list", "weekly", expect=1)
    assert "not re-added" in forgotten.output
    shown = project.cli("subscribers", "show", "alan@example.com", expect=1).output
    assert "Nothing is stored about alan@example.com: it was forgotten on request" in shown
    never = project.cli("subscribers", "show", "nobody@example.com", expect=1).output
    assert "Nothing is stored about nobody@example.com." in never
    project.cli("fetch")
    project.cli("send", "--list", "weekly", "--yes")
    assert sorted(recipients(project)) == ["linus@example.com", "margaret@example.com"]


@sqlite_only
def test_forget_leaves_no_trace_of_the_address_in_the_database_files(project: Project) -> None:
    project.cli("subscribers", "import", "subscribers/weekly.csv", "--list", "weekly")
    project.cli("fetch")
    project.cli("send", "--list", "weekly", "--yes")
    # Another process keeps the database open meanwhile, as `newsletter serve` would.
    other = sqlite3.connect(project.folder / "newsletter.db")
    other.execute("SELECT count(*) FROM subscriber").fetchall()
    assert "erased" in project.cli("subscribers", "forget", "margaret@example.com", "--yes").output
    files = list(project.folder.glob("newsletter.db*"))
    assert files
    for path in files:
        data = path.read_bytes()
        assert b"margaret@example.com" not in data, path
        assert b"Margaret Hamilton" not in data, path
    other.close()
    assert (
        "Nothing is stored"
        in project.cli("subscribers", "show", "margaret@example.com", expect=1).output
    )
    added = project.cli("subscribers", "add", "Margaret@Example.com", "--list", "weekly", expect=1)
    assert "not re-added" in added.output


def test_show_export_lists_and_attributes(project: Project, tmp_path: Path) -> None:
    path = write(
        project, "attrs.csv", "email;name;company;plan\nada@example.com;Ada;Analytical;pro\n"
    )
    project.cli("subscribers", "import", path, "--list", "weekly")
    record = json.loads(project.cli("subscribers", "show", "ADA@example.com").output)
    assert record["subscriber"]["email"] == "ada@example.com"
    assert record["subscriber"]["attributes"] == {"company": "Analytical", "plan": "pro"}
    (subscription,) = record["subscriptions"]
    assert subscription["list"] == "weekly"
    assert subscription["consent"] == "attrs.csv:2"
    assert subscription["origin"] == "import"
    result = project.cli("subscribers", "export", "--list", "weekly")
    exported = result.stdout.splitlines()
    assert exported[0] == "email,name,status,since,consent,company,plan"
    assert exported[1].startswith("ada@example.com,Ada,active,")
    assert len(exported) == 2
    assert "1 subscriber(s) exported." in result.stderr
    assert "weekly “The Weekly Briefing” (single opt-in): active 1" in project.cli("lists").output
    listing = project.cli("subscribers", "list", "--list", "weekly", "--status", "active").output
    assert "ada@example.com (Ada)  active" in listing


def test_send_refuses_without_a_key_unless_the_config_allows_a_development_key(
    project: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("NEWSLETTER_SECRET_KEY")
    project.cli("subscribers", "import", "subscribers/weekly.csv", "--list", "weekly")
    project.cli("fetch")
    project.update("security", allow_development_key=False)
    refused = project.cli("send", "--list", "weekly", "--yes", expect=1)
    assert "NEWSLETTER_SECRET_KEY is not set" in refused.output
    assert project.outbox() == []
    project.update("security", allow_development_key=True)
    assert "6 sent" in project.cli("send", "--list", "weekly", "--yes").output
    assert (project.folder / "newsletter.secret").stat().st_mode & 0o077 == 0


def test_status_filters_long_names_bad_csv_and_spreadsheet_formulas(project: Project) -> None:
    long_name = "N" * 5000
    path = write(
        project,
        "odd.csv",
        f'email,name,note\nada@example.com,{long_name},=HYPERLINK("x")\n'
        "bob@example.com,\"=cmd|' /C calc'!A0\",\n",
    )
    project.cli("subscribers", "import", path, "--list", "weekly")
    database = Database(load_settings(project.config_path))
    with database.session() as session:
        ada = session.exec(select(Subscriber).where(Subscriber.email == "ada@example.com")).one()
        assert len(ada.name) == 200
        ada.status = SubscriberStatus.BOUNCED
        session.add(ada)
        session.commit()
    database.dispose()
    bounced = project.cli("subscribers", "list", "--list", "weekly", "--status", "bounced")
    assert bounced.output.startswith("ada@example.com")
    assert "1 subscriber(s)" in bounced.output
    active = project.cli("subscribers", "list", "--list", "weekly", "--status", "active").output
    assert "ada@" not in active
    assert (
        "no status 'bogus'"
        in project.cli(
            "subscribers", "list", "--list", "weekly", "--status", "bogus", expect=1
        ).output
    )
    exported = project.cli("subscribers", "export", "--list", "weekly").output
    assert "'=HYPERLINK" in exported
    assert "'=cmd|" in exported
    broken = write(project, "broken.csv", 'email,name\n"ada@example.com,"' + "x" * 200_000 + "\n")
    assert (
        "not readable as CSV"
        in project.cli("subscribers", "import", broken, "--list", "weekly", expect=1).output
    )


def test_adding_a_pending_reader_again_sends_a_fresh_link(project: Project) -> None:
    double_opt_in(project)
    project.cli("subscribers", "add", "new@example.com", "--list", "weekly")
    again = project.cli("subscribers", "add", "NEW@example.com", "--list", "weekly")
    assert "pending: a confirmation mail went out" in again.output
    assert len(project.outbox()) == 2


def test_add_and_remove_say_what_happened_to_the_address_as_stored(project: Project) -> None:
    data = project.config()
    data["lists"].append({"slug": "alerts", "name": "Alerts"})
    project.write_config(data)
    added = project.cli("subscribers", "add", "New.Person@Example.COM", "--list", "weekly")
    assert "New.Person@example.com now receives weekly." in added.output
    removed = project.cli("subscribers", "remove", "new.person@EXAMPLE.com", "--list", "weekly")
    assert "New.Person@example.com is unsubscribed from weekly." in removed.output
    again = project.cli("subscribers", "remove", "New.Person@example.com", "--list", "weekly")
    assert "New.Person@example.com had already left weekly." in again.output
    other = project.cli("subscribers", "remove", "New.Person@example.com", "--list", "alerts")
    assert "New.Person@example.com is not on alerts." in other.output


def test_an_export_imported_elsewhere_keeps_out_everyone_who_left(project: Project) -> None:
    data = project.config()
    data["lists"].append({"slug": "alerts", "name": "Alerts"})
    project.write_config(data)
    project.cli("subscribers", "import", "subscribers/weekly.csv", "--list", "weekly")
    project.cli("subscribers", "remove", "grace@example.com", "--list", "weekly")
    exported = write(
        project,
        "weekly-export.csv",
        project.cli("subscribers", "export", "--list", "weekly").stdout,
    )
    imported = project.cli("subscribers", "import", exported, "--list", "alerts").output
    assert "5 added, 0 already subscribed, 1 suppressed" in imported
    assert (
        "alerts “Alerts” (single opt-in): active 5 · pending 0 · unsubscribed 1"
        in project.cli("lists").output
    )
    record = json.loads(project.cli("subscribers", "show", "grace@example.com").output)
    assert record["subscriber"]["attributes"] == {}  # status, since, consent are not attributes
    alerts = next(s for s in record["subscriptions"] if s["list"] == "alerts")
    assert alerts["status"] == "unsubscribed"
    assert alerts["consent"].startswith("weekly-export.csv:")
    assert "(earlier: weekly.csv:" in alerts["consent"]

    # Another tool's export: a bounce there stops mail on every list here; a bad status is
    # a bad row like any other.
    other = write(
        project,
        "other.csv",
        "email,status\nlinus@example.com,Bounced\nnew@example.com,complained\nx@example.com,vip\n"
        "pat@example.com,pending\n",
    )
    refused = project.cli("subscribers", "import", other, "--list", "weekly", expect=1).output
    assert "other.csv:4: status 'vip' is not one of pending, active, unsubscribed" in refused
    project.cli("subscribers", "import", other, "--list", "weekly", "--skip-invalid")
    lists = project.cli("lists").output
    assert (
        "weekly “The Weekly Briefing” (single opt-in): active 4 · pending 1 · unsubscribed 1"
        " · bounced 1 · complained 1" in lists
    )
    project.cli("fetch")
    project.cli("send", "--list", "weekly", "--yes")
    assert sorted(recipients(project)) == [
        "ada@example.com",
        "alan@example.com",
        "margaret@example.com",
        "zoe@example.com",
    ]
