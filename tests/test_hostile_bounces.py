"""Returned mail written by strangers: forged reports, mail nested too deep, a report seen twice.

A report acts only on the one reader a message of ours went to, found by the signed VERP return
path or by the Message-ID of that message; what it names otherwise proves nothing (the rule is
in newsletter/bounces/process.py). Every mail here is a real file in a real Maildir.
"""

from __future__ import annotations

import json
import mailbox
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlmodel import select

from newsletter.app import Newsletter
from newsletter.bounces.process import ProcessReport
from newsletter.config import load_settings
from newsletter.models import (
    Bounce,
    Subscriber,
    SubscriberStatus,
    Subscription,
    SubscriptionStatus,
)
from tests.conftest import Project
from tests.test_bounces import (
    add_alerts_list,
    feedback_report,
    message_id_of,
    sent_to_outbox,
    verp_dsn,
)

READERS = 5000
BOUNCE_DOMAIN = "bounces.signaldesk.example"
SES = "no-reply@sns.amazonaws.com"
ACTIVE = SubscriberStatus.ACTIVE


@pytest.fixture(params=[False, True], ids=["without-bounce-domain", "with-bounce-domain"])
def app(project: Project, request: pytest.FixtureRequest) -> Iterator[Newsletter]:
    """The app, with or without VERP; SES notices are expected from Amazon's SNS only."""
    if request.param:
        project.update("publication", bounce_domain=BOUNCE_DOMAIN)
    project.update("bounces", json_senders=["@sns.amazonaws.com"])
    with Newsletter(load_settings(project.config_path)) as newsletter:
        yield newsletter


def publish(app: Newsletter, project: Project) -> dict[str, bytes]:
    """The sample digest sent to the six sample readers: address -> our message in the outbox."""
    app.feeds.fetch()
    app.subscribers.import_csv(project.folder / "subscribers" / "weekly.csv", "weekly")
    assert app.sending.send("weekly").summary.sent == 6
    return sent_to_outbox(project)


def import_readers(app: Newsletter, folder: Path) -> list[str]:
    """5,000 more readers on the list, none of whom has been sent anything yet."""
    addresses = [f"reader{number:04}@example.com" for number in range(READERS)]
    path = folder / "many.csv"
    path.write_text("email,name\n" + "".join(f"{address},Reader\n" for address in addresses))
    assert app.subscribers.import_csv(path, "weekly").added == READERS
    return addresses


def as_sent(raw: bytes) -> bytes:
    """Our message as the remote server got it: without the trace lines our outbox adds."""
    return b"".join(
        line
        for line in raw.splitlines(keepends=True)
        if not line.startswith((b"Return-Path:", b"Delivered-To:"))
    )


def returned(folder: Path, *messages: bytes) -> Path:
    box = mailbox.Maildir(folder, create=True)
    for raw in messages:
        box.add(raw)
    return folder


def left_in(folder: Path) -> int:
    return len(mailbox.Maildir(folder, create=False))


def processed_in(folder: Path) -> int:
    return len(mailbox.Maildir(folder, create=False).get_folder("processed"))


def statuses(app: Newsletter) -> Counter[SubscriberStatus]:
    with app.session() as session:
        return Counter(session.exec(select(Subscriber.status)).all())


def status_of(app: Newsletter, email: str) -> SubscriberStatus:
    with app.session() as session:
        return session.exec(select(Subscriber.status).where(Subscriber.email == email)).one()


def assert_changed_nothing(app: Newsletter, report: ProcessReport, folder: Path) -> str:
    """Nobody suppressed, the mail left where it was and listed; why, as the editor reads it."""
    assert (report.hard, report.soft, report.complaints, report.suppressed) == (0, 0, 0, 0)
    assert set(statuses(app)) == {ACTIVE}
    assert len(report.unrecognized) == 1
    assert left_in(folder) == 1
    with app.session() as session:
        assert session.exec(select(Bounce)).first() is None
        left = select(Subscription).where(Subscription.status != SubscriptionStatus.ACTIVE)
        assert session.exec(left).first() is None
    return report.why[report.unrecognized[0]]


# What a forger can write of "our" message: a Message-ID of our shape with a nonce we never
# made, and a VERP return path with a signature that is not ours.
FORGED_ORIGINAL = (
    f"Return-Path: <bounces+MS4x.AAAAAAAAAAAAAAAAAAAAAA@{BOUNCE_DOMAIN}>\n"
    "Message-ID: <0123456789abcdef.1@signaldesk.example>\n"
    "From: SignalDesk <briefings@signaldesk.example>\n"
    "To: reader0000@example.com\n"
    "Subject: SignalDesk Weekly\n\nhello\n"
).encode()


def forged_dsn(addresses: list[str]) -> bytes:
    return verp_dsn(
        f"bounces+forged@{BOUNCE_DOMAIN}",
        addresses,
        "5.1.1",
        "User unknown",
        original=FORGED_ORIGINAL,
    )


def prose_error(addresses: list[str]) -> bytes:
    return (
        "From: someone@example.org\nTo: briefings@signaldesk.example\nSubject: Error\n\n"
        f"{' '.join(addresses)}: no such user, address does not exist\n"
    ).encode()


def forged_arf(addresses: list[str]) -> bytes:
    fields = "".join(f"Original-Rcpt-To: {address}\n" for address in addresses)
    forged_headers = FORGED_ORIGINAL.split(b"\n\n")[0].decode()
    return (
        "From: abuse@fbl.example.net\nTo: briefings@signaldesk.example\nSubject: Complaint\n"
        "MIME-Version: 1.0\nContent-Type: multipart/report; report-type=feedback-report; "
        'boundary="F"\n\n--F\nContent-Type: text/plain\n\nAn abuse report.\n\n'
        "--F\nContent-Type: message/feedback-report\n\n"
        f"Feedback-Type: abuse\nUser-Agent: forged/1.0\nVersion: 1\n{fields}\n"
        f"--F\nContent-Type: text/rfc822-headers\n\n{forged_headers}\n--F--\n"
    ).encode()


@pytest.mark.parametrize(
    "forge",
    [forged_dsn, prose_error, forged_arf],
    ids=["dsn", "one-line-prose-error", "feedback-report"],
)
def test_a_forged_report_naming_5000_readers_changes_nothing(
    app: Newsletter, project: Project, tmp_path: Path, forge: Callable[[list[str]], bytes]
) -> None:
    folder = returned(tmp_path / "returns", forge(import_readers(app, project.folder)))
    report = app.bounces.process(folder)
    assert "names no message of ours" in assert_changed_nothing(app, report, folder)


def ses_complaint(
    sender: str, addresses: list[str], message_id: str | None, *, wrapped: bool = False
) -> bytes:
    """An SES complaint notice naming `addresses`, as is or `wrapped` in an SNS envelope; with
    `message_id` it names our message too, as SES does when it includes the original's
    headers."""
    mail: dict[str, object] = {
        "messageId": "0100018f00000000-ffffffff-0000-0000-0000-000000000000-000000",
        "source": "briefings@signaldesk.example",
    }
    if message_id:
        mail["commonHeaders"] = {"messageId": message_id}
        mail["headers"] = [{"name": "Message-ID", "value": message_id}]
    notice = {
        "notificationType": "Complaint",
        "complaint": {"complainedRecipients": [{"emailAddress": a} for a in addresses]},
        "mail": mail,
    }
    body = json.dumps(notice)
    if wrapped:
        body = json.dumps({"Type": "Notification", "Message": body})
    return (
        f"From: AWS Notifications <{sender}>\nTo: ses@signaldesk.example\n"
        f"Subject: AWS Notification Message\nContent-Type: text/plain; charset=UTF-8\n\n"
        f"{body}\n"
    ).encode()


@pytest.mark.parametrize(
    ("sender", "names_our_message", "why"),
    [
        ("mallory@evil.example", True, "not in [bounces] json_senders"),
        (SES, False, "names no message of ours"),
    ],
    ids=["from-a-sender-not-listed", "tied-to-no-message-of-ours"],
)
def test_ses_json_that_cannot_be_believed_unsubscribes_nobody(
    app: Newsletter,
    project: Project,
    tmp_path: Path,
    sender: str,
    names_our_message: bool,
    why: str,
) -> None:
    sent = publish(app, project)
    addresses = [*sent, *import_readers(app, project.folder)]
    ours = message_id_of(sent["ada@example.com"]) if names_our_message else None
    folder = returned(tmp_path / "returns", ses_complaint(sender, addresses, ours))
    report = app.bounces.process(folder)
    assert why in assert_changed_nothing(app, report, folder)


@pytest.mark.parametrize("wrapped", [False, True], ids=["as-is", "in-an-sns-envelope"])
def test_ses_json_from_a_listed_sender_about_our_message_acts_on_its_reader_alone(
    app: Newsletter, project: Project, tmp_path: Path, wrapped: bool
) -> None:
    sent = publish(app, project)
    addresses = [*sent, *import_readers(app, project.folder)]
    ours = message_id_of(sent["ada@example.com"])
    notice = ses_complaint(SES, addresses, ours, wrapped=wrapped)
    folder = returned(tmp_path / "returns", notice)
    report = app.bounces.process(folder)
    assert (report.complaints, report.suppressed, report.unrecognized) == (1, 1, [])
    assert statuses(app) == Counter({ACTIVE: READERS + 5, SubscriberStatus.COMPLAINED: 1})
    assert status_of(app, "ada@example.com") == SubscriberStatus.COMPLAINED


def test_a_genuine_dsn_quoting_our_message_id_suppresses_exactly_that_reader(
    app: Newsletter, project: Project, tmp_path: Path
) -> None:
    sent = publish(app, project)
    # The remote server quotes our message as it got it, with no VERP Return-Path in it, and
    # names another reader of ours too: only the reader that message went to is touched.
    dsn = verp_dsn(
        "briefings@signaldesk.example",
        ["ada@example.com", "grace@example.com"],
        "5.1.1",
        "User unknown",
        original=as_sent(sent["ada@example.com"]),
    )
    folder = returned(tmp_path / "returns", dsn)
    report = app.bounces.process(folder)
    assert (report.hard, report.suppressed, report.unrecognized) == (1, 1, [])
    assert statuses(app) == Counter({ACTIVE: 5, SubscriberStatus.BOUNCED: 1})
    assert status_of(app, "ada@example.com") == SubscriberStatus.BOUNCED
    with app.session() as session:
        bounce = session.exec(select(Bounce)).one()
        assert bounce.digest_id is not None  # tied to the digest the message was
    assert (left_in(folder), processed_in(folder)) == (0, 1)


def test_a_complaint_quoting_our_message_id_unsubscribes_that_reader_from_every_list(
    project: Project, tmp_path: Path
) -> None:
    add_alerts_list(project)
    with Newsletter(load_settings(project.config_path)) as app:
        sent = publish(app, project)
        app.subscribers.import_csv(project.folder / "subscribers" / "weekly.csv", "alerts")
        arf = feedback_report(message_id_of(sent["grace@example.com"]))
        report = app.bounces.process(returned(tmp_path / "fbl", arf))
        assert (report.complaints, report.suppressed) == (1, 1)
        assert statuses(app) == Counter({ACTIVE: 5, SubscriberStatus.COMPLAINED: 1})
        with app.session() as session:
            rows = session.exec(select(Subscriber.email, Subscription.status).join(Subscription))
            left = Counter(email for email, status in rows if status != ACTIVE)
        assert left == {"grace@example.com": 2}  # weekly and alerts


def nested_multipart(depth: int) -> bytes:
    opening = "".join(
        f'Content-Type: multipart/mixed; boundary="b{level}"\n\n--b{level}\n'
        for level in range(depth)
    )
    closing = "".join(f"--b{level}--\n" for level in reversed(range(depth)))
    return (
        "From: someone@example.org\nSubject: Undelivered Mail\nMIME-Version: 1.0\n"
        f"{opening}Content-Type: text/plain\n\nUser unknown\n{closing}"
    ).encode()


def nested_rfc822(depth: int) -> bytes:
    return (
        "From: MAILER-DAEMON@mx.example.com\nSubject: Returned mail\nMIME-Version: 1.0\n"
        + "Content-Type: message/rfc822\n\n" * depth
        + "Subject: the bottom\n\nUser unknown\n"
    ).encode()


def test_mail_nested_1000_deep_is_moved_aside_and_the_others_are_acted_on(
    project: Project, tmp_path: Path
) -> None:
    project.update("bounces", json_senders=[SES])
    project.cli("fetch")
    project.cli("subscribers", "import", "subscribers/weekly.csv", "--list", "weekly")
    project.cli("send", "--list", "weekly", "--yes")
    sent = sent_to_outbox(project)
    # A notice from a listed sender whose JSON holds what no notice does: fails while read.
    broken = json.dumps({"notificationType": "Bounce", "bounce": {"bouncedRecipients": [42]}})
    folder = returned(
        tmp_path / "returns",
        nested_multipart(1000),
        nested_rfc822(1000),
        f"From: {SES}\nSubject: AWS Notification Message\n\n{broken}\n".encode(),
        verp_dsn(
            "briefings@signaldesk.example",
            "ada@example.com",
            "5.1.1",
            "User unknown",
            original=as_sent(sent["ada@example.com"]),
        ),
    )
    output = project.cli("bounces", "process", str(folder)).output
    assert "4 message(s): 1 hard, 0 soft" in output
    assert "1 address(es) suppressed" in output
    assert "3 message(s) could not be read and moved to the processed folder:" in output
    assert output.count(": parts nested more than 50 deep\n") == 2
    assert ": AttributeError: 'int' object has no attribute 'get'\n" in output
    assert (left_in(folder), processed_in(folder)) == (0, 4)
    again = project.cli("bounces", "process", str(folder)).output
    assert again.startswith("0 message(s): 0 hard, 0 soft, 0 complaint(s)")
    assert processed_in(folder) == 4
    assert "bounced 1" in project.cli("lists").output


def test_the_same_soft_bounce_processed_twice_counts_once(project: Project, tmp_path: Path) -> None:
    project.update("bounces", soft_limit=2)  # counted twice, it would stop mail to Alan
    with Newsletter(load_settings(project.config_path)) as app:
        sent = publish(app, project)
        soft = verp_dsn(
            "briefings@signaldesk.example",
            "alan@example.com",
            "4.2.2",
            "Mailbox full",
            original=as_sent(sent["alan@example.com"]),
        )
        folder = returned(tmp_path / "returns", soft)
        first = app.bounces.process(folder)
        assert (first.soft, first.suppressed) == (1, 0)
        returned(folder, soft)  # back in new/, as after a crash between the commit and the move
        second = app.bounces.process(folder)
        assert (second.messages, second.soft, second.suppressed, second.unrecognized) == (
            1,
            0,
            0,
            [],
        )
        assert (left_in(folder), processed_in(folder)) == (0, 2)
        assert status_of(app, "alan@example.com") == ACTIVE
        with app.session() as session:
            actions = session.exec(select(Bounce.action)).all()
        assert actions == ["counted: soft bounce 1 of 2"]


def test_a_huge_prose_mail_is_read_in_linear_time(newsletter: Newsletter, tmp_path: Path) -> None:
    # Two million address characters, then 20,000 addresses on one line: each search for an
    # address once restarted inside the run and each address looked back to its line's start.
    addresses = " ".join(f"reader{number}@example.com" for number in range(20_000))
    body = f"{'x' * 2_000_000}@example.com {addresses} does not exist"
    prose = f"From: someone@example.org\nSubject: Error\n\n{body}\n".encode()
    folder = returned(tmp_path / "returns", prose)
    started = time.monotonic()
    report = newsletter.bounces.process(folder)
    assert time.monotonic() - started < 10
    assert len(report.unrecognized) == 1
