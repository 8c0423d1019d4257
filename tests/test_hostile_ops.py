"""A hostile machine: a full disk and a read-only file system under the database, real ones
(a small tmpfs mounted for the test), and what the CLI and the web say then. Also what the
publisher leaves readable to others, and a forged cross-site resubscribe."""

from __future__ import annotations

import os
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from newsletter.app import Newsletter
from newsletter.config import load_settings
from newsletter.services.reports import shown_url
from newsletter.web.app import create_app
from tests.conftest import Project, lay_out_publication, sqlite_only

pytestmark = sqlite_only  # about SQLite's own files, on a file system of the test's own


def _mount(*args: str) -> bool:
    return subprocess.run(["mount", *args], capture_output=True, check=False).returncode == 0


@pytest.fixture
def small_disk(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A 4 MiB tmpfs holding a publication's folder (needs root, as CI runs)."""
    disk = tmp_path / "disk"
    disk.mkdir()
    if not _mount("-t", "tmpfs", "-o", "size=4m", "tmpfs", str(disk)):
        pytest.skip("cannot mount a tmpfs here (needs root)")
    try:
        lay_out_publication(disk, monkeypatch)
        yield disk
    finally:
        monkeypatch.chdir(tmp_path)
        _mount("-o", "remount,rw", str(disk))
        subprocess.run(["umount", "-l", str(disk)], check=False)


def fill(disk: Path) -> Path:
    """Take every free byte of the disk; the file returned gives them back when deleted."""
    filler = disk / "filler"
    descriptor = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        for size in (1 << 16, 1 << 12, 1 << 8, 1):
            try:
                while True:
                    os.write(descriptor, b"\0" * size)
            except OSError:
                continue
    finally:
        os.close(descriptor)
    return filler


def one_clear_error(output: str) -> None:
    assert "Traceback" not in output
    assert "[SQL:" not in output  # SQLAlchemy's dump of a statement and its parameters
    assert "example.com" not in output  # no reader's address
    assert output.count("error:") == 1, output


def test_a_full_disk_is_one_line_and_the_send_goes_on_once_there_is_room(small_disk: Path) -> None:
    project = Project(small_disk)
    project.cli("fetch")
    project.cli("subscribers", "import", "subscribers/weekly.csv", "--list", "weekly")
    filler = fill(small_disk)
    failed = project.cli("send", "--list", "weekly", "--yes", expect=None)
    assert failed.exit_code == 1
    one_clear_error(failed.output)
    assert "full" in failed.output or "No space left" in failed.output
    filler.unlink()
    resumed = project.cli("send", "--list", "weekly", "--yes")
    assert "6 sent" in resumed.output or "Resumed" in resumed.output
    delivered = sorted(str(message["To"]) for message in project.outbox())
    assert len(delivered) == len(set(delivered)) == 6  # each reader once, nobody lost


def unsubscribe_path(project: Project) -> str:
    message = project.outbox()[0]
    return "/" + str(message["List-Unsubscribe"]).split("/", 3)[3].split(">")[0]


def test_while_serving_a_full_disk_answers_503_and_healthz_says_so(small_disk: Path) -> None:
    project = Project(small_disk)
    project.cli("fetch")
    project.cli("subscribers", "import", "subscribers/weekly.csv", "--list", "weekly")
    project.cli("send", "--list", "weekly", "--yes")
    path = unsubscribe_path(project)
    with TestClient(create_app(Newsletter(load_settings(project.config_path)))) as client:
        assert client.get("/healthz").status_code == 200
        filler = fill(small_disk)
        assert client.get("/archive").status_code == 200  # reading still works
        assert client.get("/healthz").status_code == 503  # it tests a write, not a read
        answer = client.post(path, content=b"List-Unsubscribe=One-Click")
        assert answer.status_code == 503
        assert "Nothing was changed" in answer.text
        filler.unlink()
        assert client.get("/healthz").status_code == 200
        assert client.post(path, content=b"List-Unsubscribe=One-Click").status_code == 200


def test_a_read_only_file_system_is_one_line_for_every_command(small_disk: Path) -> None:
    project = Project(small_disk)
    project.cli("fetch")
    project.cli("subscribers", "import", "subscribers/weekly.csv", "--list", "weekly")
    assert _mount("-o", "remount,ro", str(small_disk))  # nothing holds a file open now
    for command in (
        ("subscribers", "remove", "ada@example.com", "--list", "weekly"),
        ("fetch",),
        ("send", "--list", "weekly", "--yes"),
        ("preview", "--list", "weekly", "--out", "preview"),
    ):
        result = project.cli(*command, expect=None)
        assert result.exit_code != 0, command
        one_clear_error(result.output)
        assert "writable" in result.output, result.output


def test_the_database_and_the_outbox_are_readable_by_their_owner_only(project: Project) -> None:
    project.cli("fetch")
    project.cli("subscribers", "import", "subscribers/weekly.csv", "--list", "weekly")
    project.cli("send", "--list", "weekly", "--yes")
    database = project.folder / "newsletter.db"
    assert stat.S_IMODE(database.stat().st_mode) == 0o600
    for message in (project.folder / "outbox" / "new").iterdir():
        assert stat.S_IMODE(message.stat().st_mode) == 0o600, message
    wal = project.folder / "newsletter.db-wal"
    if wal.exists():
        assert stat.S_IMODE(wal.stat().st_mode) & 0o077 == 0


def test_init_masks_the_database_password(project: Project) -> None:
    project.update("database", url="postgresql+psycopg://editor:s3cret-pass@127.0.0.1:1/none")
    result = project.cli("init", expect=None)  # nothing listens there: it fails, and says so
    assert "s3cret-pass" not in result.output
    assert shown_url("postgresql+psycopg://editor:s3cret-pass@db.example/letters") == (
        "postgresql+psycopg://editor:***@db.example/letters"
    )


def test_a_cross_site_resubscribe_is_refused(project: Project) -> None:
    project.cli("fetch")
    project.cli("subscribers", "import", "subscribers/weekly.csv", "--list", "weekly")
    project.cli("send", "--list", "weekly", "--yes")
    path = unsubscribe_path(project)
    with TestClient(create_app(Newsletter(load_settings(project.config_path)))) as client:
        page = client.post(path, content=b"List-Unsubscribe=One-Click")
        undo = page.text.split('action="')[1].split('"')[0]
        forged = client.post(undo, headers={"Sec-Fetch-Site": "cross-site"})
        assert forged.status_code == 403
        other_origin = client.post(undo, headers={"Origin": "https://evil.example"})
        assert other_origin.status_code == 403
        own = client.post(undo, headers={"Sec-Fetch-Site": "same-origin"})
        assert own.status_code == 200
        assert "subscribed to The Weekly Briefing again" in own.text
