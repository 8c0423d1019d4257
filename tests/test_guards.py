"""Rules that once had no test: each test here fails when the line it names is broken.

Issue 14, item 12; docs/mutation.md records the mutation runs these tests were written against.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from httpx import Response
from sqlmodel import col, update
from starlette.testclient import TestClient

from newsletter.app import Newsletter
from newsletter.audience.tokens import (
    RESUBSCRIBE_MINUTES,
    confirm_url,
    resubscribe_token,
    unsubscribe_url,
    verify_confirm_token,
    verify_unsubscribe_token,
)
from newsletter.cli import app as cli_app
from newsletter.config import Smtp, load_settings
from newsletter.models import Bounce
from newsletter.send.message import Envelope
from newsletter.send.smtp import SmtpTransport
from newsletter.web.app import create_app
from tests.conftest import Project, SmtpServer
from tests.test_bounces import send_with_verp, verp_dsn
from tests.test_consent import subscriber_id
from tests.test_hostile_bounces import returned
from tests.test_web import ONE_CLICK

BOUNCE_DOMAIN = "bounces.signaldesk.example"


@contextmanager
def web(project: Project) -> Iterator[TestClient]:
    """The web side of the project, as `newsletter serve` runs it, over the ASGI client."""
    with TestClient(create_app(Newsletter(load_settings(project.config_path)))) as client:
        yield client


def statuses(newsletter: Newsletter) -> dict[str, int]:
    """The list's readers by status, as `newsletter lists` counts them."""
    return newsletter.reports.lists()[0].counts


def double_opt_in(project: Project) -> None:
    data = project.config()
    data["lists"][0]["double_opt_in"] = True
    project.write_config(data)


def token_of(path: str) -> str:
    return path.rsplit("/", 1)[1]


# -- tokens.py, SigningKey._signature: the purpose is part of what is signed -------------------


def test_an_unsubscribe_token_in_a_return_path_forges_no_bounce(
    smtp_project: Project, smtp_server: SmtpServer, tmp_path: Path
) -> None:
    """A reader's unsubscribe link is in every copy of the mail (and in forwards of it); were it
    also a valid VERP token, a made-up bounce to bounces+<it>@ would suppress the reader."""
    return_path = send_with_verp(smtp_project, smtp_server)
    to_alan = next(r for r in smtp_server.received if r.recipients == ["alan@example.com"])
    link = str(to_alan.message["List-Unsubscribe"]).strip("<>").split(">")[0]
    forged = f"bounces+{token_of(urlsplit(link).path)}@{BOUNCE_DOMAIN}"
    box = returned(
        tmp_path / "returns", verp_dsn(forged, "alan@example.com", "5.1.1", "User unknown")
    )
    with Newsletter(load_settings(smtp_project.config_path)) as newsletter:
        report = newsletter.bounces.process(box)
        assert (report.hard, report.suppressed, len(report.unrecognized)) == (0, 0, 1)
        assert statuses(newsletter) == {"active": 6}
        # ... and the return path, which every mail server on the way sees, unsubscribes nobody.
        with web(smtp_project) as client:
            verp_token = return_path["alan@example.com"].split("@")[0].removeprefix("bounces+")
            refused = client.post(f"/unsubscribe/{verp_token}", **ONE_CLICK)
            assert refused.status_code == 400
        assert statuses(newsletter) == {"active": 6}


def test_the_undo_token_of_an_unsubscribe_confirms_nothing(project: Project) -> None:
    """The undo token has the shape of a confirmation token (list, reader, a number): only the
    purpose in its signature tells them apart."""
    double_opt_in(project)
    with Newsletter(load_settings(project.config_path)) as newsletter, web(project) as client:
        newsletter.subscribers.add("new@example.com", "weekly", origin="cli", consent="test")
        reader = subscriber_id(newsletter, "new@example.com")
        undo = resubscribe_token(newsletter.signing_key(), 1, reader)
        refused = client.post(f"/confirm/{undo}")
        assert refused.status_code == 400
        assert "This link is not valid" in refused.text
        assert statuses(newsletter) == {"pending": 1}


# -- tokens.py: every link verifies, and links mailed before keep working ----------------------


def test_every_readers_links_verify_whatever_the_length_of_their_ids(
    newsletter: Newsletter,
) -> None:
    """Tokens are base64 without padding: every length of payload must come back."""
    settings, key = newsletter.settings, newsletter.signing_key()
    ids = [*range(1, 70), *(10**n for n in range(2, 12)), *(10**n - 1 for n in range(2, 12))]
    for list_id in (1, 12, 345):
        for reader in ids:
            unsubscribe = token_of(unsubscribe_url(settings, key, list_id, reader))
            assert verify_unsubscribe_token(key, unsubscribe) == (list_id, reader)
            confirm = token_of(confirm_url(settings, key, list_id, reader))
            assert verify_confirm_token(settings, key, confirm) == (list_id, reader)


# What every release so far signed for (list 1, reader 1) with the key of tests/conftest.py.
MAILED_BEFORE = "MS4x.35959ILjGjQOHU7msOAkmQ"


def test_an_unsubscribe_link_mailed_before_an_upgrade_still_unsubscribes(project: Project) -> None:
    with Newsletter(load_settings(project.config_path)) as newsletter, web(project) as client:
        newsletter.subscribers.add("ada@example.com", "weekly", origin="cli", consent="test")
        assert subscriber_id(newsletter, "ada@example.com") == 1
        done = client.post(f"/unsubscribe/{MAILED_BEFORE}", **ONE_CLICK)
        assert done.status_code == 200
        assert statuses(newsletter) == {"unsubscribed": 1}


def test_the_cli_says_why_it_refuses_a_confirmation_link(project: Project) -> None:
    double_opt_in(project)
    project.cli("subscribers", "add", "new@example.com", "--list", "weekly")
    with Newsletter(load_settings(project.config_path)) as newsletter:
        settings, key = newsletter.settings, newsletter.signing_key()
        good = confirm_url(settings, key, 1, subscriber_id(newsletter, "new@example.com"))
        days = settings.security.confirm_link_days
        expired = key.sign("confirm", 1, 1, int(time.time() // 86400) - days - 1)
    payload, signature = token_of(good).split(".")
    refusals = {
        f"{good.rsplit('/', 1)[0]}/{payload}.{signature[::-1]}": "this link is not valid",
        f"{good.rsplit('/', 1)[0]}/{payload}": "this link is not valid",
        f"https://signaldesk.example/confirm/{expired}": "this confirmation link has expired",
    }
    for link, reason in refusals.items():
        refused = project.cli("subscribers", "confirm", link, expect=1)
        assert f"error: {reason}" in refused.output
    assert "pending 1" in project.cli("lists").output


# -- tokens.py, signing_key: which key signs, and keys too short to trust ----------------------


def test_init_names_the_key_from_the_environment_and_refuses_a_short_one(
    project: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NEWSLETTER_SECRET_KEY", "k" * 15)
    short = " ".join(project.cli("init", expect=1).output.split())
    assert (
        "error: NEWSLETTER_SECRET_KEY is too short use at least 32 random characters, e.g. "
        "`python -c 'import secrets; print(secrets.token_urlsafe(32))'`"
    ) in short
    monkeypatch.setenv("NEWSLETTER_SECRET_KEY", "k" * 16)
    assert "Link-signing key: from NEWSLETTER_SECRET_KEY." in project.cli("init").output
    assert not (project.folder / "newsletter.secret").exists()


def test_init_names_the_development_key_and_refuses_a_short_one(
    project: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("NEWSLETTER_SECRET_KEY")
    key_file = project.folder / "newsletter.secret"
    key_file.write_text("k" * 15 + "\n")
    short = " ".join(project.cli("init", expect=1).output.split())
    assert f"error: {key_file} holds no usable key" in short
    assert (
        "delete it to have a new one made (links in mail already sent stop working), or set "
        "NEWSLETTER_SECRET_KEY" in short
    )
    key_file.write_text("k" * 16 + "\n")
    named = " ".join(project.cli("init").output.split())
    assert f"Link-signing key: a development key in {key_file}." in named
    project.update("security", allow_development_key=False)
    project.cli("fetch")
    project.cli("subscribers", "import", "subscribers/weekly.csv", "--list", "weekly")
    refused = " ".join(project.cli("send", "--list", "weekly", "--yes", expect=1).output.split())
    assert "set [security] allow_development_key = true in config.toml" in refused


def test_an_undo_link_older_than_a_day_changes_nothing(project: Project) -> None:
    with Newsletter(load_settings(project.config_path)) as newsletter, web(project) as client:
        newsletter.subscribers.add("ada@example.com", "weekly", origin="cli", consent="test")
        reader = subscriber_id(newsletter, "ada@example.com")
        key = newsletter.signing_key()
        link = urlsplit(unsubscribe_url(newsletter.settings, key, 1, reader)).path
        assert client.post(link, **ONE_CLICK).status_code == 200
        two_days_ago = int(time.time() // 60) - 2 * RESUBSCRIBE_MINUTES
        stale = client.post(f"/resubscribe/{key.sign('resubscribe', 1, reader, two_days_ago)}")
        assert stale.status_code == 400
        assert statuses(newsletter) == {"unsubscribed": 1}


# -- tokens.py, verify_confirm_token: confirmation links expire after confirm_link_days --------


def test_an_expired_confirmation_link_gets_the_400_page_and_a_fresh_one_confirms(
    project: Project,
) -> None:
    double_opt_in(project)
    days = project.config()["security"]["confirm_link_days"]
    with Newsletter(load_settings(project.config_path)) as newsletter, web(project) as client:
        newsletter.subscribers.add("new@example.com", "weekly", origin="cli", consent="test")
        reader = subscriber_id(newsletter, "new@example.com")
        key, today = newsletter.signing_key(), int(time.time() // 86400)
        # The links a confirmation mail carried days + 1 and days days ago.
        expired = key.sign("confirm", 1, reader, today - days - 1)
        last_day = key.sign("confirm", 1, reader, today - days)
        for method in (client.get, client.post):
            page = method(f"/confirm/{expired}")
            assert page.status_code == 400
            assert "This link is not valid" in page.text
        assert statuses(newsletter) == {"pending": 1}
        assert "Confirm my subscription" in client.get(f"/confirm/{last_day}").text
        confirmed = client.post(f"/confirm/{last_day}")
        assert confirmed.status_code == 200
        assert "You are subscribed to The Weekly Briefing." in confirmed.text
        assert statuses(newsletter) == {"active": 1}


# -- web: well-signed links that name nobody of ours -------------------------------------------


@dataclass(frozen=True)
class Followed:
    answers: list[Response]  # unsubscribe page, one-click unsubscribe, confirm, resubscribe
    counts: dict[str, int]  # the list's readers by status afterwards


def follow_well_signed_links(project: Project, list_id: int, reader_offset: int) -> Followed:
    """Ada is on the weekly list; follow every kind of link the web side takes, each signed
    with our key for (list_id, Ada's id + reader_offset)."""
    with Newsletter(load_settings(project.config_path)) as newsletter:
        newsletter.subscribers.add("ada@example.com", "weekly", origin="cli", consent="test")
        reader = subscriber_id(newsletter, "ada@example.com") + reader_offset
        settings, key = newsletter.settings, newsletter.signing_key()
        unsubscribe = urlsplit(unsubscribe_url(settings, key, list_id, reader)).path
        web_side = create_app(Newsletter(load_settings(project.config_path)))
        with TestClient(web_side, raise_server_exceptions=False) as client:
            answers = [
                client.get(unsubscribe),
                client.post(unsubscribe, **ONE_CLICK),
                client.get(urlsplit(confirm_url(settings, key, list_id, reader)).path),
                client.post(f"/resubscribe/{resubscribe_token(key, list_id, reader)}"),
            ]
        return Followed(answers, statuses(newsletter))


def test_well_signed_links_for_a_list_we_do_not_have_get_the_400_page(project: Project) -> None:
    followed = follow_well_signed_links(project, list_id=99, reader_offset=0)
    assert [answer.status_code for answer in followed.answers] == [400] * 4
    assert all("This link is not valid" in answer.text for answer in followed.answers)
    assert followed.counts == {"active": 1}


def test_well_signed_links_for_a_reader_we_do_not_have_break_nothing(project: Project) -> None:
    """Never a 500, and nobody's subscription changes."""
    followed = follow_well_signed_links(project, list_id=1, reader_offset=1000)
    assert all(answer.status_code < 500 for answer in followed.answers), followed.answers
    assert followed.counts == {"active": 1}


def test_well_signed_links_for_a_reader_we_do_not_have_say_nothing_is_stored(
    project: Project,
) -> None:
    """Only a forget removes a reader, and ids are never reused: their unsubscribe link says
    so (a 200, which is also the truth for a one-click unsubscribe); a confirmation link for
    nobody is not valid."""
    followed = follow_well_signed_links(project, list_id=1, reader_offset=1000)
    # The undo link is the exception: "Nothing to change" is true for anyone.
    assert [answer.status_code for answer in followed.answers[:3]] == [200, 200, 400]
    for answer in followed.answers[:2]:
        assert "Nothing is stored about this address" in answer.text


# -- digest/builder.py, candidate_briefings: never further back than window_days ---------------


@dataclass(frozen=True)
class Item:
    title: str
    published: datetime
    link: str | None = ""  # "": a link made from the title; None: the item has none
    guid: str = ""  # "": made from the title


def dated_feed(project: Project, *items: Item) -> None:
    """The project's feed holds only these items (and has no link of its own to lend them)."""

    def entry(item: Item) -> str:
        slug = item.title.replace(" ", "-")
        link = f"https://news.example/{slug}" if item.link == "" else item.link
        return (
            f"<item><title>{item.title}</title><guid>{item.guid or slug}</guid>"
            + (f"<link>{link}</link>" if link else "")
            + f"<pubDate>{format_datetime(item.published, usegmt=True)}</pubDate></item>"
        )

    (project.folder / "samples" / "briefings.xml").write_text(
        '<?xml version="1.0" encoding="UTF-8"?><rss version="2.0"><channel><title>Dated</title>'
        + "".join(entry(item) for item in items)
        + "</channel></rss>"
    )


def next_digest(project: Project, later: timedelta = timedelta(0)) -> list[str] | None:
    """Fetch, then send the next digest as of `later` from now: what it mails, newest first
    (None: nothing new). One reader is on the list."""
    settings = load_settings(project.config_path)
    with Newsletter(settings) as newsletter:
        newsletter.feeds.fetch()
        newsletter.subscribers.add("ada@example.com", "weekly", origin="cli", consent="test")
    now = datetime.now(UTC) + later  # after the fetch: whatever it saw is older
    with Newsletter(settings, clock=lambda: now) as newsletter:
        draft = newsletter.digests.draft("weekly")
        if draft is None:
            return None
        assert newsletter.sending.send("weekly").summary.sent == 1
    return [briefing.title for briefing in draft.view.briefings]


def test_the_first_digest_looks_back_window_days_and_no_further(project: Project) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    days = project.config()["digest"]["window_days"]
    dated_feed(
        project,
        Item("Orchard festival", now - timedelta(days=days, seconds=1)),  # just outside
        Item("Museum reopens", now - timedelta(days=days) + timedelta(seconds=1)),
        Item("Choir tour begins", now - timedelta(hours=1)),
    )
    with Newsletter(load_settings(project.config_path), clock=lambda: now) as newsletter:
        newsletter.feeds.fetch()  # every item is first seen now: only its date can keep it out
        draft = newsletter.digests.draft("weekly")
    assert draft is not None
    assert [b.title for b in draft.view.briefings] == ["Choir tour begins", "Museum reopens"]
    assert draft.view.lead.published_at == now - timedelta(hours=1)  # templates may show it
    assert draft.view.window_start == now - timedelta(days=days)


def test_a_wider_window_days_brings_back_nothing_older_than_the_last_digest(
    project: Project,
) -> None:
    now = datetime.now(UTC)
    project.update("digest", window_days=1)
    old, fresh = Item("Orchard festival", now - timedelta(days=3)), Item("Museum reopens", now)
    dated_feed(project, old, fresh)
    assert next_digest(project) == ["Museum reopens"]
    # Seen after the first digest, but too old for the second one.
    late, fresher = Item("Choir tour begins", now - timedelta(days=3)), Item("Rain ends", now)
    dated_feed(project, old, fresh, late, fresher)
    assert next_digest(project, later=timedelta(hours=1)) == ["Rain ends"]
    project.update("digest", window_days=7)  # the editor widens the window afterwards
    dated_feed(project, old, fresh, late, fresher, Item("Quarry closes", now + timedelta(hours=2)))
    assert next_digest(project, later=timedelta(hours=3)) == ["Quarry closes"]


def test_a_briefing_mailed_once_is_not_mailed_again_when_its_date_moves_later(
    project: Project,
) -> None:
    """Without a link, so that only its being in the last digest keeps it out."""
    now = datetime.now(UTC)
    dated_feed(project, Item("Town notice", now - timedelta(hours=1), link=None, guid="n1"))
    assert next_digest(project) == ["Town notice"]
    # The feed edits it, with a later date: the same briefing, changed, is no news.
    dated_feed(project, Item("Town notice, corrected", now + timedelta(hours=1), None, "n1"))
    assert next_digest(project, later=timedelta(hours=2)) is None


def test_the_same_link_under_a_new_guid_is_no_news_and_briefings_without_links_are(
    project: Project,
) -> None:
    now = datetime.now(UTC)
    first = [Item("Orchard festival", now), Item("Town notice", now, link=None)]
    dated_feed(project, *first)
    assert next_digest(project) == ["Orchard festival", "Town notice"]
    again = Item("Orchard festival, updated", now, link="https://news.example/Orchard-festival")
    dated_feed(project, *first, again, Item("Second notice", now, link=None))
    assert next_digest(project, later=timedelta(hours=1)) == ["Second notice"]


def test_each_list_has_its_own_digests(project: Project) -> None:
    """A story mailed to one list is still news to another, and a send one list left unfinished
    is resumed for that list only."""
    data = project.config()
    data["lists"].append({"slug": "alerts", "name": "Alerts"})
    project.write_config(data)
    dated_feed(project, Item("Orchard festival", datetime.now(UTC) - timedelta(hours=1)))
    with Newsletter(load_settings(project.config_path)) as newsletter:
        newsletter.feeds.fetch()
        for slug in ("weekly", "alerts"):
            newsletter.subscribers.add("ada@example.com", slug, origin="cli", consent="test")
        stopped = threading.Event()
        stopped.set()  # Ctrl-C before the first message: the weekly digest stays pending
        assert newsletter.sending.send("weekly", stop=stopped).summary.stopped_early
        alerts = newsletter.digests.draft("alerts")
        assert alerts is not None
        assert alerts.view.list_name == "Alerts"
        assert [b.title for b in alerts.view.briefings] == ["Orchard festival"]
        resumed = newsletter.sending.send("weekly")
        assert (resumed.resumed, resumed.summary.sent) == (True, 1)
        assert newsletter.sending.send("alerts").summary.sent == 1


def test_a_briefing_dated_in_the_future_waits_for_its_date(project: Project) -> None:
    now = datetime.now(UTC)
    dated_feed(
        project,
        Item("Orchard festival", now - timedelta(hours=1)),
        Item("Museum reopens", now + timedelta(days=1)),
    )
    assert next_digest(project) == ["Orchard festival"]
    assert next_digest(project, later=timedelta(days=2)) == ["Museum reopens"]


def test_subject_and_preheader_fill_every_placeholder(project: Project) -> None:
    project.update(
        "digest",
        subject="{count}|{more}|{and_more}|{themes}|{date}|{publication}",
        preheader="Top: {lead}",
    )
    now = datetime.now(UTC)
    dated_feed(
        project,
        Item("Solar farm approved", now - timedelta(hours=2)),  # Energy
        Item("Ransomware hits a school", now - timedelta(hours=1)),  # Security, shown first
    )
    settings = load_settings(project.config_path)
    fallback, name = settings.digest.fallback_theme, settings.publication.name
    with Newsletter(settings, clock=lambda: now) as newsletter:
        newsletter.feeds.fetch()
        draft = newsletter.digests.draft("weekly")
        assert draft is not None
        date = f"{now.day} {now:%B %Y}"
        assert draft.view.subject == f"2|1| and 1 more|Security, Energy|{date}|{name}"
        assert draft.view.preheader == "Top: Ransomware hits a school"
        assert "Top: Ransomware hits a school" in draft.rendered.html
    assert next_digest(project) is not None  # both go out; then one more comes in
    dated_feed(project, Item("Choir tour begins", now))
    with Newsletter(settings, clock=lambda: now + timedelta(hours=1)) as newsletter:
        newsletter.feeds.fetch()
        alone = newsletter.digests.draft("weekly")
    assert alone is not None
    later = now + timedelta(hours=1)  # another day, an hour before midnight
    assert alone.view.subject == f"1|0||{fallback}|{later.day} {later:%B %Y}|{name}"


def test_a_placeholder_the_subject_cannot_have_is_one_error_line(project: Project) -> None:
    project.update("digest", subject="{publication}: {lead:d}")  # a number format for text
    project.cli("fetch")
    project.cli("subscribers", "import", "subscribers/weekly.csv", "--list", "weekly")
    refused = " ".join(project.cli("send", "--list", "weekly", "--yes", expect=2).output.split())
    assert (
        f"error: {project.config_path}: [digest] subject: cannot fill "
        "'{publication}: {lead:d}': Unknown format code 'd' for object of type 'str' use only "
        "{publication}, {lead}, {count}, {more}, {and_more}, {themes}, {date}"
    ) in refused
    assert project.outbox() == []


def test_the_mail_shows_every_briefing_as_stored_and_links_the_themes_over_the_cap(
    project: Project,
) -> None:
    project.update("digest", max_briefings=3)  # whole themes are left for the web edition
    project.cli("fetch")
    project.cli("subscribers", "import", "subscribers/weekly.csv", "--list", "weekly")
    assert "6 sent" in project.cli("send", "--list", "weekly", "--yes").output
    message = project.outbox()[0]
    text = message.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    html = message.get_body(("html",)).get_content()  # type: ignore[union-attr]
    base = "https://signaldesk.example"
    for part in (text, html):
        assert f"{base}/briefings/nordvale-bank-restricts-ai-coding-assistants" in part
        assert "Third-party coding assistants blocked on managed devices next quarter" in part
        assert f"{base}/archive/1#theme-security" in part  # a theme with nothing in the mail
        assert "You receive The Weekly Briefing because" in " ".join(part.split())
    assert "Nordvale Bank will block third-party AI coding assistants" in " ".join(text.split())
    assert "== MORE ON THE WEB ==" in text
    assert "Security: 2 stories" in text  # a theme with nothing in the mail: one line
    assert f'href="{base}/archive/1"' in html  # view in your browser
    assert 'href="#theme-logistics"' not in html  # no heading in the mail with nothing under it
    assert f'href="{base}/archive/1#theme-logistics"' in html  # its line under More on the web
    assert message["Subject"] in " ".join(html.split())
    # The preheader: themes in the mail (then spacing that keeps the body out of the preview).
    assert re.search(
        r'class="preheader"[^>]*>This week: AI &amp; Software(&#8199;&#847; )*</div>', html
    )


# -- send/smtp.py, _dot_stuffed: a dot that is the message's very first byte -------------------


def test_a_message_whose_first_byte_is_a_dot_arrives_intact(smtp_server: SmtpServer) -> None:
    """Pipelined, as to Postfix: our own dot-stuffing, not smtplib's."""
    transport = SmtpTransport(Smtp(host=smtp_server.host, port=smtp_server.port, timeout=10))
    message = b".X-First: a dot starts the message\r\nSubject: dots\r\n\r\nbody\r\n"
    try:
        transport.send(Envelope("a@example.com", "b@example.com"), message)
        assert transport._client is not None
        assert transport._client.has_extn("pipelining")
    finally:
        transport.close()
    assert [r.data for r in smtp_server.received] == [message]


# -- bounces/process.py, _apply: only soft bounces within soft_days count toward soft_limit ----


def test_soft_bounces_older_than_soft_days_do_not_count(
    smtp_project: Project, smtp_server: SmtpServer, tmp_path: Path
) -> None:
    settings = load_settings(smtp_project.config_path)
    limit, days = settings.bounces.soft_limit, settings.bounces.soft_days
    return_path = send_with_verp(smtp_project, smtp_server)
    readers = ("alan@example.com", "linus@example.com")

    def mailbox_full(folder: str, count: int) -> Path:
        return returned(
            tmp_path / folder,
            *(
                verp_dsn(return_path[reader], reader, "4.2.2", f"Mailbox full ({n})")
                for reader in readers
                for n in range(count)
            ),
        )

    with Newsletter(load_settings(smtp_project.config_path)) as newsletter:
        earlier = newsletter.bounces.process(mailbox_full("earlier", limit - 1))
        assert earlier.messages == earlier.soft == 2 * (limit - 1)
        assert earlier.suppressed == 0
        now = datetime.now(UTC)
        ages = {"alan@example.com": days - 1, "linus@example.com": days + 1}
        with newsletter.session() as session:
            for reader, age in ages.items():
                session.exec(
                    update(Bounce)
                    .where(col(Bounce.subscriber_id) == subscriber_id(newsletter, reader))
                    .values(received_at=now - timedelta(days=age))
                )
            session.commit()
        latest = newsletter.bounces.process(mailbox_full("latest", 1))
        assert (latest.messages, latest.soft, latest.suppressed) == (2, 2, 1)
        record = newsletter.subscribers.record
        alan, linus = record("alan@example.com"), record("linus@example.com")
        assert alan is not None
        assert linus is not None
        # Alan's earlier ones are days - 1 old: with today's, soft_limit within soft_days.
        assert alan["subscriber"]["status"] == "bounced"
        assert alan["bounces"][-1]["action"] == (
            f"suppressed: {limit} soft bounces within {days} days"
        )
        # Linus's are days + 1 old: today's is his first that counts.
        assert linus["subscriber"]["status"] == "active"
        assert linus["bounces"][-1]["action"] == f"counted: soft bounce 1 of {limit}"
        # What `subscribers show` tells of it: the digest it was about, the server's words.
        assert linus["bounces"][-1]["digest_id"] == 1
        assert "Mailbox full (0)" in linus["bounces"][-1]["diagnostic"]


# -- cli/sending.py: `newsletter send` without --yes asks first --------------------------------


def test_send_without_yes_asks_and_no_sends_nothing(project: Project) -> None:
    project.cli("fetch")
    project.cli("subscribers", "import", "subscribers/weekly.csv", "--list", "weekly")
    command = ["--config", str(project.config_path), "send", "--list", "weekly"]
    declined = project.runner.invoke(cli_app, command, input="n\n")
    assert "to 6 subscriber(s)" in declined.output
    assert "Send it now?" in declined.output
    assert "Not sent." in declined.output
    assert declined.exit_code == 1
    assert project.outbox() == []
    assert "No digests yet." in project.cli("status").output
    accepted = project.runner.invoke(cli_app, command, input="y\n")
    assert accepted.exit_code == 0, accepted.output
    assert "6 sent, 0 failed, 0 deferred" in accepted.output
    assert len(project.outbox()) == 6


# -- send/smtp.py, SmtpTransport.send: a 4xx refusal of MAIL FROM is "try later" ---------------


def test_a_4xx_refusal_of_the_sender_defers_and_suppresses_nobody(
    smtp_project: Project, smtp_server: SmtpServer
) -> None:
    smtp_project.update("delivery", retry_base_seconds=0.01, max_attempts=2)
    smtp_project.cli("fetch")
    smtp_project.cli("subscribers", "import", "subscribers/weekly.csv", "--list", "weekly")
    smtp_server.handler.mail_from_reply = "451 4.3.0 Temporary local problem, try later"
    output = smtp_project.cli("send", "--list", "weekly", "--yes").output
    assert "0 sent, 0 failed, 6 deferred" in output
    assert smtp_server.received == []
    assert "active 6" in smtp_project.cli("lists").output
    assert "deferred 6" in smtp_project.cli("status").output
    smtp_server.handler.mail_from_reply = None  # the server is well again
    again = smtp_project.cli("send", "--list", "weekly", "--yes").output
    assert "Retried deferred deliveries of digest 1." in again
    assert sorted(r.recipients[0] for r in smtp_server.received) == sorted(
        line.split(",")[0]
        for line in (smtp_project.folder / "subscribers" / "weekly.csv")
        .read_text()
        .splitlines()[1:]
        if line
    )
