"""The `newsletter` command: each command parses arguments, calls one method of the app
object, and prints what it returns."""

from __future__ import annotations

import sys

# The command modules register their commands on `app` as they are imported, in the order
# `newsletter --help` lists them: the order of an editor's week.
from newsletter.cli import setup  # isort: skip
from newsletter.cli import feeds  # isort: skip
from newsletter.cli import subscribers  # isort: skip
from newsletter.cli import digests  # isort: skip
from newsletter.cli import check  # isort: skip
from newsletter.cli import sending  # isort: skip
from newsletter.cli import schedule  # isort: skip
from newsletter.cli import web  # isort: skip
from newsletter.cli import bounces  # isort: skip
from newsletter.cli.common import err
from newsletter.cli.main import app

__all__ = [
    "app",
    "bounces",
    "check",
    "digests",
    "feeds",
    "main",
    "schedule",
    "sending",
    "setup",
    "subscribers",
    "web",
]


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        err.print("Aborted.")
        sys.exit(130)
