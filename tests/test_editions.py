"""Readers' chosen themes reshape the digest: one edition per distinct choice, rendered once,
stored with the digest, sent through a real SMTP server and resumed with the same bytes."""

from __future__ import annotations

import html
import re
import sqlite3
import threading
from collections import Counter
from email.message import EmailMessage
from typing import Any

import markupsafe
import pytest
from sqlmodel import col, select
from starlette.testclient import TestClient

from newsletter.app import Newsletter
from newsletter.config import load_settings
from newsletter.digest.builder import Placed, digest_view
from newsletter.digest.editions import chosen_themes, edition_items, themes_key
from newsletter.digest.view import anchor
from newsletter.models import Briefing, Delivery, Digest, DigestEdition, DigestItem, Subscriber
from newsletter.personalize import Markers
from newsletter.render import templating
from newsletter.send.ledger import NOTHING_IN_THEMES, Outcome, Reader, RetryPolicy
from newsletter.services import sending
from newsletter.services.sending import SendReport, recipient_for
from newsletter.web.app import create_app
from tests.conftest import Project, SmtpServer, many_readers, sqlite_only

FAST_RETRY = RetryPolicy(max_attempts=3, base_delay=0.05, lease_seconds=5)
EVERY_THEME = ["AI & Software", "Security", "Logistics", "Energy", "Policy", "More briefings"]
CHOICES: dict[str, list[str] | None] = {
    "ada@example.com": ["Security"],
    "grace@example.com": ["Energy", "Security"],
    "zoe@example.com": ["Security", "Energy"],  # the same set as grace's, told in another order
    "alan@example.com": ["Astrology"],  # a theme the editor removed since: every theme
    "linus@example.com": ["Policy"],
    "margaret@example.com": EVERY_THEME,  # every theme: the full digest
}


def app_of(project: Project) -> Newsletter:
    return Newsletter(load_settings(project.config_path))


def choose(project: Project, choices: dict[str, list[str] | None]) -> None:
    """What the preference centre will do: store the themes each reader chose."""
    with app_of(project) as app, app.session() as session:
        for email, themes in choices.items():
            subscriber = session.exec(select(Subscriber).where(Subscriber.email == email)).one()
            subscriber.themes = themes
            session.add(subscriber)
        session.commit()


def prepare(project: Project, choices: dict[str, list[str] | None] = CHOICES) -> None:
    project.cli("fetch")
    project.cli("subscribers", "import", "subscribers/weekly.csv", "--list", "weekly")
    choose(project, choices)


def send(project: Project, **options: Any) -> SendReport:
    with app_of(project) as app:
        return app.sending.send("weekly", retry=FAST_RETRY, **options)


def stories(project: Project, digest_id: int = 1) -> dict[str, list[str]]:
    """The titles of a digest's stories (merged duplicates aside) by primary theme, in order."""
    themes: dict[str, list[str]] = {}
    with app_of(project) as app, app.session() as session:
        rows = session.exec(
            select(DigestItem.theme, Briefing.title)
            .join(Briefing, col(Briefing.id) == DigestItem.briefing_id)
            .where(DigestItem.digest_id == digest_id, col(DigestItem.merged_into).is_(None))
            .order_by(col(DigestItem.position))
        ).all()
    for theme, title in rows:
        themes.setdefault(theme, []).append(title)
    return themes


def by_reader(server: SmtpServer) -> dict[str, EmailMessage]:
    messages = {received.recipients[0]: received.message for received in server.received}
    assert len(messages) == len(server.received), "someone was mailed twice"
    return messages


def parts(message: EmailMessage) -> tuple[str, str]:
    html_part, text_part = message.get_body(("html",)), message.get_body(("plain",))
    assert html_part is not None
    assert text_part is not None
    return str(html_part.get_content()), str(text_part.get_content())


def subject(message: EmailMessage) -> str:
    return " ".join(str(message["Subject"]).split())  # unfolded


def in_html(title: str, body: str) -> bool:
    return str(markupsafe.escape(title)) in body


def in_text(title: str, body: str) -> bool:
    return " ".join(title.split()) in " ".join(body.split())  # the text part wraps titles


def text_sections(text: str) -> dict[str, str]:
    """The text part's sections after the top story: heading -> what stands under it."""
    text = text.replace("\r\n", "\n").split("\n-- \n")[0]
    pieces = re.split(r"^== (.+) ==$", text, flags=re.MULTILINE)
    return dict(zip(pieces[1::2], pieces[2::2], strict=True))


def assert_edition(message: EmailMessage, themes: list[str], titles: dict[str, list[str]]) -> None:
    """Exactly the stories of `themes`, led by the first of the first, no empty section."""
    body, text = parts(message)
    for theme, theme_titles in titles.items():
        for title in theme_titles:
            chosen = theme in themes
            assert in_html(title, body) is chosen, (theme, title)
            assert in_text(title, text) is chosen, (theme, title)
    first = next(titles[theme][0] for theme in EVERY_THEME if theme in themes and theme in titles)
    assert first[:40] in subject(message)
    sections = text_sections(text)
    assert next(iter(sections)) == f"TOP STORY · {titles_theme(first, titles).upper()}"
    for heading, under in list(sections.items())[1:]:
        theme = next(name for name in themes if name.upper() == heading)
        assert any(in_text(title, under) for title in titles[theme]), heading  # never empty
    anchors = set(re.findall(r'(?:id="|href="#)(theme-[a-z0-9-]+)"', body))  # contents too
    assert anchors <= {anchor(theme) for theme in themes}


def titles_theme(title: str, titles: dict[str, list[str]]) -> str:
    return next(theme for theme, names in titles.items() if title in names)


def count_renders(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every rendering of a digest or edition, by its subject."""
    seen: list[str] = []
    real = templating.fill_templates

    def counting(view: Any, *args: Any, **kwargs: Any) -> tuple[str, str]:
        seen.append(view.subject)
        return real(view, *args, **kwargs)

    monkeypatch.setattr(templating, "fill_templates", counting)
    return seen


def test_each_reader_gets_only_their_themes_rendered_once_per_distinct_set(
    smtp_project: Project, smtp_server: SmtpServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    prepare(smtp_project)
    renders = count_renders(monkeypatch)
    report = send(smtp_project)
    assert report.summary.sent == 6
    assert report.skipped_themes == 0
    # The full digest, then {Security}, {Energy, Security} and {Policy}: not one per reader.
    assert len(renders) == 4
    titles = stories(smtp_project)
    messages = by_reader(smtp_server)
    assert_edition(messages["ada@example.com"], ["Security"], titles)
    assert "Ransomware attack knocks out billing" in subject(messages["ada@example.com"])
    for same_set in ("grace@example.com", "zoe@example.com"):
        assert_edition(messages[same_set], ["Security", "Energy"], titles)
    assert_edition(messages["linus@example.com"], ["Policy"], titles)
    assert "Chips & tariffs" in subject(messages["linus@example.com"])
    for full in ("alan@example.com", "margaret@example.com"):
        assert_edition(messages[full], EVERY_THEME, titles)
        assert "Nordvale Bank" in subject(messages[full])
    contents = parts(messages["grace@example.com"])[1]
    assert "In this issue: the top story, Security (1), Energy (2)" in " ".join(contents.split())

    with app_of(smtp_project) as app, app.session() as session:
        editions = {e.id: e for e in session.exec(select(DigestEdition))}
        keys = sorted(e.themes_key for e in editions.values())
        assert keys == ["Energy\nSecurity", "Policy", "Security"]
        query = select(Subscriber.email, Delivery.edition_id).join(
            Delivery, col(Delivery.subscriber_id) == Subscriber.id
        )
        ledger: dict[str, int | None] = dict(session.exec(query).all())
    themes_of = {email: editions[e].themes if e else None for email, e in ledger.items()}
    assert themes_of == {
        "ada@example.com": ["Security"],
        "grace@example.com": ["Security", "Energy"],
        "zoe@example.com": ["Security", "Energy"],
        "alan@example.com": None,
        "linus@example.com": ["Policy"],
        "margaret@example.com": None,
    }
    for email, edition_id in ledger.items():
        if edition_id is not None:
            assert subject(messages[email]) == editions[edition_id].subject

    status = smtp_project.cli("status").output
    assert "4 editions, by the themes readers chose:" in status
    assert "      every theme: 14 briefing(s) · sent 2" in status
    assert "      Security, Energy: 4 briefing(s), “SignalDesk Weekly: Ransomware" in status
    assert "      Policy: 2 briefing(s), “SignalDesk Weekly: Chips & tariffs" in status
    assert re.search(r"      Security: 2 briefing\(s\), “.*” · sent 1\n", status)

    # The web archive stays the full edition, whatever the readers chose.
    with TestClient(create_app(app_of(smtp_project))) as client:
        archive = client.get("/archive/1").text
    assert all(in_html(title, archive) for names in titles.values() for title in names)


def test_a_reader_whose_themes_have_nothing_new_is_not_mailed_and_counted_skipped(
    smtp_project: Project, smtp_server: SmtpServer
) -> None:
    data = smtp_project.config()
    data["themes"].append({"name": "Space", "tags": ["space"], "keywords": ["orbit"]})
    smtp_project.write_config(data)
    prepare(smtp_project, {"ada@example.com": ["Space"], "grace@example.com": ["Space", "Energy"]})
    output = smtp_project.cli("send", "--list", "weekly", "--yes").output
    assert "5 sent, 0 failed, 0 deferred; skipped: 1, nothing in their themes." in output
    assert "ada@example.com" not in {r for m in smtp_server.received for r in m.recipients}
    assert_edition(by_reader(smtp_server)["grace@example.com"], ["Energy"], stories(smtp_project))
    with app_of(smtp_project) as app, app.session() as session:
        ada = session.exec(
            select(Delivery)
            .join(Subscriber, col(Subscriber.id) == Delivery.subscriber_id)
            .where(Subscriber.email == "ada@example.com")
        ).one()
        edition = session.get(DigestEdition, ada.edition_id)
        digest = session.get(Digest, 1)
    assert (ada.status, ada.last_reply) == ("skipped", NOTHING_IN_THEMES)
    assert edition is not None
    assert (edition.themes, edition.briefings) == (["Space"], 0)
    assert digest is not None
    assert digest.status == "sent"
    status = smtp_project.cli("status").output
    assert "sent 5 · deferred 0 · failed 0 · skipped 1" in status
    assert "      Space: 0 briefing(s) · skipped 1" in status
    # Nothing in Space, but Energy has news: grace gets those, under her own subject.
    assert "      Energy, Space: 2 briefing(s), “SignalDesk Weekly: Offshore wind" in status


@pytest.mark.parametrize(
    ("guid", "title"),
    [
        ("signaldesk-briefing-chips-and-tariffs-levy-delayed", "Chips & tariffs"),
        # The story that leads anyway: pinned, it still reaches readers of other themes.
        ("signaldesk-briefing-nordvale-bank-restricts-ai-coding-assistants", "Nordvale Bank"),
    ],
)
def test_the_editors_pin_leads_every_edition(
    smtp_project: Project, smtp_server: SmtpServer, guid: str, title: str
) -> None:
    prepare(smtp_project, {"ada@example.com": ["Security"], "grace@example.com": ["Energy"]})
    smtp_project.cli("digest", "pin", guid, "--list", "weekly")
    send(smtp_project)
    titles = stories(smtp_project)
    pinned = next(name for names in titles.values() for name in names if name.startswith(title))
    theme = titles_theme(pinned, titles)
    for email, message in by_reader(smtp_server).items():
        assert title in subject(message), email
        body, text = parts(message)
        assert next(iter(text_sections(text))) == f"TOP STORY · {theme.upper()}"
        assert in_html(pinned, body)
    ada_html, ada_text = parts(by_reader(smtp_server)["ada@example.com"])
    assert all(in_text(story, ada_text) for story in titles["Security"])
    others = [story for story in titles[theme] if story != pinned]
    assert not any(in_html(story, ada_html) for story in others)  # only the pin of its theme
    assert f"== {theme.upper()} ==" not in ada_text


def test_a_stopped_send_resumes_with_the_stored_bytes_of_each_edition(
    smtp_project: Project, smtp_server: SmtpServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    many_readers(smtp_project, smtp_server, readers=40, concurrency=3, lease=5)
    sets: list[list[str] | None] = [None, ["Security"], ["Energy", "Policy"], ["Logistics"]]
    choose(smtp_project, {f"reader{n:03}@example.com": sets[n % 4] for n in range(40)})
    stop, sent = threading.Event(), Counter[str]()

    def progress(outcome: Outcome) -> None:
        sent[outcome] += 1
        if sent["sent"] >= 12:
            stop.set()

    first = send(smtp_project, stop=stop, progress=progress)
    assert first.summary.stopped_early
    stopped_at = len(smtp_server.received)
    assert stopped_at < 40
    # What would render differently now: a new subject template and a changed text template.
    smtp_project.update("digest", subject="Changed: {lead}")
    bundled = (templating.TEMPLATES / templating.TEXT_TEMPLATE).read_text()
    (smtp_project.folder / "templates").mkdir()
    (smtp_project.folder / "templates" / templating.TEXT_TEMPLATE).write_text("CHANGED\n" + bundled)
    renders = count_renders(monkeypatch)
    second = send(smtp_project)
    assert second.resumed
    assert renders == []
    assert first.summary.sent + second.summary.sent == 40
    messages = by_reader(smtp_server)
    assert len(messages) == 40

    with app_of(smtp_project) as app, app.session() as session:
        digest = session.get(Digest, 1)
        assert digest is not None
        key = app.signing_key(for_mail=True)
        rows = session.exec(
            select(Subscriber, Delivery).join(
                Delivery, col(Delivery.subscriber_id) == Subscriber.id
            )
        ).all()
        stored = {e.id: e for e in session.exec(select(DigestEdition))}
        settings = app.settings
        rendered_now = templating.render_digest(digest_view(session, digest), settings)
    assert rendered_now.text.startswith("CHANGED")  # so a render would have shown
    markers = Markers(digest.nonce)
    for subscriber, delivery in rows:
        assert subscriber.id is not None
        edition = stored[delivery.edition_id] if delivery.edition_id else digest
        themes = sets[int(subscriber.email[6:9]) % 4]
        assert (delivery.edition_id is None) is (themes is None)
        recipient = recipient_for(
            settings, key, digest.list_id, Reader(subscriber.id, subscriber.email, subscriber.name)
        )
        message = messages[subscriber.email]
        body, text = parts(message)
        assert subject(message) == edition.subject
        assert not edition.subject.startswith("Changed")
        assert same(text, markers.fill(edition.text, recipient))
        assert same(body, markers.fill(edition.html, recipient, escape))
        assert "CHANGED" not in text


def escape(value: str) -> str:
    return html.escape(value, quote=True)


def same(received: str, stored: str) -> bool:
    return received.replace("\r\n", "\n").rstrip("\n") == stored.rstrip("\n")


def test_a_retried_deferral_gets_its_stored_edition_and_an_empty_one_is_skipped(
    smtp_project: Project, smtp_server: SmtpServer
) -> None:
    prepare(smtp_project, {"ada@example.com": ["Security"]})
    smtp_server.handler.replies["ada@example.com"] = ["451 4.3.0 Try again later"]
    first = send(smtp_project)
    assert (first.summary.sent, first.summary.deferred) == (5, 1)
    with app_of(smtp_project) as app, app.session() as session:
        security = session.exec(select(DigestEdition)).one()
    smtp_server.handler.replies.clear()
    smtp_server.handler.received.clear()
    smtp_project.add_briefing("late", "Late news from the library")  # no theme: More briefings
    second = send(smtp_project)
    assert second.retried_digests == [1]
    assert second.digest_id == 2
    assert second.skipped_themes == 1  # ada: nothing new in Security in digest 2
    ada = [m for m in smtp_server.received if m.recipients == ["ada@example.com"]]
    assert len(ada) == 1
    assert subject(ada[0].message) == security.subject
    assert "Late news" not in parts(ada[0].message)[1]


def test_preview_shows_the_edition_of_some_themes(project: Project) -> None:
    project.cli("fetch")
    output = project.cli("preview", "--list", "weekly", "--themes", "Security, Policy").output
    assert "Edition for readers of Security, Policy: “SignalDesk Weekly: Ransomware" in output
    assert "4 stories: preview/digest.html" in output
    text = (project.folder / "preview" / "digest.txt").read_text()
    assert in_text("Regulators cap cloud switching fees", text)
    assert not in_text("Offshore wind auction", text)
    every = project.cli("preview", "--list", "weekly", "--themes", ",".join(EVERY_THEME))
    assert "Those are every theme: the full digest" in every.output
    unknown = project.cli("preview", "--list", "weekly", "--themes", "Astrology", expect=1)
    assert "no theme 'Astrology' in config.toml" in unknown.output


def test_a_readers_choice_is_normalised_and_never_becomes_nothing() -> None:
    names = EVERY_THEME
    assert chosen_themes(None, names) is None
    assert chosen_themes(["Policy", "Security"], names) == ("Security", "Policy")
    assert chosen_themes(["Policy", "Astrology"], names) == ("Policy",)
    assert chosen_themes(["Astrology"], names) is None  # renamed away: every theme, not nothing
    assert chosen_themes([], names) is None
    assert chosen_themes(list(reversed(names)), names) is None
    assert themes_key(("Security", "Policy")) == "Policy\nSecurity"


def test_merged_stories_follow_theirs_and_the_caps_count_again() -> None:
    from datetime import UTC, datetime

    def placed(id_: int, theme: str, *, lead: bool = False, merged: int | None = None) -> Placed:
        when = datetime(2026, 12, 1, tzinfo=UTC)
        briefing = Briefing(
            id=id_, feed_id=1, guid=str(id_), url="", title=f"t{id_}", source_name="s",
            source_url="", content_hash="", published_at=when,
        )  # fmt: skip
        return Placed(briefing, theme, lead, not lead and id_ > 5, merged)

    items = [placed(1, "A", lead=True), placed(2, "A"), placed(3, "B"), placed(4, "B")]
    items += [placed(6, "B"), placed(7, "B", merged=3), placed(8, "A", merged=2)]
    shown = edition_items(items, ["B"], pinned=False, max_per_theme=1, max_briefings=30)
    # 6 is over max_per_theme in this edition; 7 goes with 3, the story it merged into
    expected = [(3, True, True), (4, False, True), (6, False, False), (7, False, True)]
    assert [(i.id, i.lead, i.in_email) for i in shown] == expected
    pinned = edition_items(items, ["B"], pinned=True, max_per_theme=5, max_briefings=2)
    # the pin leads an edition without its theme; 4 is over max_briefings in this edition
    expected = [(1, True, True), (3, False, True), (4, False, False)]
    assert [(i.id, i.lead, i.in_email) for i in pinned][:3] == expected
    assert edition_items(items, ["C"], pinned=False, max_per_theme=5, max_briefings=30) == []


@sqlite_only
def test_a_send_compiles_and_reads_the_choices_before_it_takes_the_write_lock(
    smtp_project: Project, smtp_server: SmtpServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """From its build to its queued audience a send holds SQLite's one write lock, and a
    reader's unsubscribe waits for it: the slow first compile of the templates and the grouped
    read of the readers' choices come before, while another writer still gets in at once."""
    prepare(smtp_project)
    writers_got_in: list[bool] = []
    real = sending.compile_templates

    def compile_and_try_a_write(settings: Any) -> None:
        real(settings)
        other = sqlite3.connect(smtp_project.folder / "newsletter.db", timeout=0)
        try:
            other.execute("BEGIN IMMEDIATE")
            other.rollback()
            writers_got_in.append(True)
        except sqlite3.OperationalError:  # database is locked
            writers_got_in.append(False)
        finally:
            other.close()

    monkeypatch.setattr(sending, "compile_templates", compile_and_try_a_write)
    report = send(smtp_project)
    assert report.summary.sent == 6
    assert writers_got_in == [True]
