"""Rules of newsletter/bounces/process.py that only a mutant showed unguarded (docs/mutation.md).

Each test sends the sample digest to the six sample readers (the Maildir outbox), then hands
real returned mail, in a real Maildir or mbox, to `bounces process`, and checks what an editor
reads in its output and what happened to the readers.
"""

from __future__ import annotations

import json
import mailbox
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlmodel import select

from newsletter.app import Newsletter
from newsletter.config import load_settings
from newsletter.models import (
    Bounce,
    Delivery,
    Digest,
    Subscriber,
    SubscriberStatus,
    Subscription,
    SubscriptionStatus,
)
from tests.conftest import CORPUS, Project
from tests.test_bounces import feedback_report, message_id_of, verp_dsn
from tests.test_consent import subscriber_id
from tests.test_hostile_bounces import (
    as_sent,
    left_in,
    nested_multipart,
    processed_in,
    publish,
    returned,
    ses_complaint,
    status_of,
)

SISIMAI = CORPUS / "bounces" / "sisimai"
BOUNCE_DOMAIN = "bounces.signaldesk.example"
SES = "no-reply@sns.amazonaws.com"
ACTIVE, BOUNCED = SubscriberStatus.ACTIVE, SubscriberStatus.BOUNCED
HARD = ("5.1.1", "User unknown")
SOFT = ("4.2.2", "Mailbox full")


@contextmanager
def opened(project: Project, **bounces: object) -> Iterator[Newsletter]:
    """The app on the project's config, with `[bounces]` settings changed first."""
    if bounces:
        project.update("bounces", **bounces)
    with Newsletter(load_settings(project.config_path)) as app:
        yield app


def dsn_about(sent: dict[str, bytes], reader: str, code: tuple[str, str], note: str = "") -> bytes:
    """A DSN from the reader's server that quotes our message to them, as it got it."""
    status, text = code
    return verp_dsn(
        "briefings@signaldesk.example",
        reader,
        status,
        f"{text}{note}",
        original=as_sent(sent[reader]),
    )


def without_message_id(raw: bytes) -> bytes:
    """The returned mail with no Message-ID of its own (our quoted message keeps its own)."""
    head, sep, body = raw.partition(b"\r\n\r\n")
    kept = [line for line in head.split(b"\r\n") if not line.lower().startswith(b"message-id:")]
    return b"\r\n".join(kept) + sep + body


def soft_bounce_count(app: Newsletter, reader: str) -> int:
    with app.session() as session:
        rows = session.exec(select(Bounce).join(Subscriber).where(Subscriber.email == reader)).all()
    return len(rows)


def mbox_of(path: Path, *messages: bytes) -> Path:
    """An mbox holds its messages in order: what comes after the first one is seen too."""
    box = mailbox.mbox(path)
    for raw in messages:
        box.add(raw)
    box.close()
    return path


# -- counting what came back -------------------------------------------------------------------


def test_auto_replies_and_delivery_notices_are_counted_and_moved_aside_with_the_rest(
    project: Project, newsletter: Newsletter, tmp_path: Path
) -> None:
    sent = publish(newsletter, project)
    folder = returned(
        tmp_path / "returns",
        (SISIMAI / "rfc3834-01.eml").read_bytes(),  # an out-of-office reply
        (SISIMAI / "rfc3464-28.eml").read_bytes(),  # a "delivered" notice
        dsn_about(sent, "ada@example.com", HARD),
        dsn_about(sent, "grace@example.com", HARD),
        feedback_report(message_id_of(sent["linus@example.com"])),
        feedback_report(message_id_of(sent["alan@example.com"])),
    )
    output = project.cli("bounces", "process", str(folder)).output
    assert output.startswith(
        "6 message(s): 2 hard, 0 soft, 2 complaint(s), 2 auto-reply/delivery notice(s); "
        "4 address(es) suppressed."
    )
    assert "changed nothing" not in output
    assert (left_in(folder), processed_in(folder)) == (0, 6)


def test_what_changed_nothing_says_why_and_the_mail_after_it_is_still_acted_on(
    project: Project, tmp_path: Path
) -> None:
    with opened(project, json_senders=["@sns.amazonaws.com"]) as app:
        sent = publish(app, project)
        path = mbox_of(
            tmp_path / "returns.mbox",
            b"From: someone@example.org\nSubject: hello\n\nJust saying hello.\n",
            verp_dsn("briefings@signaldesk.example", "ada@example.com", *HARD),
            # A JSON notice with no sender address, about our message to Ada: not believed.
            ses_complaint("", ["ada@example.com"], message_id_of(sent["ada@example.com"])),
            nested_multipart(60),
            dsn_about(sent, "grace@example.com", HARD),
        )
        output = project.cli("bounces", "process", str(path)).output
        assert output.startswith("5 message(s): 1 hard, 0 soft, 0 complaint(s)")
        assert (
            f"3 message(s) changed nothing and stay in {path}:\n"
            "    0: not a bounce or complaint that can be read\n"
            "    1: names no message of ours (no signed return path, no Message-ID we sent)\n"
            "    2: a JSON notice from no sender, who is not in [bounces] json_senders\n"
        ) in output
        assert (
            "1 message(s) could not be read and moved to the processed folder:\n"
            "    3: parts nested more than 50 deep\n"
        ) in output
        assert status_of(app, "ada@example.com") == ACTIVE
        assert status_of(app, "grace@example.com") == BOUNCED
    assert len(mailbox.mbox(path)) == 3
    assert len(mailbox.mbox(tmp_path / "returns.mbox.processed")) == 2


# -- the same returned mail twice, and different ones ------------------------------------------


def test_the_same_bounce_delivered_twice_with_other_trace_headers_counts_once(
    project: Project, tmp_path: Path
) -> None:
    with opened(project, soft_limit=2) as app:  # counted twice, it would stop mail to Alan
        sent = publish(app, project)
        bounce = dsn_about(sent, "alan@example.com", SOFT)
        folder = returned(tmp_path / "returns", b"Received: from mx1.example.com\r\n" + bounce)
        assert app.bounces.process(folder).soft == 1
        # The same report again (same Message-ID), as delivered by another of our servers.
        returned(folder, b"Received: from mx2.example.com\r\nDelivered-To: x\r\n" + bounce)
        again = app.bounces.process(folder)
        assert (again.messages, again.soft, again.suppressed, again.unreadable) == (1, 0, 0, [])
        assert status_of(app, "alan@example.com") == ACTIVE
        assert soft_bounce_count(app, "alan@example.com") == 1


def test_different_bounces_without_a_message_id_each_count(
    project: Project, tmp_path: Path
) -> None:
    with opened(project, soft_limit=2) as app:
        sent = publish(app, project)

        def two_without_id(reader: str) -> list[bytes]:
            return [
                without_message_id(dsn_about(sent, reader, SOFT, f" (day {day})")) for day in (1, 2)
            ]

        crlf = two_without_id("alan@example.com")
        lf = [raw.replace(b"\r\n", b"\n") for raw in two_without_id("linus@example.com")]
        report = app.bounces.process(returned(tmp_path / "returns", *crlf, *lf))
        assert (report.soft, report.suppressed) == (4, 2)
        assert status_of(app, "alan@example.com") == BOUNCED
        assert status_of(app, "linus@example.com") == BOUNCED


def test_the_same_bounce_without_a_message_id_as_crlf_and_as_lf_counts_once(
    project: Project, tmp_path: Path
) -> None:
    with opened(project, soft_limit=2) as app:
        sent = publish(app, project)
        bounce = without_message_id(dsn_about(sent, "alan@example.com", SOFT))
        # Fetched over IMAP (CRLF), then found again in a Maildir copy (LF).
        assert app.bounces.process(returned(tmp_path / "imap", bounce)).soft == 1
        lf = app.bounces.process(returned(tmp_path / "maildir", bounce.replace(b"\r\n", b"\n")))
        assert (lf.messages, lf.soft, lf.suppressed) == (1, 0, 0)
        assert status_of(app, "alan@example.com") == ACTIVE


def test_a_bounce_with_an_odd_message_id_line_is_still_acted_on(
    project: Project, newsletter: Newsletter, tmp_path: Path
) -> None:
    sent = publish(newsletter, project)
    eight_bit = dsn_about(sent, "ada@example.com", HARD)
    eight_bit = re.sub(rb"Message-ID: <", b"Message-ID: <\xe9t\xe9.", eight_bit, count=1)
    no_space = re.sub(
        rb"Message-ID: <", b"Message-ID:<", dsn_about(sent, "grace@example.com", HARD), count=1
    )
    report = newsletter.bounces.process(returned(tmp_path / "returns", eight_bit, no_space))
    assert (report.hard, report.suppressed, report.unreadable) == (2, 2, [])
    assert status_of(newsletter, "ada@example.com") == BOUNCED
    assert status_of(newsletter, "grace@example.com") == BOUNCED


# -- the verdict for the one reader our message went to ----------------------------------------


def two_recipients(sent: dict[str, bytes], reader: str, first: str, second: str) -> bytes:
    """A DSN about our message to `reader` with two recipient blocks: `first` delivered, and
    `second` failed (5.1.1), as a server that expands an alias reports."""
    dsn = verp_dsn(
        "briefings@signaldesk.example", [first, second], *HARD, original=as_sent(sent[reader])
    ).decode()
    failed = "Action: failed\r\nStatus: 5.1.1\r\nDiagnostic-Code: smtp; 550 5.1.1 User unknown"
    delivered = "Action: delivered\r\nStatus: 2.0.0\r\nDiagnostic-Code: smtp; 250 2.0.0 OK"
    return dsn.replace(failed, delivered, 1).encode()


def test_the_verdict_for_the_reader_is_the_one_the_report_gives_them(
    project: Project, newsletter: Newsletter, tmp_path: Path
) -> None:
    sent = publish(newsletter, project)
    folder = returned(
        tmp_path / "returns",
        # Delivered to Ada herself; only a copy to another address of hers failed.
        two_recipients(sent, "ada@example.com", "ada@example.com", "ada@elsewhere.example"),
        # Grace is not named: the first address the report judges is hers (a forward).
        two_recipients(sent, "grace@example.com", "g@old.example", "g@forward.example"),
        # Alan's mailbox is full; the report names Zoe as unknown too, but it is about Alan.
        verp_dsn(
            "briefings@signaldesk.example",
            ["alan@example.com", "zoe@example.com"],
            *HARD,
            original=as_sent(sent["alan@example.com"]),
        ).replace(
            b"Status: 5.1.1\r\nDiagnostic-Code: smtp; 550 5.1.1 User unknown",
            b"Status: 4.2.2\r\nDiagnostic-Code: smtp; 452 4.2.2 Mailbox full",
            1,
        ),
    )
    report = newsletter.bounces.process(folder)
    assert (report.hard, report.soft, report.ignored, report.suppressed) == (1, 1, 1, 1)
    assert (report.unreadable, report.unrecognized) == ([], [])
    assert status_of(newsletter, "ada@example.com") == ACTIVE
    assert status_of(newsletter, "grace@example.com") == BOUNCED
    assert status_of(newsletter, "alan@example.com") == ACTIVE
    assert status_of(newsletter, "zoe@example.com") == ACTIVE
    assert processed_in(folder) == 3


def complaint_naming_nobody(message_id: str) -> bytes:
    """A feedback loop report that redacted every address: no Original-Rcpt-To, no To."""
    return (
        "From: abuse@fbl.example.net\nTo: briefings@signaldesk.example\nSubject: Complaint\n"
        "MIME-Version: 1.0\nContent-Type: multipart/report; report-type=feedback-report; "
        'boundary="F"\n\n--F\nContent-Type: text/plain\n\nAn abuse report.\n\n'
        "--F\nContent-Type: message/feedback-report\n\n"
        "Feedback-Type: abuse\nUser-Agent: fbl/1.0\nVersion: 1\n\n"
        "--F\nContent-Type: text/rfc822-headers\n\n"
        f"Message-ID: {message_id}\nFrom: briefings@signaldesk.example\nSubject: x\n--F--\n"
    ).encode()


def test_a_complaint_that_names_nobody_is_the_complaint_of_the_reader_we_mailed(
    project: Project, newsletter: Newsletter, tmp_path: Path
) -> None:
    sent = publish(newsletter, project)
    arf = complaint_naming_nobody(message_id_of(sent["grace@example.com"]))
    report = newsletter.bounces.process(returned(tmp_path / "fbl", arf))
    assert (report.complaints, report.suppressed, report.unreadable) == (1, 1, [])
    assert status_of(newsletter, "grace@example.com") == SubscriberStatus.COMPLAINED
    listing = project.cli("bounces", "list").output
    assert (
        "  grace@example.com  complaint  feedback  -> "
        "suppressed: complaint, unsubscribed from every list"
    ) in listing


def ses_bounce_naming_nobody(message_id: str) -> bytes:
    notice = {
        "notificationType": "Bounce",
        "bounce": {"bounceType": "Permanent", "bouncedRecipients": []},
        "mail": {"commonHeaders": {"messageId": message_id}},
    }
    return (
        f"From: AWS Notifications <{SES}>\nTo: ses@signaldesk.example\n"
        f"Subject: AWS Notification Message\n\n{json.dumps(notice)}\n"
    ).encode()


def test_a_bounce_notice_that_names_nobody_is_no_complaint(
    project: Project, tmp_path: Path
) -> None:
    with opened(project, json_senders=[SES]) as app:
        sent = publish(app, project)
        notice = ses_bounce_naming_nobody(message_id_of(sent["grace@example.com"]))
        report = app.bounces.process(returned(tmp_path / "ses", notice))
        assert (report.hard, report.complaints, report.suppressed, report.ignored) == (0, 0, 0, 1)
        assert status_of(app, "grace@example.com") == ACTIVE
        with app.session() as session:
            left = select(Subscription).where(Subscription.status != SubscriptionStatus.ACTIVE)
            assert session.exec(left).first() is None  # still on the list


# -- which message of ours a report is about ---------------------------------------------------


def test_a_mangled_return_path_is_passed_over_for_the_genuine_one_the_report_quotes(
    project: Project, tmp_path: Path
) -> None:
    project.update("publication", bounce_domain=BOUNCE_DOMAIN)
    with opened(project) as app:
        sent = publish(app, project)
        genuine = re.search(rb"Return-Path: <([^>]+)>", sent["ada@example.com"])
        assert genuine is not None
        # A relay mangled the address it returned the mail to; the copy of our headers it
        # quotes (no Message-ID among them) keeps the return path we sent.
        headers = b"Return-Path: <" + genuine.group(1) + b">\nSubject: SignalDesk Weekly\n\n"
        dsn = verp_dsn(
            f"bounces+mangled-by-a-relay@{BOUNCE_DOMAIN}",
            "ada@example.com",
            *HARD,
            original=headers,
        )
        report = app.bounces.process(returned(tmp_path / "returns", dsn))
        assert (report.hard, report.suppressed, report.unrecognized) == (1, 1, [])
        assert status_of(app, "ada@example.com") == BOUNCED


def test_a_report_that_quotes_its_own_message_id_before_ours_is_still_ours(
    project: Project, newsletter: Newsletter, tmp_path: Path
) -> None:
    sent = publish(newsletter, project)
    ours = message_id_of(sent["ada@example.com"])
    # As Exchange writes one: its own Message-ID first, then our headers as plain text.
    ndr = (
        "From: postmaster@outlook.example\nTo: briefings@signaldesk.example\n"
        "Subject: Undeliverable: SignalDesk Weekly\nMIME-Version: 1.0\n"
        'Content-Type: multipart/report; report-type=delivery-status; boundary="B"\n\n'
        "--B\nContent-Type: text/plain\n\n"
        "Delivery has failed to these recipients: ada@example.com\n\n"
        "Diagnostic information for administrators:\nGenerating server: mx.outlook.example\n"
        "Message-ID: <NDR-4711@mx.outlook.example>\n\n"
        f"Original message headers:\n\nMessage-ID: {ours}\nSubject: SignalDesk Weekly\n\n"
        "--B\nContent-Type: message/delivery-status\n\nReporting-MTA: dns; mx.outlook.example\n\n"
        "Final-Recipient: rfc822; ada@example.com\nAction: failed\nStatus: 5.1.1\n"
        "Diagnostic-Code: smtp; 550 5.1.1 User unknown\n\n--B--\n"
    ).encode()
    report = newsletter.bounces.process(returned(tmp_path / "returns", ndr))
    assert (report.hard, report.suppressed, report.unrecognized) == (1, 1, [])
    assert status_of(newsletter, "ada@example.com") == BOUNCED


def test_a_report_about_a_message_not_yet_handed_over_changes_nothing(
    project: Project, tmp_path: Path
) -> None:
    project.update("publication", bounce_domain=BOUNCE_DOMAIN)
    with opened(project) as app:
        app.feeds.fetch()
        app.subscribers.import_csv(project.folder / "subscribers" / "weekly.csv", "weekly")
        stopped = threading.Event()
        stopped.set()  # the digest is built and its deliveries queued; nothing is sent
        app.sending.send("weekly", stop=stopped)
        ada, grace = subscriber_id(app, "ada@example.com"), subscriber_id(app, "grace@example.com")
        with app.session() as session:
            digest = session.exec(select(Digest)).one()
            queued = session.exec(select(Delivery.message_id)).all()
        assert digest.id is not None
        assert len(queued) == 6
        assert set(queued) == {None}
        # What the return path and the Message-ID of the two messages will be, once sent.
        token = app.signing_key(for_mail=True).sign("bounce", digest.id, ada)
        by_verp = verp_dsn(f"bounces+{token}@{BOUNCE_DOMAIN}", "ada@example.com", *HARD)
        quoted = f"Message-ID: <{digest.nonce}.{grace}@signaldesk.example>\nSubject: x\n\n"
        by_message_id = verp_dsn(
            "briefings@signaldesk.example", "grace@example.com", *HARD, original=quoted.encode()
        )
        folder = returned(tmp_path / "returns", by_verp, by_message_id)
        report = app.bounces.process(folder)
        assert (report.hard, report.suppressed, len(report.unrecognized)) == (0, 0, 2)
        assert left_in(folder) == 2
        assert status_of(app, "ada@example.com") == ACTIVE
        assert status_of(app, "grace@example.com") == ACTIVE


# -- where the returned mail is read from ------------------------------------------------------


def test_an_empty_mbox_is_read_as_no_mail(project: Project, tmp_path: Path) -> None:
    empty = tmp_path / "bounces.mbox"
    empty.write_bytes(b"")  # a fresh /var/mail/bounces
    output = project.cli("bounces", "process", str(empty)).output
    assert output.startswith("0 message(s): 0 hard, 0 soft, 0 complaint(s)")


def test_a_wrong_path_gets_a_hint_of_what_to_give(project: Project, tmp_path: Path) -> None:
    csv_file = tmp_path / "list.csv"
    csv_file.write_text("email,name\nada@example.com,Ada\n")
    wrong = project.cli("bounces", "process", str(csv_file), expect=1).output
    assert "\n  give an mbox file or a Maildir folder of returned mail\n" in wrong
    folder = tmp_path / "plain"
    folder.mkdir()
    neither = project.cli("bounces", "process", str(folder), expect=1).output
    assert "\n  give the folder holding cur/ and new/, or an mbox file\n" in neither


def test_a_reader_cannot_complain_in_another_readers_name(
    project: Project, newsletter: Newsletter, tmp_path: Path
) -> None:
    """Our Message-IDs carry a keyed tag: from their own, a reader could write another
    reader's id (the digest's nonce is the same for all), and a feedback report quoting it
    unsubscribed that reader from every list."""
    sent = publish(newsletter, project)
    own = message_id_of(sent["ada@example.com"])
    assert re.fullmatch(r"<[0-9a-f]+\.\d+\.[a-z2-7]{16}@signaldesk\.example>", own)
    grace = subscriber_id(newsletter, "grace@example.com")
    ada = subscriber_id(newsletter, "ada@example.com")
    with_adas_tag = own.replace(f".{ada}.", f".{grace}.")
    without_a_tag = re.sub(r"\.\d+\.[a-z2-7]{16}@", f".{grace}@", own)
    for number, forged in enumerate((with_adas_tag, without_a_tag)):
        folder = tmp_path / f"fbl{number}"
        report = newsletter.bounces.process(returned(folder, feedback_report(forged)))
        assert report.complaints == 0
    assert status_of(newsletter, "grace@example.com") == SubscriberStatus.ACTIVE
    genuine = newsletter.bounces.process(returned(tmp_path / "real", feedback_report(own)))
    assert genuine.complaints == 1  # Ada's own complaint still counts
