"""config.toml: the shipped file works; every mistake is one line naming the file and the key."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from newsletter.config import load_settings
from newsletter.errors import ConfigError
from tests.conftest import ROOT, Project, sqlite_only


def test_shipped_config_loads_with_contract_keys() -> None:
    settings = load_settings(ROOT / "config.toml")
    assert settings.publication.name == "SignalDesk Weekly"
    assert settings.publication.from_address == "briefings@signaldesk.example"
    assert settings.delivery.transport == "maildir"
    assert settings.smtp.port == 2525
    assert settings.smtp.concurrency == 10
    assert [list_.slug for list_ in settings.lists] == ["weekly"]
    assert len(settings.themes) >= 4
    assert settings.database_url == f"sqlite:///{ROOT / 'newsletter.db'}"
    assert settings.feed_location(settings.feeds[0]) == (ROOT / "samples/briefings.xml").as_uri()


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (lambda c: c["publication"].pop("base_url"), "[publication] base_url: missing; add it"),
        (lambda c: c["smtp"].update(port="twenty-five"), "[smtp] port: Input should be a valid"),
        (lambda c: c["smtp"].update(security="ssl"), "[smtp] security: Input should be"),
        (lambda c: c["delivery"].update(transport="pigeon"), "[delivery] transport"),
        (
            lambda c: c["publication"].update(base_url="signaldesk.example"),
            "[publication] base_url: must be an absolute http(s) URL",
        ),
        (lambda c: c["publication"].update(**{"from": "nobody"}), "[publication] from: must be"),
        (lambda c: c["smtp"].update(hostname="x"), "[smtp] hostname: unknown key"),
        (lambda c: c["feeds"][0].pop("url"), "[[feeds]] #1 url: missing; add it"),
        (
            lambda c: c["lists"][0].update(slug="Weekly List"),
            "[[lists]] #1 slug: 'Weekly List' is not allowed here; use lower-case letters",
        ),
        (
            lambda c: c.update(publicaton=c.pop("publication")),
            "publicaton: unknown table; did you mean [publication]?",
        ),
        (
            lambda c: c["lists"].append(dict(c["lists"][0])),
            "[[lists]] slugs must be unique; repeated: weekly",
        ),
        (lambda c: c.pop("lists"), "[[lists]]: missing; add it"),
        (lambda c: c["digest"].update(window_days=0), "[digest] window_days"),
    ],
)
def test_a_wrong_key_is_named_with_the_file(project: Project, change, expected: str) -> None:  # type: ignore[no-untyped-def]
    data = project.config()
    change(data)
    project.write_config(data)
    with pytest.raises(ConfigError) as raised:
        load_settings(project.config_path)
    message = str(raised.value)
    assert expected in message
    for line in message.splitlines():  # one problem a line, each naming the file
        assert line.startswith(f"{project.config_path}: ")
    assert "Tuple should have" not in message  # the inner error is named, not its echo


def test_every_missing_key_is_named_in_one_run(project: Project) -> None:
    data = project.config()
    for key in ("base_url", "standards_url", "postal_address"):
        data["publication"].pop(key)
    data["feeds"][0].pop("url")
    project.write_config(data)
    result = project.cli("fetch", expect=2)
    for key in ("base_url", "standards_url", "postal_address"):
        expected = f"error: {project.config_path}: [publication] {key}: missing; add it"
        assert expected in result.output
    assert "[[feeds]] #1 url: missing; add it" in result.output


def test_broken_toml_and_missing_file(project: Project) -> None:
    project.config_path.write_text("[publication\nname = 1\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_settings(project.config_path)
    with pytest.raises(ConfigError, match="no such config file"):
        load_settings(project.folder / "nope.toml")


def test_cli_reports_config_errors_in_one_line_without_traceback(project: Project) -> None:
    data = project.config()
    data["smtp"]["port"] = "abc"
    project.write_config(data)
    result = subprocess.run(
        [sys.executable, "-m", "newsletter", "--config", str(project.config_path), "fetch"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert "config.toml: [smtp] port" in lines[0]


@sqlite_only
def test_config_from_environment_variable(project: Project, tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    os.chdir(elsewhere)
    env = {**os.environ, "NEWSLETTER_CONFIG": str(project.config_path)}
    result = subprocess.run(
        [sys.executable, "-m", "newsletter", "init"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert str(project.folder / "newsletter.db") in result.stdout
    assert (project.folder / "newsletter.db").exists()


@pytest.mark.parametrize("template", ["{publication.title}", "{lead[0]}", "{nope}", "{lead"])
def test_subject_templates_only_take_known_fields(project: Project, template: str) -> None:
    data = project.config()
    data["digest"]["subject"] = template
    project.write_config(data)
    with pytest.raises(ConfigError, match=r"\[digest\] subject: "):
        load_settings(project.config_path)
