"""The whole job, as an editor runs it: fetch, import, preview, send; to Maildir and to SMTP."""

from __future__ import annotations

import csv
import shutil
import sqlite3
from email.message import EmailMessage
from email.utils import getaddresses

from newsletter.audience.tokens import SigningKey
from tests.conftest import ROOT, Project, SmtpServer, sqlite_only

SAMPLE_SUBSCRIBERS = 6
SAMPLE_STORIES = 14  # 15 briefings; two outlets' takes on one story are merged into one item


def sample_addresses(project: Project) -> set[str]:
    with (project.folder / "subscribers" / "weekly.csv").open(newline="") as handle:
        return {row["email"] for row in csv.DictReader(handle)}


def publish(project: Project) -> str:
    project.cli("fetch")
    project.cli("subscribers", "import", "subscribers/weekly.csv", "--list", "weekly")
    return str(project.cli("send", "--list", "weekly", "--yes").output)


def parts(message: EmailMessage) -> tuple[str, str]:
    assert message.get_content_type() == "multipart/alternative"
    text_part, html_part = list(message.iter_parts())
    assert text_part.get_content_type() == "text/plain"  # text first, then HTML
    assert html_part.get_content_type() == "text/html"
    return text_part.get_content(), html_part.get_content()


def test_send_to_smtp_delivers_once_per_subscriber_and_never_twice(
    smtp_project: Project, smtp_server: SmtpServer
) -> None:
    output = publish(smtp_project)
    assert f"{SAMPLE_SUBSCRIBERS} sent, 0 failed" in output
    addresses = sample_addresses(smtp_project)
    delivered = [rcpt for received in smtp_server.received for rcpt in received.recipients]
    assert sorted(delivered) == sorted(addresses)

    again = smtp_project.cli("send", "--list", "weekly", "--yes").output
    assert "Nothing new to send" in again
    assert len(smtp_server.received) == SAMPLE_SUBSCRIBERS

    # The issue that went out can still be previewed and sent as a test copy, and says so.
    sent_subject = smtp_server.received[0].message["Subject"]
    preview = smtp_project.cli("preview", "--list", "weekly", "--out", "again").output
    assert "Nothing new since the last digest of weekly: this is that digest, sent " in preview
    assert (smtp_project.folder / "again" / "digest.html").exists()
    copy = smtp_project.cli("send", "--list", "weekly", "--to", "editor@example.com").output
    assert f"Test copy of “{sent_subject}” sent to editor@example.com" in copy
    assert smtp_server.received[-1].recipients == ["editor@example.com"]
    assert smtp_server.received[-1].message["Subject"] == f"[Test] {sent_subject}"
    assert len(smtp_server.received) == SAMPLE_SUBSCRIBERS + 1


def test_sent_message_headers_and_parts(smtp_project: Project, smtp_server: SmtpServer) -> None:
    publish(smtp_project)
    message_ids = set()
    for received in smtp_server.received:
        message = received.message
        ((_to_name, to_address),) = getaddresses([str(message["To"])])
        assert [to_address] == received.recipients
        assert message["From"] == "SignalDesk <briefings@signaldesk.example>"
        assert message["Subject"].startswith("SignalDesk Weekly: ")
        assert message["Date"]
        assert message["List-Id"] == "The Weekly Briefing <weekly.signaldesk.example>"
        assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        unsubscribe = str(message["List-Unsubscribe"])
        assert unsubscribe.startswith("<https://signaldesk.example/unsubscribe/")
        assert (
            "=?"
            not in received.data.decode("ascii")
            .split("\r\n\r\n")[0]
            .split("List-Unsubscribe:")[1]
            .split("\r\n")[0]
        )
        token = unsubscribe.strip("<>").rsplit("/", 1)[1]
        key = SigningKey(b"test-key-0123456789abcdef0123456789", "environment")
        list_id, subscriber_id = key.verify("unsubscribe", token, 2)
        assert list_id == 1
        assert subscriber_id >= 1
        message_ids.add(message["Message-ID"])
        assert message["Message-ID"].endswith("@signaldesk.example>")

        text, html = parts(message)
        assert to_address in text
        assert to_address in html
        assert unsubscribe.strip("<>") in text
        assert unsubscribe.strip("<>") in html
        for body in (text, html):
            assert body.count("Source assisted · ") == SAMPLE_STORIES
            assert "1 Example Street, Springfield" in body
            assert "https://signaldesk.example/standards" in body
        # The outlet's name is the link, its accessible name saying where it goes.
        assert html.count('aria-label="Open the original source at ') == SAMPLE_STORIES
        # The Valdera strike, told by two outlets, is one item naming both.
        assert 'also reported by <a href="https://coastalshipping.example.com/' in html
        assert "Also reported by Coastal Shipping News:" in text
        assert "Source assisted · Harbor Ledger" in " ".join(text.split())
        assert "Read our standards</a>" in html
        assert ">Unsubscribe</a>" in html
        assert "[[nl-" not in text
        assert "[[nl-" not in html
        head, _, body = received.data.partition(b"\r\n\r\n")
        assert max(len(line) for line in head.split(b"\r\n")) <= 998
        assert max(len(line) for line in body.split(b"\r\n")) <= 76  # quoted-printable
    assert len(message_ids) == SAMPLE_SUBSCRIBERS


def test_non_ascii_names_survive_the_to_header(
    smtp_project: Project, smtp_server: SmtpServer
) -> None:
    publish(smtp_project)
    names = {getaddresses([str(r.message["To"])])[0][0] for r in smtp_server.received}
    assert "Zoë Ångström" in names
    assert "Hopper, Grace" in names


def test_maildir_quickstart_flow(project: Project) -> None:
    output = publish(project)
    assert f"{SAMPLE_SUBSCRIBERS} sent" in output
    assert "outbox" in output
    messages = project.outbox()
    assert {getaddresses([str(m["To"])])[0][1] for m in messages} == sample_addresses(project)
    text, _html = parts(messages[0])
    # Themes in config order, the unmatched briefing under the fallback theme, last.
    order = [
        text.index(f"== {theme.upper()} ==")
        for theme in (
            "AI & Software",
            "Security",
            "Logistics",
            "Energy",
            "Policy",
            "More briefings",
        )
    ]
    assert order == sorted(order)
    assert "Westbrook" in text[order[-1] :]
    assert project.cli("send", "--list", "weekly", "--yes").output.startswith("Nothing new")
    assert len(project.outbox()) == SAMPLE_SUBSCRIBERS


def test_new_briefing_goes_out_in_the_next_digest_only(project: Project) -> None:
    publish(project)
    project.add_briefing(
        "new-reserve",
        "Grid operators add a fresh reserve",
        "<category>energy</category><description>A new one.</description>",
    )
    project.cli("send", "--list", "weekly", "--yes")
    messages = project.outbox()
    assert len(messages) == 2 * SAMPLE_SUBSCRIBERS
    second = [m for m in messages if "Grid operators" in str(m["Subject"])]
    assert len(second) == SAMPLE_SUBSCRIBERS
    text, _ = parts(second[0])
    assert "Westbrook" not in text  # already sent in the first digest


def test_removed_subscriber_is_not_mailed_and_not_re_added(project: Project) -> None:
    project.cli("fetch")
    project.cli("subscribers", "import", "subscribers/weekly.csv", "--list", "weekly")
    project.cli("subscribers", "remove", "ADA@example.com", "--list", "weekly")
    again = project.cli("subscribers", "import", "subscribers/weekly.csv", "--list", "weekly")
    assert "1 suppressed" in again.output
    project.cli("send", "--list", "weekly", "--yes")
    recipients = {getaddresses([str(m["To"])])[0][1] for m in project.outbox()}
    assert "ada@example.com" not in recipients
    assert len(recipients) == SAMPLE_SUBSCRIBERS - 1


def test_preview_writes_html_and_text_without_sending(project: Project) -> None:
    project.cli("fetch")
    output = project.cli("preview", "--list", "weekly", "--out", "preview-out").output
    html = (project.folder / "preview-out" / "digest.html").read_text()
    text = (project.folder / "preview-out" / "digest.txt").read_text()
    assert "14 stories" in output
    assert (project.folder / "preview-out" / "digest.eml").read_bytes().startswith(b"From: ")
    assert html.startswith("<!doctype html>")
    assert "SignalDesk Weekly" in html
    assert "SIGNALDESK WEEKLY" in text
    long_lines = [line for line in text.splitlines() if len(line) > 78]
    assert all(
        line.lstrip().startswith("https://") and " " not in line.lstrip() for line in long_lines
    )
    # Preview stores nothing: the next send still has the whole window.
    project.cli("subscribers", "import", "subscribers/weekly.csv", "--list", "weekly")
    project.cli("send", "--list", "weekly", "--yes")
    assert len(project.outbox()) == SAMPLE_SUBSCRIBERS


def test_empty_window_exits_zero_with_a_clear_message(project: Project) -> None:
    project.cli("subscribers", "import", "subscribers/weekly.csv", "--list", "weekly")
    result = project.cli("send", "--list", "weekly", "--yes")
    assert "Nothing new to send to weekly" in result.output


def test_init_is_idempotent(project: Project) -> None:
    first = project.cli("init").output
    second = project.cli("init").output
    assert "Database ready" in first
    assert "standards.md" in first  # the starter page, written once
    assert first.split("\n", 2)[2] == second.split("\n", 1)[1]


def test_renaming_or_moving_a_feed_resends_nothing(project: Project) -> None:
    publish(project)
    data = project.config()
    data["feeds"][0]["name"] = "SignalDesk (renamed)"
    project.write_config(data)
    project.cli("fetch")
    assert "Nothing new" in project.cli("send", "--list", "weekly", "--yes").output
    moved = project.folder / "samples" / "moved.xml"
    moved.write_bytes((project.folder / "samples" / "briefings.xml").read_bytes())
    data["feeds"][0]["url"] = "samples/moved.xml"
    project.write_config(data)
    project.cli("fetch")
    assert "Nothing new" in project.cli("send", "--list", "weekly", "--yes").output
    assert len(project.outbox()) == SAMPLE_SUBSCRIBERS


def test_an_editor_changes_the_template_beside_config(project: Project) -> None:
    shutil.copytree(ROOT / "templates", project.folder / "templates")
    mjml = project.folder / "templates" / "digest.mjml.j2"
    mjml.write_text(mjml.read_text().replace("Top story", "This week's lead"))
    project.cli("fetch")
    project.cli("preview", "--list", "weekly", "--out", "p")
    assert "This week's lead" in (project.folder / "p" / "digest.html").read_text()


@sqlite_only
def test_a_database_from_before_migrations_is_a_clear_error(project: Project) -> None:
    project.cli("init")
    database = sqlite3.connect(project.folder / "newsletter.db")
    database.execute("DROP TABLE alembic_version")
    database.execute("ALTER TABLE digest DROP COLUMN nonce")
    database.commit()
    database.close()
    result = project.cli("fetch", expect=1)
    assert "made by an unreleased version" in result.output
    assert "digest.nonce" in result.output
