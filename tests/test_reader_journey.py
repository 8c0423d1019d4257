"""The issue's "done when", end to end in process: a person signs up on `/`, confirms by the
button in the mail, opens the preferences link in their first digest, keeps two themes, and the
next digest holds only those two themes."""

from __future__ import annotations

import re
from email.message import EmailMessage
from urllib.parse import urlsplit

from starlette.testclient import TestClient

from newsletter.app import Newsletter
from newsletter.config import load_settings
from newsletter.web.app import create_app
from tests.conftest import Project, parse
from tests.test_front_door import Clock


def text_of(message: EmailMessage) -> str:
    body = message.get_body(("plain",))
    assert body is not None
    return str(body.get_content())


def link_in(message: EmailMessage, path: str) -> str:
    found = re.search(r"https://signaldesk\.example(" + path + r"\S+)", text_of(message))
    assert found, text_of(message)
    return found.group(1)


def test_sign_up_confirm_keep_two_themes_and_the_next_digest_holds_only_them(
    project: Project,
) -> None:
    clock = Clock()
    app = Newsletter(load_settings(project.config_path), clock=clock)
    with TestClient(create_app(app)) as client:
        home = client.get("/")
        fields = dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)"', home.text))
        clock.advance(5)
        client.post("/subscribe", data={**fields, "email": "new.reader@example.com"})
        (confirmation,) = project.outbox()
        client.post(link_in(confirmation, "/confirm/"))

        project.cli("fetch")
        project.cli("send", "--list", "weekly", "--yes")
        first = [m for m in project.outbox() if "Confirm" not in str(m["Subject"])]
        assert len(first) == 1
        first_text = text_of(first[0])
        for theme in ("Security", "Energy", "Policy"):  # every theme, until they choose
            assert theme in first_text

        preferences = link_in(first[0], "/preferences/")
        page = client.get(preferences)
        csrf = re.search(r'name="csrf" value="([^"]+)"', page.text)
        assert csrf
        client.post(
            preferences,
            data={"csrf": csrf.group(1), "theme": ["Security", "Energy"], "list": "weekly"},
        )

    for guid, title, tag in (
        ("n1", "Ransomware hits a port operator", "security"),
        ("n2", "Grid storage doubles in a year", "energy"),
        ("n3", "Parliament passes the data act", "policy"),
        ("n4", "A new model for freight routing", "logistics"),
    ):
        project.add_briefing(guid, title, f"<category>{tag}</category>")
    before = {path.name for path in (project.folder / "outbox" / "new").iterdir()}
    project.cli("send", "--list", "weekly", "--yes")
    new = [
        parse(path.read_bytes())
        for path in (project.folder / "outbox" / "new").iterdir()
        if path.name not in before
    ]
    assert len(new) == 1
    second = text_of(new[0])
    assert "Ransomware hits a port operator" in second
    assert "Grid storage doubles in a year" in second
    assert "Parliament passes the data act" not in second
    assert "A new model for freight routing" not in second
    assert "Ransomware" in str(new[0]["Subject"]) or "Grid storage" in str(new[0]["Subject"])
    assert urlsplit(preferences).path.startswith("/preferences/")
