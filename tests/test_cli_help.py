"""Every command explains itself."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import typer.main
from typer.testing import CliRunner

from newsletter.cli import app

COMMAND = typer.main.get_command(app)


def all_commands(group: Any = COMMAND, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    found = [prefix]
    if hasattr(group, "commands"):
        for name, command in group.commands.items():
            found += all_commands(command, (*prefix, name))
    return found


@pytest.mark.parametrize("path", all_commands(), ids=lambda p: " ".join(p) or "newsletter")
def test_every_command_has_help_text(path: tuple[str, ...]) -> None:
    command: Any = COMMAND
    for name in path:
        command = command.commands[name]
    assert command.help
    assert len(command.help.strip()) > 20
    result = CliRunner().invoke(app, [*path, "--help"])
    assert result.exit_code == 0
    assert "Usage:" in result.output


def test_contract_commands_exist() -> None:
    paths = {" ".join(p) for p in all_commands()}
    assert {
        "init",
        "fetch",
        "preview",
        "send",
        "status",
        "subscribers import",
        "subscribers remove",
    } <= paths


def test_console_script_is_installed() -> None:
    executable = str(Path(sys.executable).parent / "newsletter")
    result = subprocess.run(
        [executable, "--version"], capture_output=True, text=True, timeout=60, check=True
    )
    assert result.stdout.startswith("newsletter ")
