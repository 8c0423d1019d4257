"""A person at a real browser: headless Chromium (Debian's, driven by Playwright) against a real
uvicorn server on 127.0.0.1, mail in the project's real Maildir outbox. Sign up on the home
page, confirm by the button in the mail, keep two themes, download my data, delete me; the
pages are photographed at 375 and 1280 px into test-artifacts/."""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import uvicorn

from newsletter.app import Newsletter
from newsletter.config import load_settings
from newsletter.web.app import create_app
from tests.conftest import ROOT, Project, free_port

ARTIFACTS = ROOT / "test-artifacts"


def serve(project: Project, **signup: Any) -> Iterator[str]:
    """`newsletter serve` on 127.0.0.1, with base_url pointing at it so links in mail work."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    project.update("publication", base_url=base, standards_url=f"{base}/standards")
    project.update("signup", min_seconds=1, **signup)
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(Newsletter(load_settings(project.config_path))),
            host="127.0.0.1",
            port=port,
            log_level="warning",
        )
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    try:
        yield base
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@pytest.fixture
def served(project: Project) -> Iterator[str]:
    yield from serve(project)


@pytest.fixture
def served_with_proof_of_work(project: Project) -> Iterator[str]:
    yield from serve(project, proof_of_work=True, proof_of_work_max=50_000)


def photograph(page: Any, name: str) -> None:
    """Screenshots at a phone's and a desktop's width; the phone's must not scroll sideways."""
    ARTIFACTS.mkdir(exist_ok=True)
    for width, height in ((375, 812), (1280, 900)):
        page.set_viewport_size({"width": width, "height": height})
        overflow = page.evaluate("document.documentElement.scrollWidth")
        assert overflow <= width, f"{name} is {overflow} px wide at {width} px"
        page.screenshot(path=str(ARTIFACTS / f"{name}-{width}.png"), full_page=True)
    page.set_viewport_size({"width": 375, "height": 812})


def confirmation_link(project: Project, base: str) -> str:
    (mail,) = [m for m in project.outbox() if "Confirm" in str(m["Subject"])]
    body = mail.get_body(("plain",))
    assert body is not None
    found = re.search(re.escape(base) + r"/confirm/\S+", body.get_content())
    assert found
    return found.group(0)


def test_a_person_signs_up_confirms_chooses_two_themes_takes_their_data_and_leaves(
    project: Project, served: str, browser: Any, tmp_path: Path
) -> None:
    page = browser.new_page(viewport={"width": 375, "height": 812})
    page.goto(served + "/")
    assert page.get_by_role("heading", level=1).inner_text() == "SignalDesk Weekly"
    assert "by theme, in five minutes" in page.content()  # config.toml's description
    photograph(page, "home")
    page.goto(served + "/subscribe")
    photograph(page, "subscribe")

    page.goto(served + "/")
    page.get_by_label("Your e-mail address").fill("reader@example.com")
    time.sleep(1.1)  # a person takes longer than [signup] min_seconds to type an address
    page.get_by_role("button", name="Subscribe").click()
    page.wait_for_load_state()
    assert page.get_by_role("heading", level=1).inner_text() == "Check your inbox"
    assert "reader@example.com" in project.cli("subscribers", "list", "--list", "weekly").output

    page.goto(confirmation_link(project, served))
    assert "pending" in project.cli("subscribers", "list", "--list", "weekly").output
    photograph(page, "confirm")
    page.get_by_role("button", name="Confirm my subscription").click()
    page.wait_for_load_state()
    assert "You are subscribed to The Weekly Briefing." in page.content()
    assert "active" in project.cli("subscribers", "list", "--list", "weekly").output

    page.get_by_role("link", name="Choose your themes").click()
    page.wait_for_load_state()
    assert page.get_by_role("heading", level=1).inner_text() == "Your preferences"
    photograph(page, "preferences")
    for theme in ("AI & Software", "Logistics", "Policy", "More briefings"):
        page.get_by_label(theme, exact=True).uncheck()
    page.get_by_role("button", name="Save my choices").click()
    page.wait_for_load_state()
    assert "Your choices are saved." in page.content()
    shown = json.loads(project.cli("subscribers", "show", "reader@example.com").output)
    assert shown["subscriber"]["themes"] == ["Security", "Energy"]
    assert [e["action"] for e in shown["consent_history"]] == ["signup", "confirm", "themes"]
    assert shown["consent_history"][0]["client"] == "127.0.0.0/24"

    with page.expect_download() as download:
        page.get_by_role("link", name="Download my data").click()
    saved = tmp_path / "my-data.json"
    download.value.save_as(saved)
    assert json.loads(saved.read_text())["subscriber"]["email"] == "reader@example.com"

    page.get_by_role("button", name="Delete me").click()
    page.wait_for_load_state()
    photograph(page, "delete-me")
    page.get_by_role("button", name="Delete me").click()
    page.wait_for_load_state()
    assert "Everything about you is deleted" in page.content()
    shown_now = project.cli("subscribers", "show", "reader@example.com", expect=None).output
    assert "forgotten" in shown_now


def test_with_proof_of_work_on_the_pages_script_solves_it_and_the_signup_goes_through(
    project: Project, served_with_proof_of_work: str, browser: Any
) -> None:
    page = browser.new_page(viewport={"width": 375, "height": 812})
    page.goto(served_with_proof_of_work + "/subscribe")
    page.get_by_label("Your e-mail address").fill("solver@example.com")
    button = page.get_by_role("button", name="Subscribe")
    button.wait_for(state="visible")
    page.wait_for_function(
        "document.querySelector('input[name=altcha]').value.length > 0", timeout=60_000
    )
    time.sleep(1.1)
    button.click()
    page.wait_for_load_state()
    assert page.get_by_role("heading", level=1).inner_text() == "Check your inbox"
    assert [str(m["To"]) for m in project.outbox()] == ["solver@example.com"]
