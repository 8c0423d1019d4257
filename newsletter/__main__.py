"""The `newsletter` command's entry point, also run by `python -m newsletter`.

It imports the CLI only when called: the fork server that starts the feed parser processes
re-imports the script that started the program, and the whole CLI would cost it two seconds.
For `newsletter fetch` and `newsletter run` (which fetches) it starts that server first, so
that the parsers' imports run beside the CLI's own.
"""

from __future__ import annotations

import os
import sys


def main() -> None:
    if _fetching(sys.argv[1:]) and (os.cpu_count() or 1) > 1:
        from newsletter.feeds.processes import start_fork_server

        start_fork_server()
    from newsletter.cli import main as run_cli

    run_cli()


def _fetching(arguments: list[str]) -> bool:
    """Whether the command fetches (`fetch`, `run`; after the global options), and is not
    asking for help."""
    words = iter(arguments)
    for word in words:
        if word in ("--config", "-c"):
            next(words, None)
        elif not word.startswith("-"):
            return word in ("fetch", "run") and "--help" not in arguments
    return False


if __name__ == "__main__":
    main()
