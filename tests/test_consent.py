"""Consent: double opt-in, suppression that survives imports, privacy (show, export, forget).

Driven through the app's services and read back from the database; what the CLI prints about
the same is in tests/test_cli_audience.py.
"""

from __future__ import annotations

import csv
import io
import re
import sqlite3
import time
from email.message import EmailMessage
from email.utils import getaddresses

import pytest
from sqlmodel import select

from newsletter.app import Newsletter
from newsletter.audience.lifecycle import RemoveOutcome, SubscribeOutcome
from newsletter.errors import AddressError, BadToken, ImportFileError, MissingKey
from newsletter.models import MailingList, Subscriber, SubscriberStatus
from newsletter.services.subscribers import ConfirmReport
from tests.conftest import Project, sqlite_only
from tests.test_subscribers import WEEKLY_CSV, app_on, emails, lines_named, tally, write

WEEKLY = "The Weekly Briefing"
# Files the CLI tests import too.
TWO_READERS = "email,name\nada@example.com,Ada\nbob@example.com,Bob\n"
WITH_ATTRIBUTES = "email;name;company;plan\nada@example.com;Ada;Analytical;pro\n"
# Another tool's export: a bounce, a complaint, a status we do not know (line 4), a pending.
OTHER_TOOL = (
    "email,status\nlinus@example.com,Bounced\nnew@example.com,complained\n"
    "x@example.com,vip\npat@example.com,pending\n"
)
UNCLOSED_QUOTE = 'email,name\n"ada@example.com,"' + "x" * 200_000 + "\n"  # not readable as CSV


def recipients(project: Project) -> list[str]:
    return [getaddresses([str(m["To"])])[0][1] for m in project.outbox()]


def double_opt_in(project: Project) -> None:
    data = project.config()
    data["lists"][0]["double_opt_in"] = True
    project.write_config(data)


def with_alerts_list(project: Project) -> None:
    data = project.config()
    data["lists"].append({"slug": "alerts", "name": "Alerts"})
    project.write_config(data)


def confirm_link(message: EmailMessage) -> str:
    text = message.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    link = re.search(r"https://signaldesk\.example/confirm/\S+", text)
    assert link, text
    return link.group(0)


def token_of(link: str) -> str:
    return link.rsplit("/", 1)[1]


def tampered(token: str) -> str:
    return token[:-2] + ("AA" if not token.endswith("AA") else "BB")


def statuses(app: Newsletter, slug: str = "weekly") -> dict[str, str]:
    return {row.email: row.status for row in app.subscribers.listed(slug)}


def counts(app: Newsletter) -> dict[str, dict[str, int]]:
    return {summary.slug: summary.counts for summary in app.reports.lists()}


def subscriber_id(app: Newsletter, email: str) -> int:
    with app.session() as session:
        found = session.exec(select(Subscriber.id).where(Subscriber.email == email)).one()
    assert found is not None
    return found


def weekly_id(app: Newsletter) -> int:
    with app.session() as session:
        found = session.exec(select(MailingList.id).where(MailingList.slug == "weekly")).one()
    assert found is not None
    return found


def set_status(app: Newsletter, email: str, status: SubscriberStatus) -> None:
    """What a bounce or a complaint leaves on the person."""
    with app.session() as session:
        subscriber = session.exec(select(Subscriber).where(Subscriber.email == email)).one()
        subscriber.status = status
        session.add(subscriber)
        session.commit()


def exported(app: Newsletter, slug: str = "weekly") -> str:
    out = io.StringIO()
    app.subscribers.export(slug, out)
    return out.getvalue()


def send_and_see_who_got_it(app: Newsletter, project: Project) -> list[str]:
    """Fetch, send the weekly digest and return who it went to (sorted)."""
    before = len(project.outbox())
    app.feeds.fetch()
    app.sending.send("weekly")
    return sorted(recipients(project)[before:])


def test_double_opt_in_mails_a_link_and_only_confirmed_readers_get_digests(
    project: Project,
) -> None:
    double_opt_in(project)
    path = write(project, "two.csv", TWO_READERS)
    with app_on(project) as app:
        report = app.subscribers.import_csv(path, "weekly")
        assert tally(report) == (2, 0, 0, 0, 0, 0)
        assert len(report.pending) == 2
        confirmations = project.outbox()
        assert len(confirmations) == 2
        assert all(m["Subject"] == f"Confirm your subscription to {WEEKLY}" for m in confirmations)
        ada = next(m for m in confirmations if "ada@" in str(m["To"]))
        link = confirm_link(ada)
        assert link in ada.get_body(("html",)).get_content()  # type: ignore[union-attr]
        [summary] = app.reports.lists()
        assert summary.double_opt_in
        assert summary.counts == {"pending": 2}

        assert app.subscribers.confirm(token_of(link)) == ConfirmReport(WEEKLY, changed=True)
        assert app.subscribers.confirm(token_of(link)) == ConfirmReport(WEEKLY, changed=False)
        assert statuses(app) == {"ada@example.com": "active", "bob@example.com": "pending"}
        assert send_and_see_who_got_it(app, project) == ["ada@example.com"]


def test_tampered_and_expired_confirmation_links_are_refused(project: Project) -> None:
    double_opt_in(project)
    project.update("security", confirm_link_days=1)
    with app_on(project) as app:
        app.subscribers.add("ada@example.com", "weekly", origin="cli", consent="test")
        token = token_of(confirm_link(project.outbox()[0]))
        with pytest.raises(BadToken):
            app.subscribers.confirm(tampered(token))
        assert statuses(app) == {"ada@example.com": "pending"}
        ids = (weekly_id(app), subscriber_id(app, "ada@example.com"))
        today = int(time.time() // 86400)
        old = app.signing_key().sign("confirm", *ids, today - 2)  # older than the one day
        with pytest.raises(BadToken, match="expired"):
            app.subscribers.confirm(old)
        assert statuses(app) == {"ada@example.com": "pending"}


def test_nobody_who_left_is_re_added_by_an_import(newsletter: Newsletter, project: Project) -> None:
    subscribers = newsletter.subscribers
    subscribers.import_csv(WEEKLY_CSV, "weekly")
    assert subscribers.remove("ada@example.com", "weekly") == (
        RemoveOutcome.UNSUBSCRIBED,
        "ada@example.com",
    )
    set_status(newsletter, "grace@example.com", SubscriberStatus.BOUNCED)
    set_status(newsletter, "zoe@example.com", SubscriberStatus.COMPLAINED)
    assert subscribers.forget("alan@example.com")
    assert tally(subscribers.import_csv(WEEKLY_CSV, "weekly")) == (0, 2, 0, 4, 0, 0)
    forgotten = subscribers.add("ALAN@example.com", "weekly", origin="cli", consent="test")
    assert forgotten.outcome is SubscribeOutcome.SUPPRESSED
    assert subscribers.record("alan@example.com") is None
    assert subscribers.was_forgotten("alan@example.com")
    assert subscribers.record("nobody@example.com") is None
    assert not subscribers.was_forgotten("nobody@example.com")
    assert statuses(newsletter) == {
        "ada@example.com": "unsubscribed",
        "grace@example.com": "bounced",
        "zoe@example.com": "complained",
        "linus@example.com": "active",
        "margaret@example.com": "active",
    }
    assert send_and_see_who_got_it(newsletter, project) == [
        "linus@example.com",
        "margaret@example.com",
    ]


@sqlite_only
def test_forget_leaves_no_trace_of_the_address_in_the_database_files(
    newsletter: Newsletter, project: Project
) -> None:
    newsletter.subscribers.import_csv(WEEKLY_CSV, "weekly")
    assert "margaret@example.com" in send_and_see_who_got_it(newsletter, project)
    assert newsletter.subscribers.record("margaret@example.com") is not None
    # Another process keeps the database open meanwhile, as `newsletter serve` would.
    other = sqlite3.connect(project.folder / "newsletter.db")
    other.execute("SELECT count(*) FROM subscriber").fetchall()
    assert newsletter.subscribers.forget("margaret@example.com")
    files = list(project.folder.glob("newsletter.db*"))
    assert files
    for path in files:
        data = path.read_bytes()
        assert b"margaret@example.com" not in data, path
        assert b"Margaret Hamilton" not in data, path
    other.close()
    assert newsletter.subscribers.record("margaret@example.com") is None
    assert newsletter.subscribers.was_forgotten("margaret@example.com")
    added = newsletter.subscribers.add(
        "Margaret@Example.com", "weekly", origin="cli", consent="test"
    )
    assert added.outcome is SubscribeOutcome.SUPPRESSED
    assert newsletter.subscribers.record("margaret@example.com") is None


def test_show_export_lists_and_attributes(newsletter: Newsletter, project: Project) -> None:
    path = write(project, "attrs.csv", WITH_ATTRIBUTES)
    newsletter.subscribers.import_csv(path, "weekly")
    record = newsletter.subscribers.record("ADA@example.com")
    assert record is not None
    assert record["subscriber"]["email"] == "ada@example.com"
    assert record["subscriber"]["attributes"] == {"company": "Analytical", "plan": "pro"}
    (subscription,) = record["subscriptions"]
    assert subscription["list"] == "weekly"
    assert subscription["consent"] == "attrs.csv:2"
    assert subscription["origin"] == "import"
    out = io.StringIO()
    assert newsletter.subscribers.export("weekly", out) == 1
    lines = out.getvalue().splitlines()
    assert lines[0] == "email,name,status,since,consent,themes,company,plan"
    assert lines[1].startswith("ada@example.com,Ada,active,")
    assert lines[1].endswith(",attrs.csv:2,,Analytical,pro")  # no themes: every theme
    assert len(lines) == 2
    [summary] = newsletter.reports.lists()
    assert (summary.slug, summary.name, summary.double_opt_in) == ("weekly", WEEKLY, False)
    assert summary.counts == {"active": 1}
    [row] = newsletter.subscribers.listed("weekly", "active")
    assert (row.email, row.name, row.status, row.consent) == (
        "ada@example.com",
        "Ada",
        "active",
        "attrs.csv:2",
    )
    assert row.attributes == {"company": "Analytical", "plan": "pro"}


def test_send_refuses_without_a_key_unless_the_config_allows_a_development_key(
    project: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("NEWSLETTER_SECRET_KEY")
    with app_on(project) as app:
        app.subscribers.import_csv(WEEKLY_CSV, "weekly")
        app.feeds.fetch()
    project.update("security", allow_development_key=False)
    with app_on(project) as app:
        with pytest.raises(MissingKey):
            app.sending.send("weekly")
        assert app.reports.digests("weekly") == []  # refused before anything was built
    assert project.outbox() == []
    project.update("security", allow_development_key=True)
    with app_on(project) as app:
        assert app.sending.send("weekly").summary.sent == 6
    assert len(project.outbox()) == 6
    assert (project.folder / "newsletter.secret").stat().st_mode & 0o077 == 0


def test_status_filters_long_names_bad_csv_and_spreadsheet_formulas(
    newsletter: Newsletter, project: Project
) -> None:
    long_name = "N" * 5000
    path = write(
        project,
        "odd.csv",
        f'email,name,note\nada@example.com,{long_name},=HYPERLINK("x")\n'
        "bob@example.com,\"=cmd|' /C calc'!A0\",\n",
    )
    newsletter.subscribers.import_csv(path, "weekly")
    with newsletter.session() as session:
        ada = session.exec(select(Subscriber).where(Subscriber.email == "ada@example.com")).one()
    assert len(ada.name) == 200
    set_status(newsletter, "ada@example.com", SubscriberStatus.BOUNCED)
    assert emails(newsletter, status="bounced") == ["ada@example.com"]
    assert emails(newsletter, status="active") == ["bob@example.com"]
    with pytest.raises(AddressError):
        newsletter.subscribers.listed("weekly", "bogus")
    rows = list(csv.DictReader(io.StringIO(exported(newsletter))))
    assert [(row["email"], row["status"]) for row in rows] == [
        ("ada@example.com", "bounced"),
        ("bob@example.com", "active"),
    ]
    assert rows[0]["note"] == '\'=HYPERLINK("x")'
    assert rows[1]["name"] == "'=cmd|' /C calc'!A0"
    broken = write(project, "broken.csv", UNCLOSED_QUOTE)
    with pytest.raises(ImportFileError):
        newsletter.subscribers.import_csv(broken, "weekly")
    assert emails(newsletter) == ["ada@example.com", "bob@example.com"]


def test_adding_a_pending_reader_again_sends_a_fresh_link(project: Project) -> None:
    double_opt_in(project)
    with app_on(project) as app:
        first = app.subscribers.add("new@example.com", "weekly", origin="cli", consent="test")
        again = app.subscribers.add("NEW@example.com", "weekly", origin="cli", consent="test")
        assert (first.outcome, first.confirmations_sent) == (SubscribeOutcome.PENDING, 1)
        assert (again.outcome, again.confirmations_sent) == (SubscribeOutcome.PENDING, 1)
        assert statuses(app) == {"new@example.com": "pending"}
    assert recipients(project) == ["new@example.com", "new@example.com"]


def test_add_and_remove_say_what_happened_to_the_address_as_stored(project: Project) -> None:
    with_alerts_list(project)
    stored = "New.Person@example.com"
    with app_on(project) as app:
        added = app.subscribers.add("New.Person@Example.COM", "weekly", origin="cli", consent="t")
        assert (added.outcome, added.email) == (SubscribeOutcome.ADDED, stored)
        assert statuses(app) == {stored: "active"}
        removed = app.subscribers.remove("new.person@EXAMPLE.com", "weekly")
        assert removed == (RemoveOutcome.UNSUBSCRIBED, stored)
        again = app.subscribers.remove("New.Person@example.com", "weekly")
        assert again == (RemoveOutcome.ALREADY_UNSUBSCRIBED, stored)
        other = app.subscribers.remove("New.Person@example.com", "alerts")
        assert other == (RemoveOutcome.NOT_ON_LIST, stored)
        assert statuses(app) == {stored: "unsubscribed"}
        assert statuses(app, "alerts") == {}


def test_an_export_imported_elsewhere_keeps_out_everyone_who_left(project: Project) -> None:
    with_alerts_list(project)
    with app_on(project) as app:
        app.subscribers.import_csv(WEEKLY_CSV, "weekly")
        app.subscribers.remove("grace@example.com", "weekly")
        export = write(project, "weekly-export.csv", exported(app))
        assert tally(app.subscribers.import_csv(export, "alerts")) == (5, 0, 0, 1, 0, 0)
        assert counts(app)["alerts"] == {"active": 5, "unsubscribed": 1}
        record = app.subscribers.record("grace@example.com")
        assert record is not None
        assert record["subscriber"]["attributes"] == {}  # status, since, consent are not ones
        alerts = next(s for s in record["subscriptions"] if s["list"] == "alerts")
        assert alerts["status"] == "unsubscribed"
        assert alerts["consent"].startswith("weekly-export.csv:")
        assert "(earlier: weekly.csv:" in alerts["consent"]

        # Another tool's export: a bounce there stops mail on every list here; a bad status is
        # a bad row like any other.
        other = write(project, "other.csv", OTHER_TOOL)
        with pytest.raises(ImportFileError) as refused:
            app.subscribers.import_csv(other, "weekly")
        assert lines_named(other, refused.value.message.splitlines()) == [4]
        assert counts(app)["weekly"] == {"active": 5, "unsubscribed": 1}  # nothing imported
        report = app.subscribers.import_csv(other, "weekly", skip_invalid=True)
        assert lines_named(other, report.skipped) == [4]
        assert counts(app)["weekly"] == {
            "active": 4,
            "pending": 1,
            "unsubscribed": 1,
            "bounced": 1,
            "complained": 1,
        }
        assert statuses(app, "alerts")["linus@example.com"] == "bounced"  # on every list
        assert send_and_see_who_got_it(app, project) == [
            "ada@example.com",
            "alan@example.com",
            "margaret@example.com",
            "zoe@example.com",
        ]
