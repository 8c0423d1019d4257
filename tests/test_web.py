"""The web side: RFC 8058 one-click unsubscribe, confirmation links, the archive; over the ASGI
test client, a real uvicorn server on 127.0.0.1 and headless Chromium."""

from __future__ import annotations

import re
import subprocess
import sys
import threading
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from email.utils import getaddresses
from urllib.parse import urlsplit

import httpx
import pytest
import uvicorn
from starlette.testclient import TestClient

from newsletter.app import Newsletter
from newsletter.config import load_settings
from newsletter.web.app import create_app
from tests.conftest import ROOT, Project, SmtpServer, free_port, sqlite_only

ONE_CLICK = {
    "content": b"List-Unsubscribe=One-Click",
    "headers": {"Content-Type": "application/x-www-form-urlencoded"},
}


def publish(project: Project) -> None:
    project.cli("fetch")
    project.cli("subscribers", "import", "subscribers/weekly.csv", "--list", "weekly")
    project.cli("send", "--list", "weekly", "--yes")


def unsubscribe_paths(project: Project) -> dict[str, str]:
    """Each reader's unsubscribe path, from the List-Unsubscribe header of their message."""
    paths = {}
    for message in project.outbox():
        address = getaddresses([str(message["To"])])[0][1]
        url = str(message["List-Unsubscribe"]).strip("<>").split(">")[0]
        paths[address] = urlsplit(url).path
    return paths


@pytest.fixture
def client(project: Project) -> Iterator[TestClient]:
    with TestClient(create_app(Newsletter(load_settings(project.config_path)))) as test_client:
        yield test_client


def test_one_click_post_unsubscribes_at_once_and_get_never_does(
    project: Project, client: TestClient
) -> None:
    publish(project)
    path = unsubscribe_paths(project)["ada@example.com"]

    page = client.get(path)
    assert page.status_code == 200
    assert '<button type="submit">Unsubscribe</button>' in page.text
    assert "ada@example.com" in [
        s.split()[0]
        for s in project.cli(
            "subscribers", "list", "--list", "weekly", "--status", "active"
        ).output.splitlines()
    ]

    done = client.post(path, follow_redirects=False, **ONE_CLICK)  # type: ignore[arg-type]
    assert done.status_code == 200  # RFC 8058: never a redirect
    assert "You are unsubscribed from The Weekly Briefing" in done.text
    assert done.headers["referrer-policy"] == "no-referrer"
    assert "set-cookie" not in done.headers
    again = client.post(path, **ONE_CLICK)  # type: ignore[arg-type]
    assert again.status_code == 200
    record = project.cli("subscribers", "show", "ada@example.com").output
    assert '"status": "unsubscribed"' in record
    assert "one-click" in record

    project.add_briefing("after-unsubscribe", "Later news after-unsubscribe")
    project.cli("send", "--list", "weekly", "--yes")
    later = [m for m in project.outbox() if "after-unsubscribe" in str(m["Subject"])]
    assert len(later) == 5
    assert all("ada@" not in str(m["To"]) for m in later)


@sqlite_only
def test_serve_folds_the_log_in_a_thread_of_its_own_never_in_a_readers_request(
    project: Project,
) -> None:
    """Beside a send, SQLite's write-ahead log passes 1,000 pages every few seconds; the commit
    that found it so used to fold it back into the file, and the reader whose unsubscribe that
    was waited for the fsync. The server's commits never fold the log; a thread of its own does,
    so the log does not grow without end either."""
    app = Newsletter(load_settings(project.config_path))
    with TestClient(create_app(app)), app.session() as session:
        autocheckpoint = session.connection().exec_driver_sql("PRAGMA wal_autocheckpoint")
        assert autocheckpoint.scalar() == 0

    database = app.database
    database_file = project.folder / "newsletter.db"

    stop = database.checkpoint_apart(every=3600.0)
    before = database_file.stat().st_size
    with database.engine.begin() as connection:  # six megabytes, one commit
        connection.exec_driver_sql("CREATE TABLE filler (x BLOB)")
        connection.exec_driver_sql(
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 1500)"
            " INSERT INTO filler SELECT randomblob(4000) FROM n"
        )
    assert database_file.stat().st_size == before  # still all in the log: the commit left it
    stop()

    stop = database.checkpoint_apart(every=0.05)
    deadline = time.monotonic() + 5
    while database_file.stat().st_size < before + 6_000_000 and time.monotonic() < deadline:
        time.sleep(0.05)
    stop()
    assert database_file.stat().st_size >= before + 6_000_000  # folded by the thread
    app.close()


def test_resubscribe_from_the_page_and_only_from_it(project: Project, client: TestClient) -> None:
    publish(project)
    paths = unsubscribe_paths(project)
    done = client.post(paths["grace@example.com"], **ONE_CLICK)  # type: ignore[arg-type]
    undo = re.search(r'action="(/resubscribe/[^"]+)"', done.text)
    assert undo
    back = client.post(undo.group(1))
    assert back.status_code == 200
    assert "subscribed to The Weekly Briefing again" in back.text
    assert "Nothing to change" in client.post(undo.group(1)).text
    assert (
        '"consent": "weekly.csv:3"'
        in project.cli("subscribers", "show", "grace@example.com").output
    )
    # The unsubscribe token from the mail is no undo token, and an editor's removal stays.
    unsubscribe_token = paths["alan@example.com"].rsplit("/", 1)[1]
    assert client.post(f"/resubscribe/{unsubscribe_token}").status_code == 400
    project.cli("subscribers", "remove", "linus@example.com", "--list", "weekly")
    linus = client.post(paths["linus@example.com"], **ONE_CLICK)  # type: ignore[arg-type]
    linus_undo = re.search(r'action="(/resubscribe/[^"]+)"', linus.text)
    assert linus_undo
    assert "Nothing to change" in client.post(linus_undo.group(1)).text


def test_the_server_refuses_what_it_must(project: Project, client: TestClient) -> None:
    publish(project)
    path = unsubscribe_paths(project)["ada@example.com"]
    huge = client.post(path, content=b"x" * 100_000)
    assert huge.status_code == 413
    assert '"status": "active"' in project.cli("subscribers", "show", "ada@example.com").output
    assert client.get("/archive/99999999999999999999999").status_code == 404
    missing = client.get("/nowhere")
    assert missing.status_code == 404
    assert missing.headers["x-content-type-options"] == "nosniff"
    assert (
        client.get(
            "/archive/", follow_redirects=False, headers={"Host": "evil.example"}
        ).status_code
        == 404
    )


@pytest.mark.parametrize("route", ["/unsubscribe/{t}", "/confirm/{t}"])
@pytest.mark.parametrize(
    "token", ["nonsense", "MS4x.AAAAAAAAAAAAAAAAAAAAAA", "MS4x", "", "x" * 500, "MS4x.%00"]
)
def test_bad_tokens_get_a_plain_400_page(client: TestClient, route: str, token: str) -> None:
    for method in ("get", "post"):
        response = getattr(client, method)(route.format(t=token))
        if token == "":
            assert response.status_code in (200, 404, 405)  # /unsubscribe itself: the help page
            continue
        assert response.status_code == 400, (method, route, token)
        assert "This link is not valid" in response.text
        assert "Traceback" not in response.text
        assert "signature" not in response.text.lower()


def test_confirmation_link_activates_a_pending_subscription(
    project: Project, client: TestClient
) -> None:
    data = project.config()
    data["lists"][0]["double_opt_in"] = True
    project.write_config(data)
    project.cli("subscribers", "add", "new@example.com", "--list", "weekly")
    text = project.outbox()[0].get_body(("plain",)).get_content()  # type: ignore[union-attr]
    path = urlsplit(re.search(r"https://\S+/confirm/\S+", text).group(0)).path  # type: ignore[union-attr]
    assert client.head(path).status_code == 200  # a link checker's peek confirms nothing
    assert "Confirm my subscription" in client.get(path).text  # nor does a scanner's fetch
    assert "pending 1" in project.cli("lists").output
    first = client.post(path)
    assert first.status_code == 200
    assert "You are subscribed to The Weekly Briefing." in first.text
    assert "already subscribed" in client.post(path).text
    assert "active 1" in project.cli("lists").output


def test_archive_pages_and_feed_carry_no_reader_data(project: Project, client: TestClient) -> None:
    project.update("digest", max_per_theme=1)
    publish(project)
    index = client.get("/archive")
    assert index.status_code == 200
    assert "SignalDesk Weekly: " in index.text
    edition = client.get("/archive/1")
    assert edition.status_code == 200
    html = edition.text
    for address in ("ada@example.com", "grace@example.com", "/unsubscribe/"):
        assert address not in html
    assert "[[nl-" not in html
    assert "more on the web" not in html  # the web edition shows every story
    assert "Westbrook" in html
    assert "Quillstore" in html
    assert client.get("/archive/999").status_code == 404
    feed = ET.fromstring(client.get("/archive.xml").content)
    ns = {"atom": "http://www.w3.org/2005/Atom"}
    entry = feed.find("atom:entry", ns)
    assert entry is not None
    assert entry.find("atom:link", ns).get("href") == "https://signaldesk.example/archive/1"  # type: ignore[union-attr]
    assert client.get("/healthz").text == "ok"


@pytest.fixture
def live_server(project: Project) -> Iterator[str]:
    """A real uvicorn server on 127.0.0.1, as `newsletter serve` runs it."""
    port = free_port()
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
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def test_gmail_style_one_click_over_smtp_and_real_http(
    smtp_project: Project, smtp_server: SmtpServer, live_server: str
) -> None:
    publish(smtp_project)
    received = next(r for r in smtp_server.received if r.recipients == ["zoe@example.com"])
    header = str(received.message["List-Unsubscribe"])
    assert received.message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    url = live_server + urlsplit(header.strip("<>")).path
    response = httpx.post(
        url,
        content=b"List-Unsubscribe=One-Click",
        timeout=10,
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert response.status_code == 200
    smtp_project.add_briefing("next", "Later news next")
    smtp_server.handler.received.clear()
    smtp_project.cli("send", "--list", "weekly", "--yes")
    assert sorted(r.recipients[0] for r in smtp_server.received) == [
        "ada@example.com",
        "alan@example.com",
        "grace@example.com",
        "linus@example.com",
        "margaret@example.com",
    ]


def test_a_reader_clicks_unsubscribe_in_chromium(project: Project, live_server: str) -> None:
    from tests.test_browser import chromium

    executable = chromium()
    from playwright.sync_api import sync_playwright

    publish(project)
    message = next(m for m in project.outbox() if "margaret@" in str(m["To"]))
    html = message.get_body(("html",)).get_content()  # type: ignore[union-attr]
    link = re.search(r'href="(https://signaldesk\.example/unsubscribe/[^"]+)">Unsubscribe', html)
    assert link
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=executable,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
            ],
        )
        try:
            page = browser.new_page(viewport={"width": 375, "height": 740})
            page.goto(live_server + urlsplit(link.group(1)).path)
            assert page.get_by_role("heading").inner_text().startswith("Unsubscribe from")
            page.get_by_role("button", name="Unsubscribe").click()
            page.wait_for_load_state()
            assert "You are unsubscribed from The Weekly Briefing." in page.content()
            (ROOT / "test-artifacts").mkdir(exist_ok=True)
            page.screenshot(path=str(ROOT / "test-artifacts" / "unsubscribed-375.png"))
        finally:
            browser.close()
    assert (
        '"status": "unsubscribed"'
        in project.cli("subscribers", "show", "margaret@example.com").output
    )


def test_the_unsubscribe_link_of_a_preview_says_it_unsubscribes_nobody(
    project: Project, client: TestClient
) -> None:
    project.cli("fetch")
    project.cli("subscribers", "import", "subscribers/weekly.csv", "--list", "weekly")
    project.cli("preview", "--list", "weekly", "--out", "p")
    html = (project.folder / "p" / "digest.html").read_text()
    link = "https://signaldesk.example/unsubscribe/preview"
    assert link in html
    for method in ("get", "post"):
        response = getattr(client, method)(link.removeprefix("https://signaldesk.example"))
        assert response.status_code == 200
        assert "unsubscribes nobody" in response.text
    assert "active 6" in project.cli("lists").output


def test_newsletter_serve_keeps_reader_tokens_out_of_its_access_log(project: Project) -> None:
    """The real command, as an operator runs it: its log is for the operator, and a token in
    it would let whoever reads the log act for the reader."""
    publish(project)
    path = next(iter(unsubscribe_paths(project).values()))
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "newsletter", "serve", "--port", str(port)],
        cwd=project.folder,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        for _ in range(100):
            try:
                answer = httpx.get(f"http://127.0.0.1:{port}{path}", timeout=2)
                break
            except httpx.TransportError:
                time.sleep(0.1)
        assert answer.status_code == 200
        assert httpx.get(f"http://127.0.0.1:{port}/archive", timeout=2).status_code == 200
    finally:
        server.terminate()
        log, _ = server.communicate(timeout=10)
    token = path.rsplit("/", 1)[1]
    assert "GET /unsubscribe/…" in log
    assert "GET /archive" in log
    assert token not in log
