"""Starting from an empty folder: `newsletter init` writes a starter that runs as it is, never
replaces a file, and copies the templates for editing; an editor's template overrides the
bundled one file by file."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
from typer.testing import CliRunner

from newsletter.cli import app
from newsletter.config import load_settings
from newsletter.resources import bundled, starter_config
from tests.conftest import ROOT


@pytest.fixture
def empty_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "publication"
    folder.mkdir()
    monkeypatch.chdir(folder)
    monkeypatch.delenv("NEWSLETTER_CONFIG", raising=False)
    monkeypatch.delenv("NEWSLETTER_SECRET_KEY", raising=False)
    return folder


def newsletter(*args: str, expect: int = 0) -> str:
    result = CliRunner().invoke(app, list(args))
    assert result.exit_code == expect, f"{args}: exit {result.exit_code}\n{result.output}"
    return result.output


def test_init_in_an_empty_folder_starts_a_publication_that_sends(empty_folder: Path) -> None:
    output = newsletter("init")
    config = empty_folder / "config.toml"
    assert config.read_text() == (ROOT / "config.toml").read_text()  # one source: the repo's
    assert (empty_folder / "newsletter.db").exists()
    assert "Wrote config.toml" in output
    standards = (empty_folder / "standards.md").read_text()
    assert standards.startswith("# Our standards\n\nSignalDesk Weekly is a weekly digest")
    assert "buyer" not in standards
    assert "served at https://signaldesk.example/standards" in output
    assert "development key" in output
    assert "NEWSLETTER_SECRET_KEY" in output
    next_steps = output.split("Next:")[1].split()
    assert " ".join(next_steps).startswith(
        "newsletter fetch newsletter subscribers add you@example.com --list weekly "
        "newsletter send --list weekly --yes"
    )
    # The next three commands, as printed: the sample feed comes from the package.
    assert "15 new" in newsletter("fetch")
    newsletter("subscribers", "add", "you@example.com", "--list", "weekly")
    assert "1 sent" in newsletter("send", "--list", "weekly", "--yes")
    assert len(list((empty_folder / "outbox" / "new").iterdir())) == 1
    settings = load_settings(config)
    assert settings.feed_location(settings.feeds[0]) == bundled("samples", "briefings.xml").as_uri()


def test_init_never_overwrites_and_a_second_run_only_upgrades(empty_folder: Path) -> None:
    newsletter("init")
    config = empty_folder / "config.toml"
    edited = starter_config().replace("SignalDesk Weekly", "The Harbour Letter")
    config.write_text(edited)
    (empty_folder / "standards.md").write_text("# Ours\n")
    output = newsletter("init")
    assert config.read_text() == edited
    assert (empty_folder / "standards.md").read_text() == "# Ours\n"
    assert "Wrote" not in output
    assert "Using config.toml (kept as it is)." in output
    assert "Next:" not in output
    assert "Database ready" in output


def test_init_writes_the_config_named_by_the_option(empty_folder: Path) -> None:
    output = newsletter("--config", "site/newsletter.toml", "init")
    assert (empty_folder / "site" / "newsletter.toml").exists()
    assert (empty_folder / "site" / "newsletter.db").exists()
    assert "newsletter --config site/newsletter.toml fetch" in output


def test_templates_are_copied_for_editing_and_override_file_by_file(empty_folder: Path) -> None:
    newsletter("init", "--templates")
    folder = empty_folder / "templates"
    names = sorted(str(path.relative_to(folder)) for path in folder.rglob("*") if path.is_file())
    assert "digest.mjml.j2" in names
    assert "web/archive.html.j2" in names
    assert "README.md" in names  # what the templates can use, beside them
    text = folder / "digest.txt.j2"
    text.write_text("Our own text edition.\n" + text.read_text())
    output = newsletter("init", "--templates")
    assert f"0 copied, {len(names)} already there and kept" in output
    assert text.read_text().startswith("Our own text edition.")
    # Only the text template is the editor's: the HTML one comes from the package.
    (folder / "digest.mjml.j2").unlink()
    newsletter("fetch")
    newsletter("preview", "--list", "weekly", "--out", "preview")
    assert (empty_folder / "preview" / "digest.txt").read_text().startswith("Our own text")
    assert "<html" in (empty_folder / "preview" / "digest.html").read_text()


def test_a_template_error_names_the_editors_file(empty_folder: Path) -> None:
    newsletter("init", "--templates")
    broken = empty_folder / "templates" / "digest.txt.j2"
    broken.write_text("{% for story in %}\n")
    newsletter("fetch")
    output = newsletter("preview", "--list", "weekly", expect=1)
    assert str(broken) in output


def test_without_a_config_every_command_points_to_init(empty_folder: Path) -> None:
    output = newsletter("lists", expect=2)
    assert "config.toml: no such config file" in output
    assert "`newsletter init` writes a starter one there" in output
    assert "pass --config PATH" in output
    named = newsletter("--config", "elsewhere.toml", "lists", expect=2)
    assert "pass --config PATH" not in named  # it was passed: the advice is init


def test_a_folder_given_as_the_config_means_its_config_toml(empty_folder: Path) -> None:
    (empty_folder / "site").mkdir()
    newsletter("--config", "site", "init")  # an existing folder: the starter goes inside it
    assert (empty_folder / "site" / "config.toml").exists()
    assert "weekly" in newsletter("--config", "site", "lists")


def test_a_runtime_template_error_names_the_file_and_line(empty_folder: Path) -> None:
    newsletter("init", "--templates")
    template = empty_folder / "templates" / "digest.txt.j2"
    lines = template.read_text().splitlines()
    lines.insert(5, "{{ publication.postal_adress }}")
    template.write_text("\n".join(lines) + "\n")
    newsletter("fetch")
    output = newsletter("preview", "--list", "weekly", expect=1)
    assert f"{template}:6: template error:" in output
    assert "'Publication' has no attribute 'postal_adress'" in output  # not Python's class path


def test_serve_refuses_a_busy_port_in_one_line(empty_folder: Path) -> None:
    newsletter("init")
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        output = newsletter("serve", "--port", str(port), expect=1)
    assert f"error: cannot listen on 127.0.0.1:{port}" in output
    assert "Serving" not in output
    assert "Traceback" not in output
    refused = newsletter("serve", "--port", "99999", expect=2)  # by the option, before anything
    assert "less than or equal to 65535" in refused


def test_a_database_we_do_not_support_is_named_as_such(empty_folder: Path) -> None:
    newsletter("init")
    config = empty_folder / "config.toml"
    config.write_text(
        config.read_text().replace('url = "sqlite:///newsletter.db"', 'url = "mysql://x/db"')
    )
    output = newsletter("lists", expect=1)
    assert "only SQLite and PostgreSQL are supported" in output
    assert "pip install" not in output
