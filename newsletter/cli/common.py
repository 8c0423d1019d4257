"""What every command shares: the consoles, the app object of the invocation, error output,
progress bars and the graceful stop on Ctrl-C or SIGTERM."""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from types import FrameType
from typing import Annotated, NoReturn, TypeVar

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text
from sqlalchemy.exc import SQLAlchemyError

from newsletter.app import Newsletter
from newsletter.config import Settings, load_settings
from newsletter.db import database_failure
from newsletter.errors import NewsletterError

out = Console(highlight=False, soft_wrap=True, markup=False)
err = Console(stderr=True, highlight=False, soft_wrap=True, markup=False)
T = TypeVar("T")

ListOption = Annotated[
    str, typer.Option("--list", "-l", help="The list's slug, as in config.toml.")
]


class State:
    """The invocation's config path and, built on first use, its one app object."""

    def __init__(self, config: Path | None) -> None:
        self.config = config
        self._app: Newsletter | None = None

    @property
    def settings(self) -> Settings:
        return self.app.settings

    @property
    def app(self) -> Newsletter:
        if self._app is None:
            self._app = Newsletter(load_settings(self.config))
        return self._app

    def close(self) -> None:
        if self._app is not None:
            self._app.close()


def fail(error: NewsletterError) -> NoReturn:
    for line in error.message.splitlines():
        err.print(f"[red]error:[/red] {escape(line)}", markup=True)
    if error.hint:
        err.print(f"  {error.hint}")
    raise typer.Exit(error.exit_code)


def run(call: Callable[[], T]) -> T:
    """Call the library; a NewsletterError becomes its message and exit code, not a traceback,
    and so does a database or file system that fails under it (a full disk, a read-only file)."""
    try:
        return call()
    except NewsletterError as error:
        fail(error)
    except SQLAlchemyError as error:
        fail(database_failure(error))
    except OSError as error:
        where = f"{error.filename}: " if error.filename else ""
        fail(NewsletterError(f"{where}{error.strerror or error}", hint=_OS_HINT))


_OS_HINT = "free disk space or fix the permissions, then run the same command again"


def app_of(ctx: typer.Context) -> Newsletter:
    state: State = ctx.obj
    return run(lambda: state.app)


def print_last_digest_note(list_slug: str, sent_at: datetime, what: str) -> None:
    out.print(
        f"Nothing new since the last digest of {list_slug}: {what}, "
        f"sent {sent_at:%Y-%m-%d %H:%M} UTC."
    )


@contextmanager
def spinner(description: str) -> Iterator[Callable[[], None]]:
    with Progress(
        TextColumn("{task.description}"),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err,
        transient=True,
        disable=not err.is_terminal,
    ) as progress:
        task = progress.add_task(description, total=None)
        yield lambda: progress.advance(task)


class _RateColumn(ProgressColumn):
    def render(self, task: Task) -> Text:
        return Text(f"{task.speed:,.0f} msg/s" if task.speed else "")


@contextmanager
def send_progress() -> Iterator[tuple[Progress, TaskID]]:
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        _RateColumn(),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        console=err,
        transient=True,
        disable=not err.is_terminal,
    ) as progress:
        yield progress, progress.add_task("Preparing", total=None, visible=False)


@contextmanager
def graceful_stop() -> Iterator[threading.Event]:
    """First Ctrl-C or SIGTERM: finish messages in flight, keep the rest queued. Second: abort."""
    stop = threading.Event()

    def handler(signum: int, _frame: FrameType | None) -> None:
        if stop.is_set():
            raise KeyboardInterrupt
        # Not stop.set() here: the handler runs in the main thread, which may hold the event's
        # own lock at that instant (entering stop.wait), and set() would wait for it for ever.
        threading.Thread(target=stop.set, daemon=True).start()
        err.print("Stopping after the messages in flight; press Ctrl-C again to abort.")

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield stop
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def operator() -> str:
    """Who runs this command, for the records (consent, approvals): user@host."""
    import getpass
    import socket

    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no name for this uid (a container)
        user = "unknown"
    return f"{user}@{socket.gethostname()}"
