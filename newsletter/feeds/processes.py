"""The fork server the feed parser processes start from. A light module on purpose: the
`newsletter fetch` command starts the server before it imports the rest of the program."""

from __future__ import annotations

import multiprocessing
import multiprocessing.forkserver
from multiprocessing.context import BaseContext

# What every parser process needs: imported once, in the server, and shared by its forks
# (concurrent.futures.process runs the process pool's side of a parser process).
PRELOAD = ["newsletter.feeds.clean", "concurrent.futures.process"]


def start_fork_server() -> None:
    """Start the server, which then imports the parsers' modules in a process of its own.

    Started when `newsletter fetch` starts, those imports run beside the command's own instead
    of keeping the first feed waiting a fifth of a second for a parser. Does nothing when the
    server already runs.
    """
    parser_context().set_forkserver_preload(PRELOAD)
    multiprocessing.forkserver.ensure_running()


def parser_context() -> BaseContext:
    # forkserver: forking a process that already runs download threads is unsafe.
    return multiprocessing.get_context("forkserver")
