"""The `newsletter` command's entry point, also run by `python -m newsletter`.

It imports the CLI only when called: the fork server that starts the feed parser processes
re-imports the script that started the program, and the whole CLI would cost it two seconds.
"""

from __future__ import annotations


def main() -> None:
    from newsletter.cli import main as run_cli

    run_cli()


if __name__ == "__main__":
    main()
