"""The app object and its services, driven in process as the CLI and the web drive them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlmodel import select

from newsletter.app import Hooks, Newsletter
from newsletter.audience.lifecycle import RemoveOutcome, SubscribeOutcome
from newsletter.audience.tokens import unsubscribe_url
from newsletter.config import load_settings
from newsletter.models import Feed, Subscriber, SubscriberStatus, Subscription, SubscriptionStatus
from newsletter.services.subscribers import PendingConfirmation
from tests.conftest import Project


def test_one_database_for_the_life_of_the_app_closed_with_it(newsletter: Newsletter) -> None:
    assert not newsletter.database_opened  # nothing is opened until a use case needs it
    first = newsletter.database
    newsletter.feeds.statuses()
    newsletter.reports.lists()
    assert newsletter.database is first
    newsletter.close()
    assert not newsletter.database_opened


def test_origin_and_consent_are_the_callers(newsletter: Newsletter) -> None:
    report = newsletter.subscribers.add(
        "Grace@Example.COM", "weekly", "Grace", origin="web", consent="signup form, 203.0.113.9"
    )
    assert report.outcome is SubscribeOutcome.ADDED
    assert report.email == "Grace@example.com"
    with newsletter.session() as session:
        subscription = session.exec(select(Subscription)).one()
    assert (subscription.origin, subscription.consent) == ("web", "signup form, 203.0.113.9")
    assert subscription.status is SubscriptionStatus.ACTIVE  # an enum member, not a bare string
    again = newsletter.subscribers.add("grace@example.com", "weekly", origin="cli", consent="x")
    assert again.outcome is SubscribeOutcome.UNCHANGED


def test_the_confirmation_hook_gets_each_pending_reader_and_nothing_is_mailed(
    project: Project,
) -> None:
    data = project.config()
    data["lists"][0]["double_opt_in"] = True
    project.write_config(data)
    handed: list[PendingConfirmation] = []

    def remember(pending: list[PendingConfirmation]) -> int:
        handed.extend(pending)
        return len(pending)

    with Newsletter(load_settings(project.config_path), hooks=Hooks(remember)) as app:
        report = app.subscribers.add("ada@example.com", "weekly", origin="cli", consent="test")
        imported = app.subscribers.import_csv(project.folder / "subscribers/weekly.csv", "weekly")
    assert report.outcome is SubscribeOutcome.PENDING
    assert report.confirmations_sent == 1
    assert next(item.email for item in handed) == "ada@example.com"
    assert len(handed) == 1 + imported.added  # ada is already pending: not handed again
    assert not (project.folder / "outbox").exists()  # the hook replaced the mailer


def test_fetch_send_and_read_the_archive_through_the_services(newsletter: Newsletter) -> None:
    reports = newsletter.feeds.fetch()
    assert [(r.name, r.status, r.counts.new) for r in reports] == [
        ("SignalDesk briefings", "ok", 15)
    ]
    newsletter.subscribers.import_csv(Path("subscribers/weekly.csv"), "weekly")
    plan = newsletter.sending.send("weekly", dry_run=True)
    assert plan.digest_id is not None
    assert plan.audience == 6
    sent = newsletter.sending.send("weekly")
    assert sent.summary.sent == 6
    assert newsletter.sending.send("weekly").nothing_new
    archive = newsletter.readers.archive()
    assert [entry.id for entry in archive] == [sent.digest_id]
    edition = newsletter.readers.edition(archive[0].id)
    assert edition is not None
    assert sent.subject.split(": ")[0] in edition
    [row] = newsletter.reports.digests("weekly")
    assert row.counts == {"sent": 6}


def test_an_unsubscribe_link_and_its_undo_go_through_the_lifecycle(
    newsletter: Newsletter,
) -> None:
    newsletter.subscribers.add("ada@example.com", "weekly", origin="cli", consent="test")
    with newsletter.session() as session:
        subscriber = session.exec(select(Subscriber)).one()
    assert subscriber.id is not None
    link = unsubscribe_url(newsletter.settings, newsletter.signing_key(), 1, subscriber.id)
    token = link.rsplit("/", 1)[1]
    done = newsletter.readers.unsubscribe(token, origin="one-click")
    assert newsletter.reports.lists()[0].counts == {"unsubscribed": 1}
    assert newsletter.readers.resubscribe(done.undo_token).changed
    assert newsletter.reports.lists()[0].counts == {"active": 1}
    # An editor's removal is not the reader's own: the page cannot undo it.
    outcome, _ = newsletter.subscribers.remove("ada@example.com", "weekly")
    assert outcome is RemoveOutcome.UNSUBSCRIBED
    assert not newsletter.readers.resubscribe(done.undo_token).changed


def test_the_clock_is_the_apps(project: Project) -> None:
    with Newsletter(load_settings(project.config_path)) as app:
        app.feeds.fetch()  # the sample's briefings carry no dates: first seen now
    later = datetime.now(UTC) + timedelta(days=3)
    with Newsletter(load_settings(project.config_path), clock=lambda: later) as app:
        app.feeds.fetch()
        with app.session() as session:
            feed = session.exec(select(Feed)).one()
        draft = app.digests.draft("weekly")
    assert feed.last_fetched_at == later
    assert draft is not None
    assert draft.view.window_end == later  # the digest is built as of the app's time
    too_late = later + timedelta(days=30)  # past window_days: nothing is new any more
    with Newsletter(load_settings(project.config_path), clock=lambda: too_late) as app:
        assert app.digests.draft("weekly") is None


def test_a_status_read_back_is_the_enum(newsletter: Newsletter) -> None:
    newsletter.subscribers.add("ada@example.com", "weekly", origin="cli", consent="test")
    with newsletter.session() as session:
        subscriber = session.exec(select(Subscriber)).one()
    assert subscriber.status is SubscriberStatus.ACTIVE
