"""Bounces and complaints: the real-world corpus, and the whole loop through VERP."""

from __future__ import annotations

import csv
import mailbox
import uuid
from email import message_from_bytes
from email.utils import getaddresses
from pathlib import Path

import pytest

from newsletter.bounces.parse import parse_report
from tests.conftest import CORPUS, Project, SmtpServer

BOUNCES = CORPUS / "bounces"


def expected_kind(row: dict[str, str]) -> str | None:
    """hard / soft / complaint / none, as sisimai judges; None where the corpus states nothing."""
    if row["reason"] == "feedback":
        return "complaint"
    if row["reason"] in ("delivered", "vacation"):
        return "none"
    if row["status"] == "-":
        return "none" if "not-bounce" in row["file"] else None
    return "hard" if row["hardbounce"] == "true" else "soft"


def judged(path: Path, recipient: str) -> str:
    report = parse_report(path.read_bytes())
    if report.kind in ("autoreply", "unknown"):
        return "none"
    for item in report.recipients:
        if item.address == recipient or recipient in ("", "(none)"):
            return item.kind
    return "none" if not report.recipients else "missing"


def corpus_rows() -> list[dict[str, str]]:
    with (BOUNCES / "sisimai" / "EXPECTED.tsv").open(newline="") as handle:
        return [
            row for row in csv.DictReader(handle, delimiter="\t") if expected_kind(row) is not None
        ]


def test_agreement_with_sisimai_is_at_least_95_percent() -> None:
    rows = corpus_rows()
    misses = []
    for row in rows:
        recipient = row["recipient(p5-sisimai run)"].strip().lower()
        got = judged(BOUNCES / row["file"], recipient)
        if got != expected_kind(row):
            misses.append(f"{row['file']} {recipient}: {got} != {expected_kind(row)}")
    agreement = 1 - len(misses) / len(rows)
    print(f"agreement {agreement:.1%} over {len(rows)} recipients; misses: {misses}")
    assert agreement >= 0.95, misses


@pytest.mark.parametrize(
    "name",
    [
        "rfc3834-01.eml",
        "rfc3834-03.eml",
        "rfc3464-28.eml",
        "lhost-amazonses-12.eml",
        "not-bounce-01.eml",
        "not-bounce-02.eml",
    ],
)
def test_auto_replies_and_delivery_notices_are_never_bounces(name: str) -> None:
    report = parse_report((BOUNCES / "sisimai" / name).read_bytes())
    assert all(item.kind == "none" for item in report.recipients), report


def verp_dsn(
    envelope_to: str,
    original_to: str | list[str],
    status: str,
    text: str,
    original: bytes = b"",
) -> bytes:
    """A Postfix-style DSN about one or more recipients; `original`, our message as sent, is
    quoted as Postfix quotes it."""
    blocks = "\n".join(
        f"Final-Recipient: rfc822; {address}\nAction: failed\nStatus: {status}\n"
        f"Diagnostic-Code: smtp; 550 {status} {text}\n"
        for address in ([original_to] if isinstance(original_to, str) else original_to)
    )
    quoted = original.replace(b"\r\n", b"\n").decode("utf-8")
    returned = f"--B\nContent-Type: message/rfc822\n\n{quoted}\n" if original else ""
    return f"""\
From: Mail Delivery System <MAILER-DAEMON@mx.example.com>
To: {envelope_to}
Subject: Undelivered Mail Returned to Sender
Message-ID: <{uuid.uuid4()}@mx.example.com>
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status; boundary="B"

--B
Content-Type: text/plain

This is the mail system at host mx.example.com. Your message could not be delivered.

--B
Content-Type: message/delivery-status

Reporting-MTA: dns; mx.example.com

{blocks}
{returned}--B--
""".replace("\n", "\r\n").encode()


def sent_to_outbox(project: Project) -> dict[str, bytes]:
    """Each reader's address -> our message to them, as the Maildir outbox holds it."""
    sent = {}
    for path in (project.folder / "outbox" / "new").iterdir():
        raw = path.read_bytes()
        sent[str(message_from_bytes(raw)["Delivered-To"])] = raw
    return sent


def message_id_of(raw: bytes) -> str:
    return str(message_from_bytes(raw)["Message-ID"])


def feedback_report(message_id: str) -> bytes:
    """A real feedback loop report, the reader's address redacted, about our message: its copy
    keeps the Message-ID."""
    return (
        (BOUNCES / "sisimai" / "arf-01.eml")
        .read_bytes()
        .replace(b"Subject: Kijitora cat family", f"Message-ID: {message_id}\nSubject: x".encode())
    )


def send_with_verp(smtp_project: Project, smtp_server: SmtpServer) -> dict[str, str]:
    """Send the sample digest with VERP on; each reader's address -> its return path."""
    smtp_project.update("publication", bounce_domain="bounces.signaldesk.example")
    smtp_project.cli("fetch")
    smtp_project.cli("subscribers", "import", "subscribers/weekly.csv", "--list", "weekly")
    smtp_project.cli("send", "--list", "weekly", "--yes")
    return {r.recipients[0]: r.sender for r in smtp_server.received}


def test_the_whole_loop_through_verp(
    smtp_project: Project, smtp_server: SmtpServer, tmp_path: Path
) -> None:
    return_path = send_with_verp(smtp_project, smtp_server)
    box = mailbox.Maildir(tmp_path / "bounces", create=True)
    # The remote server names a forwarding address we never mailed: VERP still finds Ada.
    box.add(
        verp_dsn(
            return_path["ada@example.com"],
            "ada.forwarded@elsewhere.example",
            "5.1.1",
            "<ada.forwarded@elsewhere.example>: User unknown",
        )
    )
    box.add(verp_dsn(return_path["alan@example.com"], "alan@example.com", "4.2.2", "Mailbox full"))
    box.add(b"From: someone@example.org\r\nSubject: hello\r\n\r\nNot a bounce at all.\r\n")
    output = smtp_project.cli("bounces", "process", str(tmp_path / "bounces")).output
    assert "1 hard, 1 soft, 0 complaint(s)" in output
    assert "1 address(es) suppressed" in output
    assert "1 message(s) changed nothing and stay in" in output
    assert len(box.get_folder("processed")) == 2
    assert len(mailbox.Maildir(tmp_path / "bounces")) == 1
    again = smtp_project.cli("bounces", "process", str(tmp_path / "bounces")).output
    assert "0 hard, 0 soft" in again

    listing = smtp_project.cli("bounces", "list").output
    assert "ada@example.com  hard 5.1.1 userunknown  -> suppressed: hard bounce" in listing
    assert '"kind": "hard"' in smtp_project.cli("subscribers", "show", "ada@example.com").output

    smtp_project.add_briefing("more", "More news")
    smtp_server.handler.received.clear()
    smtp_project.cli("send", "--list", "weekly", "--yes")
    recipients = sorted(getaddresses([str(r.message["To"])])[0][1] for r in smtp_server.received)
    assert "ada@example.com" not in recipients
    assert "alan@example.com" in recipients  # one soft bounce is only counted
    assert len(recipients) == 5


def test_a_redacted_feedback_report_still_finds_the_reader_by_the_quoted_return_path(
    smtp_project: Project, smtp_server: SmtpServer, tmp_path: Path
) -> None:
    return_path = send_with_verp(smtp_project, smtp_server)
    # A real feedback loop report: the reader's address is redacted everywhere, but the quoted
    # original keeps the Return-Path our message was sent with.
    arf = (
        (BOUNCES / "sisimai" / "arf-01.eml")
        .read_bytes()
        .replace(b"<support@example.ed.jp>", f"<{return_path['grace@example.com']}>".encode())
    )
    assert b"grace@example.com" not in arf
    box = mailbox.Maildir(tmp_path / "fbl", create=True)
    box.add(arf)
    output = smtp_project.cli("bounces", "process", str(tmp_path / "fbl")).output
    assert "1 complaint(s)" in output
    assert "grace@example.com  complaint" in smtp_project.cli("bounces", "list").output
    assert "complained 1" in smtp_project.cli("lists").output

    smtp_project.add_briefing("more", "More news")
    smtp_server.handler.received.clear()
    smtp_project.cli("send", "--list", "weekly", "--yes")
    recipients = {getaddresses([str(r.message["To"])])[0][1] for r in smtp_server.received}
    assert "grace@example.com" not in recipients
    assert len(recipients) == 5


def add_alerts_list(project: Project) -> None:
    data = project.config()
    data["lists"].append({"slug": "alerts", "name": "Alerts"})
    project.write_config(data)


def test_a_complaint_unsubscribes_from_every_list_and_soft_bounces_add_up(
    project: Project, tmp_path: Path
) -> None:
    add_alerts_list(project)
    project.cli("subscribers", "import", "subscribers/weekly.csv", "--list", "weekly")
    project.cli("subscribers", "import", "subscribers/weekly.csv", "--list", "alerts")
    project.cli("fetch")
    project.cli("send", "--list", "weekly", "--yes")
    sent = sent_to_outbox(project)
    path = tmp_path / "returns.mbox"
    box = mailbox.mbox(path)
    # Without VERP, the feedback loop's copy of our message names the reader by its Message-ID.
    box.add(feedback_report(message_id_of(sent["grace@example.com"])))
    for number in range(3):
        box.add(
            verp_dsn(
                "briefings@signaldesk.example",
                "linus@example.com",
                "4.2.2",
                f"Mailbox full ({number})",
                original=sent["linus@example.com"],
            )
        )
    box.close()
    output = project.cli("bounces", "process", str(path)).output
    assert "1 complaint(s)" in output
    assert "3 soft" in output
    assert "2 address(es) suppressed" in output
    lists = project.cli("lists").output
    assert "weekly “The Weekly Briefing” (single opt-in): active 4" in lists
    assert "alerts “Alerts” (single opt-in): active 4" in lists
    assert "complained 1" in lists
    assert "bounced 1" in lists
    assert len(mailbox.mbox(path)) == 0
    assert len(mailbox.mbox(tmp_path / "returns.mbox.processed")) == 4


def test_bounces_from_a_real_imap_folder(project: Project, monkeypatch: pytest.MonkeyPatch) -> None:
    import imaplib

    from tests.dovecot import imap_server

    project.cli("subscribers", "import", "subscribers/weekly.csv", "--list", "weekly")
    project.cli("fetch")
    project.cli("send", "--list", "weekly", "--yes")
    to_margaret = sent_to_outbox(project)["margaret@example.com"]
    with imap_server("bounces", "imap-secret") as port:
        client = imaplib.IMAP4("127.0.0.1", port)
        client.login("bounces", "imap-secret")
        client.append(
            "INBOX",
            None,
            None,
            verp_dsn(
                "briefings@signaldesk.example",
                "margaret@example.com",
                "5.1.1",
                "User unknown",
                original=to_margaret,
            ),
        )
        client.append("INBOX", None, None, (BOUNCES / "sisimai" / "rfc3834-01.eml").read_bytes())
        client.append("INBOX", None, None, b"From: x@example.org\r\nSubject: hi\r\n\r\nhello\r\n")
        client.logout()
        data = project.config()
        data["bounces"] = {
            "imap": {"host": "127.0.0.1", "port": port, "security": "none", "username": "bounces"}
        }
        project.write_config(data)
        monkeypatch.setenv("NEWSLETTER_IMAP_PASSWORD", "imap-secret")
        output = project.cli("bounces", "process", "--imap").output
        assert "3 message(s): 1 hard" in output
        assert "1 auto-reply/delivery notice(s)" in output
        assert "1 message(s) changed nothing and stay in the IMAP folder" in output
        client = imaplib.IMAP4("127.0.0.1", port)
        client.login("bounces", "imap-secret")
        assert client.select("INBOX")[1] == [b"1"]
        assert client.select("processed")[1] == [b"2"]
        client.logout()
        monkeypatch.setenv("NEWSLETTER_IMAP_PASSWORD", "wrong")
        refused = project.cli("bounces", "process", "--imap", expect=1).output
        assert "refused us" in refused
    assert "bounced 1" in project.cli("lists").output


def test_with_verp_a_bounce_without_a_signed_return_path_changes_nothing(
    project: Project, tmp_path: Path
) -> None:
    project.update("publication", bounce_domain="bounces.signaldesk.example")
    project.cli("subscribers", "import", "subscribers/weekly.csv", "--list", "weekly")
    box = mailbox.Maildir(tmp_path / "returns", create=True)
    box.add(
        verp_dsn(
            "bounces+forged@bounces.signaldesk.example", "ada@example.com", "5.1.1", "User unknown"
        )
    )
    box.add(verp_dsn("briefings@signaldesk.example", "ada@example.com", "5.1.1", "User unknown"))
    output = project.cli("bounces", "process", str(tmp_path / "returns")).output
    assert "0 hard" in output
    assert "2 message(s) changed nothing" in output
    assert "active 6" in project.cli("lists").output


def test_a_wrong_path_says_what_is_wrong_with_it(project: Project, tmp_path: Path) -> None:
    missing = project.cli("bounces", "process", str(tmp_path / "nope"), expect=1).output
    assert "nope: no such file or folder" in missing
    csv_file = tmp_path / "list.csv"
    csv_file.write_text("email,name\nada@example.com,Ada\n")
    wrong = project.cli("bounces", "process", str(csv_file), expect=1).output
    assert "list.csv: not an mbox file" in wrong
    folder = tmp_path / "plain"
    folder.mkdir()
    neither = project.cli("bounces", "process", str(folder), expect=1).output
    assert "plain: neither a Maildir nor an mbox file" in neither
