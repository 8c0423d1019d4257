"""Rules of newsletter/send/claims.py and dispatch.py that only a mutant showed unguarded
(docs/mutation.md): claims given back and taken over, retries and their backoff, a digest that
finishes, and every reader mailed once.

Sends go to the Maildir outbox or to a real SMTP server on 127.0.0.1. A stop comes from the
progress callback, a reader leaves or a sender dies while a given message is being written to
the outbox: at a known point of the send, never from a timer.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from email.utils import getaddresses
from pathlib import Path

import pytest
from aiosmtpd.smtp import SMTP, Session
from aiosmtpd.smtp import Envelope as SmtpEnvelope
from sqlalchemy import event
from sqlmodel import col, select, update

from newsletter.app import Newsletter, Transports
from newsletter.config import load_settings
from newsletter.errors import DeliveryRefused
from newsletter.models import Delivery, DeliveryStatus, utcnow
from newsletter.send.ledger import Outcome, RetryPolicy
from newsletter.send.maildir import MaildirTransport
from newsletter.send.message import Envelope
from newsletter.services.sending import SendReport
from tests.conftest import Project, SmtpServer
from tests.test_bounces import add_alerts_list, sent_to_outbox, verp_dsn
from tests.test_hostile_bounces import returned

READERS = 40  # four claims of ten with the Maildir outbox (one transport)
ADA = "ada@example.com"
RETRY_LATER = "451 4.3.0 Try again later"


class ProcessDied(BaseException):
    """What SIGKILL does to a send, in process: nothing of the sender runs after it."""


class Outbox(MaildirTransport):
    """The project's Maildir outbox, with things that happen while it writes a message."""

    def __init__(self, project: Project) -> None:
        super().__init__(load_settings(project.config_path).maildir_path)
        self.before: dict[str, Callable[[], None]] = {}  # recipient -> what happens first
        self.defer_once: set[str] = set()  # recipients refused with a 4xx the first time
        self.fail: dict[str, Exception] = {}  # recipients whose message cannot be written
        self.die_at: str | None = None  # the sender dies while writing to this recipient

    def send(self, envelope: Envelope, message: bytes) -> None:
        recipient = envelope.recipient
        if recipient in self.before:
            self.before.pop(recipient)()
        if recipient in self.defer_once:
            self.defer_once.discard(recipient)
            raise DeliveryRefused("452 4.2.2 Mailbox full", code=452, permanent=False)
        if recipient in self.fail:
            raise self.fail[recipient]
        if recipient == self.die_at:
            self.die_at = None
            raise ProcessDied
        super().send(envelope, message)


@contextmanager
def opened(project: Project, outbox: Outbox | None = None) -> Iterator[Newsletter]:
    settings = load_settings(project.config_path)
    if outbox is None:
        with Newsletter(settings) as app:
            yield app
        return
    transports = Transports(lambda: outbox, 1, "test outbox")
    with Newsletter(settings, transports=lambda _settings: transports) as app:
        yield app


def readers(project: Project, count: int = READERS) -> list[str]:
    """`count` readers on the weekly list (ids in this order) and a fetched feed."""
    addresses = [f"reader{number:03}@example.com" for number in range(count)]
    rows = "".join(f"{address},Reader {number}\n" for number, address in enumerate(addresses))
    (project.folder / "many.csv").write_text(f"email,name\n{rows}")
    project.cli("fetch")
    project.cli("subscribers", "import", "many.csv", "--list", "weekly")
    return addresses


def outbox_recipients(project: Project) -> Counter[str]:
    return Counter(getaddresses([str(message["To"])])[0][1] for message in project.outbox())


def ledger_line(project: Project, *options: str) -> str:
    """The ledger of the latest digest as `newsletter status` shows it."""
    output = str(project.cli("status", *options).output)
    return [line.strip() for line in output.splitlines() if line.strip().startswith("queued")][-1]


def leave(project: Project, address: str) -> Callable[[], None]:
    return lambda: project.cli("subscribers", "remove", address, "--list", "weekly")


# -- a send that stops part-way ------------------------------------------------------------------


def test_a_stopped_send_gives_back_its_claims_and_the_next_send_mails_the_rest_once(
    project: Project,
) -> None:
    addresses = readers(project)
    stop = threading.Event()
    outcomes: list[Outcome] = []

    def progress(outcome: Outcome) -> None:
        outcomes.append(outcome)
        if len(outcomes) == 5:
            stop.set()  # as SIGTERM does

    with opened(project) as app:
        first = app.sending.send("weekly", progress=progress, stop=stop)
    assert first.summary.stopped_early
    went = outcomes.count("sent")
    assert 5 <= went <= 7  # what was in flight when it stopped is recorded too
    assert len(project.outbox()) == went
    # Nothing is left claimed: the next send need not wait for a lease to run out.
    assert ledger_line(project) == (
        f"queued {READERS - went} · sending 0 · sent {went} · deferred 0 · failed 0 · skipped 0"
    )
    # One who got it and one who did not leave before the next send.
    project.cli("subscribers", "remove", addresses[0], "--list", "weekly")
    project.cli("subscribers", "remove", addresses[-1], "--list", "weekly")
    with opened(project) as app:
        second = app.sending.send("weekly")
    assert not second.summary.stopped_early
    assert second.summary.sent == READERS - went - 1
    assert outbox_recipients(project) == Counter(addresses[:-1])  # everyone else, once
    assert ledger_line(project).endswith(f"sent {READERS - 1} · deferred 0 · failed 0 · skipped 1")
    assert "#1 weekly: sent" in project.cli("status").output
    names = {str(message["To"]) for message in project.outbox()}
    assert names == {f"Reader {n} <{address}>" for n, address in enumerate(addresses[:-1])}


def test_readers_who_leave_during_a_send_are_skipped_and_the_digest_still_finishes(
    project: Project,
) -> None:
    addresses = readers(project)
    first, last = addresses[0], addresses[-1]
    outbox = Outbox(project)

    def both_leave() -> None:
        leave(project, first)()
        leave(project, last)()

    outbox.defer_once.add(first)  # waits for a retry half a minute away when they leave
    outbox.before[addresses[10]] = both_leave
    retry = RetryPolicy(max_attempts=3, base_delay=30, lease_seconds=60)
    with opened(project, outbox) as app:
        report = app.sending.send("weekly", retry=retry)
    assert (report.summary.sent, report.summary.retried) == (READERS - 2, 1)
    assert outbox_recipients(project) == Counter(addresses[1:-1])
    assert "#1 weekly: sent" in project.cli("status").output
    assert ledger_line(project).endswith(f"sent {READERS - 2} · deferred 0 · failed 0 · skipped 2")
    assert "Nothing new" in project.cli("send", "--list", "weekly", "--yes").output


def test_a_reader_whose_earlier_mail_bounces_during_a_send_gets_no_more(
    project: Project, tmp_path: Path
) -> None:
    addresses = readers(project)
    with opened(project) as app:
        app.sending.send("weekly")
    earlier = sent_to_outbox(project)
    project.add_briefing("later", "Later news")
    bounced = addresses[-1]
    dsn = verp_dsn(
        "briefings@signaldesk.example", bounced, "5.1.1", "User unknown", earlier[bounced]
    )
    folder = returned(tmp_path / "returns", dsn)
    outbox = Outbox(project)
    # The returned mail about last week's digest is processed while this week's goes out.
    outbox.before[addresses[10]] = lambda: project.cli("bounces", "process", str(folder))
    with opened(project, outbox) as app:
        report = app.sending.send("weekly")
    assert report.summary.sent == READERS - 1
    assert outbox_recipients(project)[bounced] == 1  # last week's only
    assert ledger_line(project).endswith(f"sent {READERS - 1} · deferred 0 · failed 0 · skipped 1")
    assert "#2 weekly: sent" in project.cli("status").output


# -- claims another run left behind ----------------------------------------------------------------


def test_claims_of_a_dead_run_are_taken_over_and_live_ones_only_when_their_lease_ends(
    project: Project,
) -> None:
    addresses = readers(project)
    lease = 1.0
    project.update("delivery", claim_lease_seconds=lease)
    with opened(project) as app:
        stopped = threading.Event()
        stopped.set()  # the digest is built and its deliveries queued; nothing is sent
        app.sending.send("weekly", stop=stopped)
        # Half the deliveries were claimed by a run that died an hour ago, half by one that is
        # alive and claimed them 0.7 s ago.
        live_since = utcnow() - timedelta(seconds=0.7)
        with app.session() as session:
            ids = sorted(session.exec(select(Delivery.subscriber_id)).all())
            half = col(Delivery.subscriber_id) < ids[len(ids) // 2]
            for rows, owner, claimed_at in (
                (half, "gone.example:4242:dead", utcnow() - timedelta(hours=1)),
                (~half, "other.example:1:live", live_since),
            ):
                session.exec(
                    update(Delivery)
                    .where(rows)
                    .values(status=DeliveryStatus.SENDING, claimed_by=owner, claimed_at=claimed_at)
                )
            session.commit()
        # A send stopped at once takes the dead claims back and leaves the digest open.
        app.sending.send("weekly", stop=stopped)
        assert ledger_line(project).startswith("queued 20 · sending 20 · sent 0")
        report = app.sending.send("weekly")
    # The live run's claims were only taken over once their lease had run out.
    assert utcnow() - live_since >= timedelta(seconds=lease)
    assert report.summary.sent == READERS
    assert outbox_recipients(project) == Counter(addresses)
    assert "#1 weekly: sent" in project.cli("status").output


def test_a_slow_send_keeps_its_claims_from_a_second_send_started_beside_it(
    project: Project,
) -> None:
    addresses = readers(project)
    project.update("delivery", claim_lease_seconds=1.0)
    renewing, renewed, claimed_beside = threading.Event(), threading.Event(), threading.Event()
    beside: list[SendReport] = []

    def on(seen: threading.Event, *parts: str) -> Callable[..., None]:
        def listener(_conn: object, _cursor: object, statement: str, *_args: object) -> None:
            if all(part in statement for part in parts):
                seen.set()

        return listener

    def send_beside() -> None:
        with opened(project) as app:
            event.listen(
                app.database.engine, "before_cursor_execute", on(claimed_beside, "RETURNING")
            )
            beside.append(app.sending.send("weekly"))

    second = threading.Thread(target=send_beside)

    def slow_relay() -> None:
        """The relay takes long over reader 10: as if two leases had passed, this send renews
        its claims; a second send starts beside it and claims what it may."""
        with opened(project) as app, app.session() as session:
            session.exec(
                update(Delivery)
                .where(col(Delivery.status) == DeliveryStatus.SENDING)
                .values(claimed_at=utcnow() - timedelta(seconds=2))
            )
            session.commit()
        renewing.clear()
        renewed.clear()
        assert renewed.wait(timeout=2)  # the next turn of its loop, within a second
        second.start()
        assert claimed_beside.wait(timeout=5)

    outbox = Outbox(project)
    outbox.before[addresses[10]] = slow_relay
    with opened(project, outbox) as app:
        # Renewed once the renewal is committed: only then can another send see it.
        event.listen(
            app.database.engine,
            "after_cursor_execute",
            on(renewing, "UPDATE delivery SET claimed_at="),
        )
        event.listen(
            app.database.engine,
            "commit",
            lambda _conn: renewed.set() if renewing.is_set() else None,
        )
        report = app.sending.send("weekly")
    second.join()
    assert report.summary.sent + beside[0].summary.sent == READERS
    assert outbox_recipients(project) == Counter(addresses)  # nobody twice


def test_a_message_in_flight_when_the_sender_died_goes_out_once_its_lease_ends(
    project: Project,
) -> None:
    addresses = readers(project)
    lease = 1.0
    project.update("delivery", claim_lease_seconds=lease)
    victim = addresses[15]
    outbox = Outbox(project)
    outbox.die_at = victim
    with opened(project, outbox) as app:
        with pytest.raises(ProcessDied):
            app.sending.send("weekly")
        went = len(project.outbox())
        assert victim not in outbox_recipients(project)
        assert " · sending 1 · " in ledger_line(project)  # the claim it died holding
        # As if it had died 0.7 s ago: the next send waits the rest of the lease.
        with app.session() as session:
            claim = select(Delivery).where(Delivery.status == DeliveryStatus.SENDING)
            held = session.exec(claim).one()
            assert held.claimed_at is not None
            died_at = held.claimed_at - timedelta(seconds=0.7)
            held.claimed_at = died_at
            session.add(held)
            session.commit()
        report = app.sending.send("weekly")
    assert utcnow() - died_at >= timedelta(seconds=lease)
    assert report.summary.sent == READERS - went
    assert outbox_recipients(project) == Counter(addresses)  # the victim too, once
    assert "#1 weekly: sent" in project.cli("status").output


def test_another_lists_interrupted_send_holds_up_nobody(project: Project) -> None:
    add_alerts_list(project)
    sample_readers(project)
    project.cli("subscribers", "import", "subscribers/weekly.csv", "--list", "alerts")
    outbox = Outbox(project)
    outbox.defer_once.add(ADA)  # a retry half a minute away
    outbox.die_at = "alan@example.com"  # and a claim left behind
    retry = RetryPolicy(max_attempts=3, base_delay=30, lease_seconds=60)
    with opened(project, outbox) as app:
        with pytest.raises(ProcessDied):
            app.sending.send("alerts", retry=retry)
        alerts = ledger_line(project, "--list", "alerts")
        # The weekly list's send waits for neither, and leaves the alerts' ledger alone.
        report = app.sending.send("weekly", retry=retry)
    assert report.summary.sent == 6
    assert ledger_line(project, "--list", "alerts") == alerts
    assert " · sending 1 · " in alerts
    assert "#2 weekly: sent" in project.cli("status").output


# -- retries ---------------------------------------------------------------------------------------


def send(project: Project, retry: RetryPolicy, outcomes: list[Outcome] | None = None) -> SendReport:
    with opened(project) as app:
        return app.sending.send(
            "weekly", retry=retry, progress=None if outcomes is None else outcomes.append
        )


def sample_readers(project: Project) -> None:
    project.cli("fetch")
    project.cli("subscribers", "import", "subscribers/weekly.csv", "--list", "weekly")


def test_retries_wait_longer_each_time(smtp_project: Project, smtp_server: SmtpServer) -> None:
    sample_readers(smtp_project)
    smtp_server.handler.replies[ADA] = [RETRY_LATER, RETRY_LATER, "250 OK"]
    started = time.monotonic()
    report = send(smtp_project, RetryPolicy(max_attempts=5, base_delay=0.1, lease_seconds=30))
    assert time.monotonic() - started >= 0.1 + 0.2  # base_delay, then twice that
    assert (report.summary.sent, report.summary.retried, report.summary.deferred) == (6, 2, 0)
    assert smtp_server.handler.rcpt_attempts[ADA] == 3


def test_a_deferred_reader_gets_every_retry_again_on_the_next_send(
    smtp_project: Project, smtp_server: SmtpServer
) -> None:
    sample_readers(smtp_project)
    smtp_server.handler.replies[ADA] = [RETRY_LATER]
    retry = RetryPolicy(max_attempts=3, base_delay=0.01, lease_seconds=30)
    outcomes: list[Outcome] = []
    first = send(smtp_project, retry, outcomes)
    assert (first.summary.sent, first.summary.retried, first.summary.deferred) == (5, 2, 1)
    assert Counter(outcomes) == {"sent": 5, "retry": 2, "deferred": 1}  # what the bar counts
    assert smtp_server.handler.rcpt_attempts[ADA] == 3
    second = send(smtp_project, retry)
    assert second.retried_digests == [1]
    assert (second.summary.sent, second.summary.retried, second.summary.deferred) == (0, 2, 1)
    assert smtp_server.handler.rcpt_attempts[ADA] == 6
    assert ledger_line(smtp_project).endswith("sent 5 · deferred 1 · failed 0 · skipped 0")


def test_a_send_opens_at_most_concurrency_connections(
    smtp_project: Project, smtp_server: SmtpServer
) -> None:
    readers(smtp_project, 12)
    smtp_project.update("smtp", concurrency=2)  # README: "connections at once"
    handler = smtp_server.handler
    greeted = handler.handle_EHLO
    connections: list[str] = []

    async def counting(
        server: SMTP, session: Session, envelope: SmtpEnvelope, hostname: str, responses: list[str]
    ) -> list[str]:
        connections.append(hostname)  # one EHLO a connection
        return await greeted(server, session, envelope, hostname, responses)

    handler.handle_EHLO = counting  # type: ignore[method-assign]
    report = send(smtp_project, RetryPolicy(max_attempts=3, base_delay=0.01, lease_seconds=30))
    assert report.summary.sent == 12
    assert 1 <= len(connections) <= 2


def test_the_summary_counts_every_failure_and_deferral(
    smtp_project: Project, smtp_server: SmtpServer
) -> None:
    sample_readers(smtp_project)
    replies = smtp_server.handler.replies
    replies["ada@example.com"] = replies["grace@example.com"] = ["550 5.1.1 No such user"]
    replies["linus@example.com"] = replies["alan@example.com"] = [RETRY_LATER]
    report = send(smtp_project, RetryPolicy(max_attempts=2, base_delay=0.01, lease_seconds=30))
    # What `newsletter send` prints: "2 sent, 2 failed, 2 deferred."
    assert (report.summary.sent, report.summary.failed, report.summary.deferred) == (2, 2, 2)
    assert ledger_line(smtp_project).endswith("sent 2 · deferred 2 · failed 2 · skipped 0")


def test_a_policy_refusal_says_what_to_fix_and_uses_up_nobodys_retries(
    smtp_project: Project, smtp_server: SmtpServer
) -> None:
    sample_readers(smtp_project)
    smtp_server.handler.replies[ADA] = ["550 5.7.26 DMARC policy violation"]
    smtp_project.update("smtp", concurrency=1)
    result = smtp_project.cli("send", "--list", "weekly", "--yes", expect=1)
    said = " ".join(result.output.split())
    assert "the mail server refused the sender: " in said
    assert (
        " fix the sending setup (DNS, DKIM, relay rights); "
        "the rest stays queued for the next `newsletter send`"
    ) in said
    # The next send, with the policy fixed, still gives Ada every retry of a 4xx.
    tried = smtp_server.handler.rcpt_attempts[ADA]
    smtp_server.handler.replies[ADA] = [RETRY_LATER]
    report = send(smtp_project, RetryPolicy(max_attempts=3, base_delay=0.01, lease_seconds=30))
    assert smtp_server.handler.rcpt_attempts[ADA] == tried + 3
    assert report.summary.deferred == 1


def test_a_message_that_cannot_be_written_fails_alone_and_says_why(project: Project) -> None:
    addresses = readers(project, 12)
    outbox = Outbox(project)
    outbox.fail[addresses[3]] = ValueError("no such local part")
    outcomes: list[Outcome] = []
    with opened(project, outbox) as app:
        report = app.sending.send("weekly", progress=outcomes.append)
        record = app.subscribers.record(addresses[3])
    assert (report.summary.sent, report.summary.failed, report.summary.retried) == (11, 1, 0)
    assert not report.summary.stopped_early
    assert Counter(outcomes) == {"sent": 11, "failed": 1}
    assert record is not None
    assert record["subscriber"]["status"] == "active"  # our failure, not their address's
    assert [d["last_reply"] for d in record["deliveries"]] == [
        "not sent: ValueError('no such local part')"
    ]
    assert ledger_line(project).endswith("sent 11 · deferred 0 · failed 1 · skipped 0")
    # What `subscribers show` tells of a message that went: the Message-ID it was sent with,
    # which returned mail quoting it is matched against.
    with opened(project) as app:
        shown = app.subscribers.record(addresses[0])
    assert shown is not None
    sent_ids = {str(message["Message-ID"]) for message in project.outbox()}
    assert shown["deliveries"][0]["message_id"] in sent_ids
