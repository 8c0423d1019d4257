"""The preference centre, in process: themes, lists, name, leave everything, my data, delete me;
CSRF and cross-site refusals; and the `themes` column of imports and exports."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest
from sqlmodel import select
from starlette.testclient import TestClient

from newsletter.app import Newsletter
from newsletter.config import load_settings
from newsletter.models import ConsentEvent, Subscriber, Subscription, SubscriptionStatus
from newsletter.web.app import create_app
from tests.conftest import Project

THEMES = ["AI & Software", "Security", "Logistics", "Energy", "Policy", "More briefings"]


class Centre:
    def __init__(self, project: Project, app: Newsletter, client: TestClient) -> None:
        self.project, self.app, self.client = project, app, client

    def reader_id(self, email: str) -> int:
        with self.app.session() as session:
            reader = session.exec(select(Subscriber).where(Subscriber.email == email)).one()
            assert reader.id is not None
            return reader.id

    def path(self, email: str) -> str:
        return urlsplit(self.app.preferences.link(self.reader_id(email))).path

    def csrf(self, path: str) -> str:
        page = self.client.get(path)
        assert page.status_code == 200
        found = re.search(r'name="csrf" value="([^"]+)"', page.text)
        assert found
        return found.group(1)

    def post(self, path: str, **fields: Any) -> Any:
        return self.client.post(path, data={"csrf": self.csrf(path), **fields})

    def reader(self, email: str) -> Subscriber:
        with self.app.session() as session:
            return session.exec(select(Subscriber).where(Subscriber.email == email)).one()

    def statuses(self, email: str) -> dict[int, SubscriptionStatus]:
        with self.app.session() as session:
            rows = session.exec(
                select(Subscription).where(Subscription.subscriber_id == self.reader_id(email))
            ).all()
        return {row.list_id: row.status for row in rows}

    def history(self, email: str) -> list[tuple[str, str]]:
        with self.app.session() as session:
            events = session.exec(
                select(ConsentEvent).where(ConsentEvent.subscriber_id == self.reader_id(email))
            ).all()
        return [(event.action, event.detail) for event in events]


def open_centre(project: Project) -> Iterator[Centre]:
    project.cli("subscribers", "import", "subscribers/weekly.csv", "--list", "weekly")
    app = Newsletter(load_settings(project.config_path))
    with TestClient(create_app(app)) as client:
        yield Centre(project, app, client)


@pytest.fixture
def centre(project: Project) -> Iterator[Centre]:
    yield from open_centre(project)


def checked_themes(html: str) -> list[str]:
    return re.findall(r'name="theme" value="([^"]+)" checked', html.replace("&amp;", "&"))


def test_a_reader_who_never_chose_sees_every_theme_received(centre: Centre) -> None:
    page = centre.client.get(centre.path("ada@example.com"))
    assert page.status_code == 200
    assert "For ada@example.com" in page.text
    assert checked_themes(page.text) == THEMES
    assert 'value="weekly" checked' in page.text
    assert page.headers["cache-control"] == "no-store"
    assert page.headers["referrer-policy"] == "no-referrer"


def test_keeping_two_themes_is_stored_shown_and_recorded(centre: Centre) -> None:
    path = centre.path("ada@example.com")
    saved = centre.post(path, theme=["Security", "Energy"], list="weekly", name="Ada L.")
    assert "Your choices are saved." in saved.text
    assert checked_themes(saved.text) == ["Security", "Energy"]
    reader = centre.reader("ada@example.com")
    assert reader.themes == ["Security", "Energy"]
    assert reader.name == "Ada L."
    assert centre.history("ada@example.com") == [
        ("themes", "Security; Energy"),
        ("name", "changed"),
    ]
    raw = centre.client.post(
        path,
        data={"csrf": centre.csrf(path), "theme": "Security", "list": "weekly"},
        follow_redirects=False,
    )
    assert raw.status_code == 303  # reloading the page afterwards sends nothing again
    assert raw.headers["location"] == f"{path}?done=saved"
    every = centre.post(path, theme=THEMES, list="weekly", name="Ada L.")
    assert checked_themes(every.text) == THEMES
    assert centre.reader("ada@example.com").themes is None  # every theme, new ones included


def test_unticking_every_theme_keeps_what_the_reader_had(centre: Centre) -> None:
    path = centre.path("grace@example.com")
    centre.post(path, theme=["Policy"], list="weekly")
    answer = centre.post(path, list="weekly")
    assert "Tick at least one theme" in answer.text
    assert centre.reader("grace@example.com").themes == ["Policy"]


def test_a_save_without_the_forms_token_or_from_another_site_changes_nothing(
    centre: Centre,
) -> None:
    path = centre.path("alan@example.com")
    bare = centre.client.post(path, data={"theme": "Security", "list": "weekly"})
    assert bare.status_code == 403
    cross = centre.client.post(
        path,
        data={"csrf": centre.csrf(path), "theme": "Security", "list": "weekly"},
        headers={"Sec-Fetch-Site": "cross-site"},
    )
    assert cross.status_code == 403
    other = centre.csrf(centre.path("ada@example.com"))  # another reader's form
    stolen = centre.client.post(path, data={"csrf": other, "theme": "Security"})
    assert stolen.status_code == 403
    assert centre.reader("alan@example.com").themes is None
    assert centre.history("alan@example.com") == []


def test_lists_can_be_joined_and_left_and_everything_left_at_once(project: Project) -> None:
    data = project.config()
    data["lists"] += [{"slug": "daily", "name": "The Daily Note"}]
    project.write_config(data)
    for centre in open_centre(project):
        path = centre.path("linus@example.com")
        assert 'value="daily">' in centre.client.get(path).text  # offered, not ticked
        centre.post(path, theme=THEMES, list=["weekly", "daily"])
        assert sorted(centre.statuses("linus@example.com").values()) == ["active", "active"]
        centre.post(path, theme=THEMES, list=["daily"])
        assert sorted(centre.statuses("linus@example.com").values()) == ["active", "unsubscribed"]
        left = centre.post(path, action="unsubscribe_all")
        assert "You are unsubscribed from everything" in left.text
        assert set(centre.statuses("linus@example.com").values()) == {"unsubscribed"}
        actions = [action for action, _ in centre.history("linus@example.com")]
        assert actions == ["join", "unsubscribe", "unsubscribe"]
        assert "active 5" in project.cli("lists").output  # weekly: the other five


def test_my_data_is_a_json_download_of_everything_stored(centre: Centre) -> None:
    path = centre.path("margaret@example.com")
    centre.post(path, theme=["Logistics"], list="weekly")
    download = centre.client.get(path + "/data")
    assert download.status_code == 200
    assert download.headers["content-type"].startswith("application/json")
    assert "attachment" in download.headers["content-disposition"]
    data = json.loads(download.text)
    assert data["subscriber"]["email"] == "margaret@example.com"
    assert data["subscriber"]["themes"] == ["Logistics"]
    assert data["subscriptions"][0]["list"] == "weekly"
    assert data["consent_history"][0]["action"] == "themes"
    assert "email_key" not in data["subscriber"]


def test_delete_me_asks_once_then_erases_and_the_link_stops_working(centre: Centre) -> None:
    path = centre.path("zoe@example.com")
    ask = centre.post(path, action="forget")
    assert "Delete everything about zoe@example.com?" in ask.text
    assert centre.app.subscribers.record("zoe@example.com") is not None  # not yet
    csrf = re.search(r'name="csrf" value="([^"]+)"', ask.text)
    assert csrf
    gone = centre.client.post(path, data={"csrf": csrf.group(1), "action": "forget_confirmed"})
    assert "Everything about you is deleted" in gone.text
    assert centre.app.subscribers.record("zoe@example.com") is None
    assert centre.app.subscribers.was_forgotten("zoe@example.com")
    after = centre.client.get(path)
    assert "Nothing is stored about this address" in after.text


def test_a_tampered_preferences_link_answers_400(centre: Centre) -> None:
    path = centre.path("ada@example.com")
    for bad in (path[:-1] + ("A" if path[-1] != "A" else "B"), "/preferences/x"):
        assert centre.client.get(bad).status_code == 400
        assert centre.client.post(bad, data={"theme": "Security"}).status_code == 400
        assert centre.client.get(bad + "/data").status_code == 400
    nobody = centre.app.preferences.link(9999)  # well signed, nobody we have (any more)
    assert "Nothing is stored" in centre.client.get(urlsplit(nobody).path).text


def test_the_unsubscribe_page_links_the_preferences_and_knows_who_left(centre: Centre) -> None:
    from newsletter.audience.tokens import unsubscribe_url

    key = centre.app.signing_key()
    url = unsubscribe_url(centre.app.settings, key, 1, centre.reader_id("ada@example.com"))
    path = urlsplit(url).path
    page = centre.client.get(path)
    assert 'href="/preferences/' in page.text  # a path: it works wherever the site is served
    assert "Unsubscribe</button>" in page.text
    done = centre.client.post(path, content=b"List-Unsubscribe=One-Click")
    assert "/preferences/" in done.text
    assert ("unsubscribe", "") in centre.history("ada@example.com")
    again = centre.client.get(path)
    assert "You are not subscribed to The Weekly Briefing." in again.text
    assert "Unsubscribe</button>" not in again.text


def test_imports_take_a_themes_column_and_exports_and_show_give_it_back(
    project: Project,
) -> None:
    csv = project.folder / "themed.csv"
    csv.write_text(
        "email,name,themes\n"
        "kim@example.com,Kim,security; ENERGY\n"
        "lee@example.com,Lee,Policy|AI & Software\n"
        "max@example.com,Max,\n",
        encoding="utf-8",
    )
    project.cli("subscribers", "import", str(csv), "--list", "weekly")
    shown = json.loads(project.cli("subscribers", "show", "kim@example.com").output)
    assert shown["subscriber"]["themes"] == ["Security", "Energy"]  # config's names and order
    exported = project.cli("subscribers", "export", "--list", "weekly").output.splitlines()
    assert exported[0] == "email,name,status,since,consent,themes"
    by_email = {line.split(",")[0]: line for line in exported[1:]}
    assert by_email["kim@example.com"].endswith(",Security; Energy")
    assert by_email["lee@example.com"].endswith(",AI & Software; Policy")
    assert by_email["max@example.com"].endswith(",")
    bad = project.folder / "bad.csv"
    bad.write_text("email,themes\nx@example.com,Gardening\n", encoding="utf-8")
    refused = project.cli("subscribers", "import", str(bad), "--list", "weekly", expect=1)
    assert "bad.csv:2: no theme 'Gardening' in config.toml" in refused.output
    again = project.folder / "again.csv"  # themes on record (a reader's or a file's) are kept
    again.write_text("email,themes\nkim@example.com,Policy\n", encoding="utf-8")
    project.cli("subscribers", "import", str(again), "--list", "weekly")
    shown = json.loads(project.cli("subscribers", "show", "kim@example.com").output)
    assert shown["subscriber"]["themes"] == ["Security", "Energy"]


def test_a_forgotten_reader_who_writes_to_come_back_can_be_let_in_again(centre: Centre) -> None:
    path = centre.path("zoe@example.com")
    ask = centre.post(path, action="forget")
    csrf = re.search(r'name="csrf" value="([^"]+)"', ask.text)
    assert csrf
    gone = centre.client.post(path, data={"csrf": csrf.group(1), "action": "forget_confirmed"})
    assert "write to briefings@signaldesk.example." in gone.text
    project = centre.project
    refused = project.cli("subscribers", "add", "zoe@example.com", "--list", "weekly", expect=1)
    assert "not re-added" in refused.output
    assert "may be added again" in project.cli("subscribers", "unforget", "zoe@example.com").output
    assert "nothing to change" in project.cli("subscribers", "unforget", "zoe@example.com").output
    project.cli("subscribers", "add", "zoe@example.com", "--list", "weekly")
    assert '"status": "active"' in project.cli("subscribers", "show", "zoe@example.com").output


def test_a_name_loses_bidi_controls_and_zero_width_characters(centre: Centre) -> None:
    path = centre.path("alan@example.com")
    centre.post(path, theme=THEMES, list="weekly", name="Alan \u202emoc.elgoog\u202c T\u200buring")
    assert centre.reader("alan@example.com").name == "Alan moc.elgoog Turing"
