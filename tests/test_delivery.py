"""The ledger against a real SMTP server that misbehaves: retries, refusals, resumption."""

from __future__ import annotations

import time
from email.utils import getaddresses

from newsletter.app import Newsletter
from newsletter.config import load_settings
from newsletter.send.ledger import RetryPolicy
from newsletter.services.sending import SendReport
from tests.conftest import Project, SmtpServer

FAST_RETRY = RetryPolicy(max_attempts=3, base_delay=0.05, lease_seconds=5)


def prepare(project: Project) -> None:
    project.cli("fetch")
    project.cli("subscribers", "import", "subscribers/weekly.csv", "--list", "weekly")


def send(project: Project, retry: RetryPolicy = FAST_RETRY) -> SendReport:
    with Newsletter(load_settings(project.config_path)) as app:
        return app.sending.send("weekly", retry=retry)


def delivered_to(server: SmtpServer) -> list[str]:
    return sorted(rcpt for received in server.received for rcpt in received.recipients)


def test_transient_refusals_are_retried_until_delivered(
    smtp_project: Project, smtp_server: SmtpServer
) -> None:
    prepare(smtp_project)
    smtp_server.handler.replies["ada@example.com"] = ["451 4.3.0 Try again later", "250 OK"]
    smtp_server.handler.replies["linus@example.com"] = [
        "421 4.7.0 Too many connections",
        "450 4.2.1 Slow down",
        "250 OK",
    ]
    report = send(smtp_project)
    assert report.summary.sent == 6
    assert report.summary.retried == 3
    assert delivered_to(smtp_server).count("ada@example.com") == 1
    assert smtp_server.handler.rcpt_attempts["linus@example.com"] == 3


def test_retries_run_out_into_deferred_and_the_next_send_finishes(
    smtp_project: Project, smtp_server: SmtpServer
) -> None:
    prepare(smtp_project)
    smtp_server.handler.replies["ada@example.com"] = ["451 4.3.0 Try again later"]
    first = send(smtp_project)
    assert (first.summary.sent, first.summary.deferred) == (5, 1)
    assert "sent 5 · deferred 1" in smtp_project.cli("status").output
    smtp_server.handler.replies.clear()
    second = send(smtp_project)
    assert second.retried_digests == [1]
    assert second.digest_id is None  # nothing new: only the deferral was retried
    assert second.summary.sent == 1
    assert delivered_to(smtp_server).count("ada@example.com") == 1
    assert len(smtp_server.received) == 6
    assert "Nothing new" in smtp_project.cli("send", "--list", "weekly", "--yes").output


def test_a_reader_who_always_defers_never_holds_up_the_next_digest(
    smtp_project: Project, smtp_server: SmtpServer
) -> None:
    prepare(smtp_project)
    smtp_server.handler.replies["ada@example.com"] = ["452 4.2.2 Mailbox over quota"]
    send(smtp_project)
    smtp_project.add_briefing("next-week", "Late news next-week")
    second = send(smtp_project)
    assert second.retried_digests == [1]
    assert second.digest_id == 2
    assert second.summary.sent == 5
    assert (
        sum("Late news next-week" in str(r.message["Subject"]) for r in smtp_server.received) == 5
    )
    smtp_project.update("delivery", give_up_after_days=0.000001)  # 0.09 s
    time.sleep(0.2)
    third = send(smtp_project)
    assert third.given_up == 2  # both digests' deferrals are failures now
    assert "deferred 0 · failed 1" in smtp_project.cli("status").output


def test_someone_who_leaves_before_a_resumed_send_is_skipped(
    smtp_project: Project, smtp_server: SmtpServer
) -> None:
    prepare(smtp_project)
    smtp_server.handler.replies["ada@example.com"] = ["451 4.3.0 Try again later"]
    send(smtp_project)
    smtp_project.cli("subscribers", "remove", "ada@example.com", "--list", "weekly")
    smtp_server.handler.replies.clear()
    send(smtp_project)
    assert "ada@example.com" not in delivered_to(smtp_server)
    assert "skipped 1" in smtp_project.cli("status").output


def test_no_subscribers_keeps_the_briefings_for_later(
    smtp_project: Project, smtp_server: SmtpServer
) -> None:
    smtp_project.cli("fetch")
    result = smtp_project.cli("send", "--list", "weekly", "--yes")  # nothing to do: exit 0
    assert "No active subscribers on weekly" in result.output
    smtp_project.cli("subscribers", "import", "subscribers/weekly.csv", "--list", "weekly")
    assert "6 sent" in smtp_project.cli("send", "--list", "weekly", "--yes").output


def test_refused_sender_stops_and_suppresses_nobody(
    smtp_project: Project, smtp_server: SmtpServer
) -> None:
    prepare(smtp_project)
    smtp_server.handler.mail_from_reply = "553 5.1.8 Sender address rejected: Domain not found"
    result = smtp_project.cli("send", "--list", "weekly", "--yes", expect=1)
    assert "refused the sender briefings@signaldesk.example" in result.output
    smtp_server.handler.mail_from_reply = None
    assert "6 sent" in smtp_project.cli("send", "--list", "weekly", "--yes").output


def test_unknown_mailbox_fails_and_suppresses_only_that_reader(
    smtp_project: Project, smtp_server: SmtpServer
) -> None:
    prepare(smtp_project)
    smtp_server.handler.replies["ada@example.com"] = ["550 5.1.1 No such user"]
    smtp_server.handler.replies["linus@example.com"] = ["552 5.2.2 Mailbox full"]
    report = send(smtp_project)
    assert (report.summary.sent, report.summary.failed, report.summary.suppressed) == (4, 2, 1)
    # The next digest skips the bounced address but still tries the full mailbox.
    smtp_project.add_briefing("late", "Late news")
    smtp_server.handler.replies.clear()
    smtp_server.handler.received.clear()
    send(smtp_project)
    recipients = delivered_to(smtp_server)
    assert "ada@example.com" not in recipients
    assert "linus@example.com" in recipients


def test_policy_refusal_stops_the_send_and_keeps_everyone_queued(
    smtp_project: Project, smtp_server: SmtpServer
) -> None:
    prepare(smtp_project)
    for address in (
        "ada@example.com",
        "grace@example.com",
        "linus@example.com",
        "margaret@example.com",
        "alan@example.com",
        "zoe@example.com",
    ):
        smtp_server.handler.replies[address] = ["550 5.7.26 DMARC policy violation"]
    result = smtp_project.cli("send", "--list", "weekly", "--yes", expect=1)
    assert "refused the sender" in result.output
    assert "0 failed" not in result.output
    smtp_server.handler.replies.clear()
    report = send(smtp_project)
    assert report.summary.sent == 6
    assert len({getaddresses([str(r.message["To"])])[0][1] for r in smtp_server.received}) == 6


def test_unreachable_server_is_one_clear_error_and_nothing_is_lost(
    smtp_project: Project, smtp_server: SmtpServer
) -> None:
    prepare(smtp_project)
    port = smtp_server.port
    smtp_project.update("smtp", port=1)
    result = smtp_project.cli("send", "--list", "weekly", "--yes", expect=1)
    assert "cannot connect to the SMTP server 127.0.0.1:1" in result.output
    smtp_project.update("smtp", port=port)
    assert "6 sent" in smtp_project.cli("send", "--list", "weekly", "--yes").output


def test_refusals_without_pipelining_too(smtp_project: Project, smtp_server: SmtpServer) -> None:
    """The same outcomes through smtplib's plain sendmail, for servers without PIPELINING."""
    smtp_server.handler.pipelining = False
    prepare(smtp_project)
    smtp_server.handler.replies["ada@example.com"] = ["451 4.3.0 Try again later", "250 OK"]
    smtp_server.handler.replies["linus@example.com"] = ["550 5.1.1 No such user"]
    report = send(smtp_project)
    assert (report.summary.sent, report.summary.failed, report.summary.retried) == (5, 1, 1)
