"""Where fetched feeds are parsed: a pool of parser processes, or this process for one feed."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from concurrent.futures import Executor, Future, ProcessPoolExecutor
from contextlib import suppress
from typing import Any, TypeVar

from newsletter.feeds.processes import parser_context, start_fork_server

T = TypeVar("T")


class InlineExecutor(Executor):
    """Runs jobs at once in this process: for one feed a process pool costs more than it saves."""

    def submit(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> Future[T]:
        return settle(Future(), fn, *args, **kwargs)


def settle(future: Future[T], fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> Future[T]:
    """Run fn and put its result, or what it raised, in the future."""
    try:
        future.set_result(fn(*args, **kwargs))
    except BaseException as exc:  # handed to whoever waits on the future
        future.set_exception(exc)
    return future


def parser_processes(configured: int, feeds: int) -> int:
    """How many parser processes: none for one feed or one core, where a pool costs more."""
    workers = configured or os.cpu_count() or 1
    return 0 if feeds < 2 or workers < 2 else min(workers, feeds)


def parser_pool(configured: int, feeds: int) -> Executor:
    processes = parser_processes(configured, feeds)
    if not processes:
        return InlineExecutor()
    start_fork_server()  # unless `newsletter fetch` started it already
    pool = ProcessPoolExecutor(processes, mp_context=parser_context())
    # Starting a process waits for the fork server: done in the background, while the database
    # opens and the feeds download, the processes are up when the first feed arrives.
    threading.Thread(target=_start_processes, args=(pool, processes), daemon=True).start()
    return pool


def _start_processes(pool: ProcessPoolExecutor, processes: int) -> None:
    with suppress(RuntimeError):  # the fetch ended first, and shut the pool down
        for _ in range(processes):
            pool.submit(os.getpid)
