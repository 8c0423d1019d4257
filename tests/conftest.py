"""Shared fixtures: a project folder with its own config, a real SMTP server, the CLI."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import socket
import tomllib
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session
from typer.testing import CliRunner

from newsletter.app import Newsletter
from newsletter.cli import app
from newsletter.config import load_settings

ROOT = Path(__file__).resolve().parents[1]
# Real-world feeds, returned mail and addresses, copied from the shared corpus with their
# MANIFEST and licence lines, so that a clone anywhere runs every test.
CORPUS = ROOT / "tests" / "data" / "corpus"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    escaped = str(value).replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'


def dump_toml(data: dict[str, Any], prefix: str = "") -> str:
    """Enough TOML for config files: tables (nested too) and arrays of tables of plain values."""
    lines: list[str] = []
    for key, value in data.items():
        if isinstance(value, dict):
            lines.append(f"[{prefix}{key}]")
            lines += [f"{k} = {toml_value(v)}" for k, v in value.items() if not isinstance(v, dict)]
            nested = {k: v for k, v in value.items() if isinstance(v, dict)}
            if nested:
                lines.append(dump_toml(nested, prefix=f"{prefix}{key}."))
        elif isinstance(value, list) and value and isinstance(value[0], dict):
            for item in value:
                lines.append(f"[[{key}]]")
                lines += [f"{k} = {toml_value(v)}" for k, v in item.items()]
        else:
            lines.insert(0, f"{key} = {toml_value(value)}")
        lines.append("")
    return "\n".join(lines)


@dataclass
class Project:
    """A copy of the shipped config, sample feed and subscriber list in a temporary folder."""

    folder: Path
    runner: CliRunner = field(default_factory=CliRunner)

    @property
    def config_path(self) -> Path:
        return self.folder / "config.toml"

    def config(self) -> dict[str, Any]:
        return tomllib.loads(self.config_path.read_text())

    def write_config(self, data: dict[str, Any]) -> None:
        self.config_path.write_text(dump_toml(data))

    def update(self, section: str, **values: Any) -> None:
        data = self.config()
        data.setdefault(section, {}).update(values)
        self.write_config(data)

    def cli(self, *args: str, expect: int | None = 0) -> Any:
        result = self.runner.invoke(app, ["--config", str(self.config_path), *args])
        if expect is not None and result.exit_code != expect:
            raise AssertionError(
                f"exit {result.exit_code} != {expect} for {args}\n{result.output}\n"
                f"{result.exception!r}"
            )
        return result

    def add_briefing(self, guid: str, title: str, extra: str = "") -> None:
        """Append an item to the sample feed and fetch it: news for the next digest."""
        feed = self.folder / "samples" / "briefings.xml"
        item = (
            f"<item><title>{title}</title><guid>{guid}</guid>"
            f"<link>https://signaldesk.example/{guid}</link>{extra}</item>"
        )
        feed.write_text(feed.read_text().replace("</channel>", item + "</channel>"))
        self.cli("fetch")

    def outbox(self) -> list[EmailMessage]:
        new = self.folder / "outbox" / "new"
        if not new.exists():
            return []
        return [parse(path.read_bytes()) for path in sorted(new.iterdir(), key=delivery_order)]


def delivery_order(path: Path) -> tuple[int, ...]:
    """Maildir names are "SECONDS.M<micro>P<pid>Q<count>.host"; the microseconds are not
    zero-padded, so sorting the names as text mixes up deliveries within one second."""
    seconds, unique = path.name.split(".")[:2]
    match = re.fullmatch(r"M(\d+)P(\d+)Q(\d+)", unique)
    assert match, f"not a Maildir file name: {path.name}"
    micro, _pid, count = (int(part) for part in match.groups())
    return (int(seconds), micro, count)


def parse(raw: bytes) -> EmailMessage:
    message = message_from_bytes(raw, policy=policy.default)
    assert isinstance(message, EmailMessage)
    return message


def lay_out_publication(folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The shipped config, sample feed and subscriber list in `folder`, the working folder."""
    shutil.copy(ROOT / "config.toml", folder / "config.toml")
    # Tests reach only 127.0.0.1, and the corpus feeds' pictures live on the Internet: the
    # tests of the probe turn it on, with their pictures on a server of their own.
    data = tomllib.loads((folder / "config.toml").read_text())
    data["fetch"]["probe_images"] = False
    (folder / "config.toml").write_text(dump_toml(data))
    shutil.copytree(ROOT / "samples", folder / "samples")
    shutil.copytree(ROOT / "subscribers", folder / "subscribers")
    monkeypatch.chdir(folder)
    monkeypatch.delenv("NEWSLETTER_CONFIG", raising=False)
    monkeypatch.setenv("NEWSLETTER_SECRET_KEY", "test-key-0123456789abcdef0123456789")


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Project]:
    lay_out_publication(tmp_path, monkeypatch)
    with test_database() as url:
        if url:
            project = Project(tmp_path)
            project.update("database", url=url)
        yield Project(tmp_path)


@pytest.fixture
def newsletter(project: Project) -> Iterator[Newsletter]:
    """The app object on the project's config, in process: what the CLI and the web hold."""
    with Newsletter(load_settings(project.config_path)) as app_object:
        yield app_object


POSTGRES_ENV = "NEWSLETTER_TEST_POSTGRES"  # e.g. postgresql+psycopg://postgres@127.0.0.1:5432


def on_postgres() -> bool:
    return bool(os.environ.get(POSTGRES_ENV))


@contextmanager
def test_database() -> Iterator[str | None]:
    """With NEWSLETTER_TEST_POSTGRES set, a fresh PostgreSQL database per test; else SQLite."""
    server = os.environ.get(POSTGRES_ENV)
    if not server:
        yield None
        return
    with postgres_database(server, "nl_test") as url:
        yield url


@contextmanager
def postgres_database(server: str, prefix: str) -> Iterator[str]:
    """A new database on the PostgreSQL `server` (a URL without a database), dropped after."""
    import sqlalchemy

    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    admin = sqlalchemy.create_engine(f"{server}/postgres", isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.exec_driver_sql(f'CREATE DATABASE "{name}"')
    try:
        yield f"{server}/{name}"
    finally:
        with admin.connect() as connection:
            connection.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()


sqlite_only = pytest.mark.skipif(on_postgres(), reason="about SQLite's own files")


@dataclass
class Received:
    sender: str
    recipients: list[str]
    data: bytes

    @property
    def message(self) -> EmailMessage:
        return parse(self.data)


class RecordingHandler:
    """Keeps every accepted message; `replies` maps a recipient to canned RCPT replies."""

    def __init__(self) -> None:
        self.received: list[Received] = []
        self.replies: dict[str, list[str]] = {}
        self.rcpt_attempts: dict[str, int] = {}
        self.mail_from_reply: str | None = None
        self.drop_once: set[str] = set()  # recipients whose first RCPT drops the connection
        self.data_delay = 0.0  # seconds before answering DATA: a slow relay
        self.pipelining = True
        self.greetings = 0  # connections opened: one EHLO each

    async def handle_EHLO(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        hostname: str,
        responses: list[str],
    ) -> list[str]:
        """Offer PIPELINING as Postfix does (aiosmtpd accepts pipelined commands anyway)."""
        self.greetings += 1
        session.host_name = hostname
        if self.pipelining:
            responses.insert(1, "250-PIPELINING")
        return responses

    async def handle_MAIL(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        mail_options: list[str],
    ) -> str:
        if self.mail_from_reply:
            return self.mail_from_reply
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def handle_RCPT(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        rcpt_options: list[str],
    ) -> str:
        self.rcpt_attempts[address] = self.rcpt_attempts.get(address, 0) + 1
        if address in self.drop_once:
            self.drop_once.discard(address)
            assert server.transport is not None
            server.transport.close()
            return "421 4.4.2 connection dropped"
        queued = self.replies.get(address)
        reply = (queued.pop(0) if len(queued) > 1 else queued[0]) if queued else "250 OK"
        if reply.startswith("250"):
            envelope.rcpt_tos.append(address)
        return reply

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        if self.data_delay:
            await asyncio.sleep(self.data_delay)
        content = envelope.original_content or b""
        self.received.append(Received(str(envelope.mail_from), list(envelope.rcpt_tos), content))
        return "250 Message accepted for delivery"


@dataclass
class SmtpServer:
    host: str
    port: int
    handler: RecordingHandler

    @property
    def received(self) -> list[Received]:
        return self.handler.received


@pytest.fixture
def smtp_server() -> Iterator[SmtpServer]:
    handler = RecordingHandler()
    port = free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield SmtpServer("127.0.0.1", port, handler)
    finally:
        controller.stop()


@pytest.fixture
def smtp_project(project: Project, smtp_server: SmtpServer) -> Project:
    project.update("delivery", transport="smtp")
    project.update("smtp", host=smtp_server.host, port=smtp_server.port, concurrency=3, timeout=10)
    return project


def many_readers(
    project: Project, server: SmtpServer, *, readers: int, concurrency: int, lease: float
) -> None:
    """A list of `readers` subscribers, a fetched feed and a slow relay (about 20 msg/s a
    connection): the set-up of the tests that stop or kill senders part-way."""
    rows = "\n".join(f"reader{n:03}@example.com,Reader {n}" for n in range(readers))
    (project.folder / "many.csv").write_text(f"email,name\n{rows}\n")
    project.update("smtp", concurrency=concurrency)
    project.update("delivery", claim_lease_seconds=lease)
    project.cli("fetch")
    project.cli("subscribers", "import", "many.csv", "--list", "weekly")
    server.handler.data_delay = 0.05


Factory = Callable[..., Any]


@pytest.fixture
def feed_server() -> Iterator[Any]:
    from tests.feedserver import serve

    with serve(CORPUS / "feeds") as server:
        yield server


CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Headless Chromium (Debian's), driven by Playwright: one per test module."""
    from playwright.sync_api import sync_playwright

    from tests.test_browser import chromium

    executable = chromium()
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        try:
            yield launched
        finally:
            launched.close()
