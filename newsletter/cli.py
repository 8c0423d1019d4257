"""The `newsletter` command: each command parses arguments, calls one library function, prints."""

from __future__ import annotations

import json
import signal
import sys
import threading
import webbrowser
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
from rich.table import Table
from rich.text import Text

from newsletter import __version__, pipeline
from newsletter.config import Settings, load_settings
from newsletter.errors import NewsletterError

app = typer.Typer(
    help="Publish a themed weekly digest of briefings from RSS/Atom feeds to email subscribers.",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode=None,
)
subscribers_app = typer.Typer(
    help="Add, import, list, export, remove and forget subscribers.", no_args_is_help=True
)
app.add_typer(subscribers_app, name="subscribers")
bounces_app = typer.Typer(
    help="Read returned mail and complaints, and see what was done.", no_args_is_help=True
)
app.add_typer(bounces_app, name="bounces")
digest_app = typer.Typer(help="Shape the next digest of a list.", no_args_is_help=True)
app.add_typer(digest_app, name="digest")

out = Console(highlight=False, soft_wrap=True, markup=False)
err = Console(stderr=True, highlight=False, soft_wrap=True, markup=False)
T = TypeVar("T")

ConfigOption = Annotated[
    Path | None,
    typer.Option(
        "--config",
        "-c",
        help="The config file (default: $NEWSLETTER_CONFIG or ./config.toml).",
        envvar="NEWSLETTER_CONFIG",
        show_envvar=False,
    ),
]
ListOption = Annotated[
    str, typer.Option("--list", "-l", help="The list's slug, as in config.toml.")
]


class State:
    def __init__(self, config: Path | None) -> None:
        self.config = config
        self._settings: Settings | None = None

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            self._settings = load_settings(self.config)
        return self._settings


def _fail(error: NewsletterError) -> NoReturn:
    for line in error.message.splitlines():
        err.print(f"[red]error:[/red] {escape(line)}", markup=True)
    if error.hint:
        err.print(f"  {error.hint}")
    raise typer.Exit(error.exit_code)


def _run(call: Callable[[], T]) -> T:
    try:
        return call()
    except NewsletterError as error:
        _fail(error)


def _settings(ctx: typer.Context) -> Settings:
    state: State = ctx.obj
    return _run(lambda: state.settings)


def _version(value: bool) -> None:
    if value:
        out.print(f"newsletter {__version__}")
        raise typer.Exit()


@app.callback()
def main_options(
    ctx: typer.Context,
    config: ConfigOption = None,
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_version, is_eager=True, help="Show the version and exit."
        ),
    ] = False,
) -> None:
    """Fetch briefings, build a digest per list, and send it to every subscriber exactly once."""
    ctx.obj = State(config)


@app.command()
def init(ctx: typer.Context) -> None:
    """Create the database or upgrade its schema (keeping the data); register feeds and lists."""
    settings = _settings(ctx)
    report = _run(lambda: pipeline.initialize(settings))
    out.print(f"Database ready: {report.database_url}")
    out.print(f"{report.feeds} feed(s) and {report.lists} list(s) from {settings.path}")
    out.print(f"Link-signing key: {report.key_origin}")


_STATUS_STYLES = {"ok": "green", "error": "red", "gone": "yellow"}


@app.command()
def fetch(
    ctx: typer.Context,
    strict: Annotated[bool, typer.Option("--strict", help="Exit 1 if any feed failed.")] = False,
) -> None:
    """Fetch every feed and store new and edited briefings."""
    settings = _settings(ctx)
    with _spinner("Fetching feeds") as advance:
        reports = _run(lambda: pipeline.fetch_feeds(settings, on_feed=lambda _r: advance()))
    table = Table("Feed", "Status", "New", "Updated", title="Fetch")
    for report in reports:
        status = Text(report.status, style=_STATUS_STYLES.get(report.status, ""))
        table.add_row(report.name, status, str(report.counts.new), str(report.counts.updated))
    out.print(table)
    for report in reports:
        if report.error:  # feed errors name their feed; a gone feed's notice does not
            named = report.error.startswith(f"feed {report.name!r}")
            err.print(report.error if named else f"feed {report.name!r}: {report.error}")
    failed = [r for r in reports if r.status == "error"]
    new = sum(r.counts.new for r in reports)
    updated = sum(r.counts.updated for r in reports)
    out.print(f"{len(reports)} feed(s): {new} new, {updated} updated, {len(failed)} failed.")
    if reports and (len(failed) == len(reports) or (strict and failed)):
        raise typer.Exit(1)
    if failed:
        out.print("The other feeds were stored; with --strict a failed feed makes the exit 1.")


@app.command()
def feeds(ctx: typer.Context) -> None:
    """List the feeds with their last fetch, last error and how many briefings each gave."""
    settings = _settings(ctx)
    rows = _run(lambda: pipeline.feed_statuses(settings))
    for row in rows:
        fetched = f"{row.last_fetched_at:%Y-%m-%d %H:%M} UTC" if row.last_fetched_at else "never"
        state = " (disabled)" if row.disabled else ""
        attempt = "last tried" if row.last_error else "last fetched"
        out.print(f"{row.name}{state}: {row.briefings} briefing(s), {attempt} {fetched}")
        out.print(f"    {row.url}")
        if row.last_error:
            out.print(f"    last error: {row.last_error}")


@subscribers_app.command("import")
def subscribers_import(
    ctx: typer.Context,
    file: Annotated[
        Path, typer.Argument(metavar="FILE", help="CSV file with a header row: email,name.")
    ],
    list_slug: ListOption,
    skip_invalid: Annotated[
        bool, typer.Option("--skip-invalid", help="Import the good rows and report the bad ones.")
    ] = False,
) -> None:
    """Import subscribers from a CSV file into a list (all rows or none)."""
    settings = _settings(ctx)
    report = _run(
        lambda: pipeline.import_subscribers(settings, file, list_slug, skip_invalid=skip_invalid)
    )
    for problem in report.skipped:
        err.print(f"skipped {problem}")
    for note in report.repeated:
        err.print(note)
    updated = f" ({report.updated} with a new name or attributes)" if report.updated else ""
    out.print(
        f"{file}: {report.added} added, {report.unchanged + report.updated} already subscribed"
        f"{updated}, {report.suppressed} suppressed (left earlier; not re-added), "
        f"{len(report.skipped)} skipped"
        + (f", {len(report.repeated)} repeated an address." if report.repeated else ".")
    )


@subscribers_app.command("add")
def subscribers_add(
    ctx: typer.Context,
    email: Annotated[str, typer.Argument(metavar="EMAIL", help="The new subscriber's address.")],
    list_slug: ListOption,
    name: Annotated[str, typer.Option("--name", help="Their name, for the To: line.")] = "",
) -> None:
    """Add one subscriber (on a double opt-in list they get a confirmation mail first)."""
    settings = _settings(ctx)
    report = _run(lambda: pipeline.add_subscriber(settings, email, list_slug, name))
    email = report.email
    messages = {
        "added": f"{email} now receives {list_slug}.",
        "pending": f"{email} is pending: a confirmation mail "
        f"{'went out' if report.confirmations_sent else 'could not be sent'}.",
        "unchanged": f"{email} was already on {list_slug}.",
        "suppressed": f"{email} left earlier (unsubscribed, bounced, complained or forgotten) "
        "and is not re-added.",
    }
    out.print(messages[report.outcome])
    if report.outcome == "suppressed":
        raise typer.Exit(1)


@subscribers_app.command("list")
def subscribers_list(
    ctx: typer.Context,
    list_slug: ListOption,
    status: Annotated[
        str | None,
        typer.Option("--status", help="Only pending, active, unsubscribed, bounced or complained."),
    ] = None,
) -> None:
    """List a list's subscribers with their status and where their consent came from."""
    settings = _settings(ctx)
    rows = _run(lambda: pipeline.subscriber_rows(settings, list_slug, status))
    for row in rows:
        name = f" ({row.name})" if row.name else ""
        out.print(f"{row.email}{name}  {row.status}  since {row.since}  {row.consent}")
    out.print(f"{len(rows)} subscriber(s).")


@subscribers_app.command("export")
def subscribers_export(
    ctx: typer.Context,
    list_slug: ListOption,
    status: Annotated[str | None, typer.Option("--status", help="Only this status.")] = None,
) -> None:
    """Write a list's subscribers as CSV to standard output (email,name,status,... columns)."""
    settings = _settings(ctx)
    written = _run(lambda: pipeline.export_subscribers(settings, list_slug, sys.stdout, status))
    sys.stdout.flush()  # the CSV before the count, when both go to one terminal
    err.print(f"{written} subscriber(s) exported.")


@subscribers_app.command("show")
def subscribers_show(
    ctx: typer.Context,
    email: Annotated[str, typer.Argument(metavar="EMAIL", help="The subscriber's address.")],
) -> None:
    """Print everything stored about one person: profile, lists, consent, deliveries, bounces."""
    settings = _settings(ctx)
    record = _run(lambda: pipeline.subscriber_record(settings, email))
    if record is None:
        forgotten = _run(lambda: pipeline.was_forgotten(settings, email))
        out.print(
            f"Nothing is stored about {email}"
            + (": it was forgotten on request; a hash of it keeps it from being re-added."
               if forgotten else ".")
        )  # fmt: skip
        raise typer.Exit(1)
    out.print(json.dumps(record, indent=2, default=str, ensure_ascii=False))


@subscribers_app.command("forget")
def subscribers_forget(
    ctx: typer.Context,
    email: Annotated[str, typer.Argument(metavar="EMAIL", help="The address to erase.")],
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask first.")] = False,
) -> None:
    """Erase a person's data for good, keeping only a hash so they are never re-added."""
    settings = _settings(ctx)
    if not yes and not typer.confirm(f"Erase everything about {email}?", default=False):
        raise typer.Exit(1)
    forgotten = _run(lambda: pipeline.forget_subscriber(settings, email))
    out.print(
        f"{email}: erased; only a hash is kept so they are never re-added."
        if forgotten
        else f"Nothing is stored about {email}."
    )


@subscribers_app.command("confirm")
def subscribers_confirm(
    ctx: typer.Context,
    link: Annotated[
        str, typer.Argument(metavar="LINK", help="The confirmation link, or the token at its end.")
    ],
) -> None:
    """Confirm a pending subscription from its link (what the web page does when it is opened)."""
    settings = _settings(ctx)
    token = link.rstrip("/").rsplit("/", 1)[-1]
    list_name, changed = _run(lambda: pipeline.confirm_subscription(settings, token))
    out.print(f"Confirmed: {list_name}." if changed else f"Already confirmed: {list_name}.")


@app.command("lists")
def lists_command(ctx: typer.Context) -> None:
    """Show every list with how many subscribers are in each status."""
    settings = _settings(ctx)
    for summary in _run(lambda: pipeline.list_summaries(settings)):
        mode = "double opt-in" if summary.double_opt_in else "single opt-in"
        counts = " · ".join(
            f"{status} {summary.counts.get(status, 0)}"
            for status in ("active", "pending", "unsubscribed", "bounced", "complained")
        )
        out.print(f"{summary.slug} “{summary.name}” ({mode}): {counts}")


@subscribers_app.command("remove")
def subscribers_remove(
    ctx: typer.Context,
    email: Annotated[str, typer.Argument(metavar="EMAIL", help="The subscriber's address.")],
    list_slug: ListOption,
) -> None:
    """Unsubscribe an address from a list; it will not be re-added by an import."""
    settings = _settings(ctx)
    outcome, stored = _run(lambda: pipeline.remove_subscriber(settings, email, list_slug))
    messages = {
        "unsubscribed": f"{stored} is unsubscribed from {list_slug}.",
        "already unsubscribed": f"{stored} had already left {list_slug}.",
        "not on the list": f"{stored} is not on {list_slug}.",
    }
    out.print(messages[outcome])


@digest_app.command("pin")
def digest_pin(
    ctx: typer.Context,
    guid: Annotated[
        str,
        typer.Argument(metavar="GUID", help="The briefing's guid (its feed item's guid or id)."),
    ],
    list_slug: ListOption,
) -> None:
    """Make a briefing the top story of the list's next digest."""
    settings = _settings(ctx)
    title = _run(lambda: pipeline.pin_lead(settings, list_slug, guid))
    out.print(f"The next {list_slug} digest leads with “{title}”.")


def _print_last_digest_note(list_slug: str, sent_at: datetime, what: str) -> None:
    out.print(
        f"Nothing new since the last digest of {list_slug}: {what}, "
        f"sent {sent_at:%Y-%m-%d %H:%M} UTC."
    )


@app.command()
def preview(
    ctx: typer.Context,
    list_slug: ListOption,
    out_dir: Annotated[
        Path, typer.Option("--out", "-o", help="Folder for digest.html, digest.txt, digest.eml.")
    ] = Path("preview"),
    open_browser: Annotated[
        bool, typer.Option("--open", help="Open the HTML in a web browser.")
    ] = False,
) -> None:
    """Render the next digest of a list to files, without sending or storing anything."""
    settings = _settings(ctx)
    report = _run(lambda: pipeline.preview(settings, list_slug, out_dir))
    if report is None:
        out.print(f"Nothing new to preview for {list_slug}: no new briefings in the window.")
        return
    if report.sent_at:
        _print_last_digest_note(list_slug, report.sent_at, "this is that digest")
    web_only = f" (+{report.web_only} on the web only)" if report.web_only else ""
    out.print(
        f"{report.briefings} stories{web_only}: {report.html_path} "
        f"({report.html_bytes / 1024:.1f} KB), {report.text_path}, {report.eml_path}"
    )
    if report.clipped_by_gmail:
        err.print(
            f"warning: the HTML is {report.html_bytes / 1024:.0f} KB, over Gmail's 102 KB; Gmail "
            "will clip it and hide the footer with the unsubscribe link. Lower [digest] "
            "max_briefings or max_per_theme in config.toml."
        )
    if open_browser:
        webbrowser.open(report.html_path.resolve().as_uri())


@app.command()
def send(
    ctx: typer.Context,
    list_slug: ListOption,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Send without asking first.")] = False,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Render and count; send nothing.")
    ] = False,
    to: Annotated[
        str | None,
        typer.Option("--to", help="Send one test copy to this address only (no ledger)."),
    ] = None,
    workers: Annotated[
        int,
        typer.Option(
            "--workers",
            min=1,
            max=64,
            help="Sender processes sharing the ledger (PostgreSQL); on SQLite, one "
            "process with that many times the connections.",
        ),
    ] = 1,
) -> None:
    """Build the list's digest if none is pending and send it to every active subscriber once.

    Deliveries an earlier send had to defer (the server said "try later") are retried first.
    Exit status: 0 when the run finished, 1 when it stopped early or could not send.
    """
    settings = _settings(ctx)
    if to is not None:
        copy = _run(lambda: pipeline.send_test(settings, list_slug, to, dry_run=dry_run))
        if copy is None:
            out.print(f"Nothing to send to {list_slug}: no briefings yet and no digest before.")
            return
        if copy.sent_at:
            _print_last_digest_note(list_slug, copy.sent_at, "the copy is of that digest")
        if dry_run:
            out.print(
                f"Dry run: a test copy of “{copy.subject}” would go to {to}; nothing was sent."
            )
        else:
            out.print(f"Test copy of “{copy.subject}” sent to {to}; the ledger is unchanged.")
        return
    if dry_run or not yes:
        plan = _run(lambda: pipeline.send(settings, list_slug, dry_run=True))
        if plan.digest_id is None:
            _nothing_to_send(plan)
            return
        out.print(
            f"List {list_slug}: “{plan.subject}” to {plan.audience} subscriber(s) "
            f"via {plan.destination}."
        )
        if dry_run:
            out.print("Dry run: nothing was sent.")
            return
        if not typer.confirm("Send it now?", default=False):
            out.print("Not sent.")
            raise typer.Exit(1)
    with _progress() as (progress, task), _graceful_stop() as stop:

        def started(report: pipeline.SendReport) -> None:
            progress.update(
                task, total=report.audience, visible=True, description=f"Sending {report.list_slug}"
            )

        report = _run(
            lambda: pipeline.send(
                settings,
                list_slug,
                stop=stop,
                on_start=started,
                progress=lambda o: _advance(progress, task, o),
                workers=workers,
            )
        )
    summary = report.summary
    totals = f"{summary.sent} sent, {summary.failed} failed, {summary.deferred} deferred"
    if report.retried_digests:
        digests = ", ".join(str(number) for number in report.retried_digests)
        out.print(f"Retried deferred deliveries of digest {digests}.")
    if report.given_up:
        out.print(
            f"Gave up on {report.given_up} delivery(ies) deferred for more than "
            f"{settings.delivery.give_up_after_days:g} days (now failed)."
        )
    if report.digest_id is None:
        if report.retried_digests:
            out.print(f"To {report.destination}: {totals}.")
        _nothing_to_send(report)
    else:
        verb = "Resumed" if report.resumed else "Sent"
        out.print(
            f"{verb} digest {report.digest_id} “{report.subject}” to {report.destination}: "
            f"{totals}."
        )
    if summary.stopped_early:
        out.print("Stopped early; run the same command again to go on where it stopped.")
        raise typer.Exit(1)
    if report.no_audience:
        raise typer.Exit(1)


def _nothing_to_send(report: pipeline.SendReport) -> None:
    slug = report.list_slug
    if report.no_audience:
        out.print(
            f"No active subscribers on {slug}, so no digest was built; its briefings wait "
            f"for the next send. Add some with `newsletter subscribers import FILE "
            f"--list {slug}`."
        )
    else:
        out.print(f"Nothing new to send to {slug}: no new briefings since the last digest.")


def _advance(progress: Progress, task: TaskID, outcome: str) -> None:
    if outcome in ("sent", "failed", "deferred"):
        progress.advance(task)


_LEDGER_COLUMNS = ("queued", "sending", "sent", "deferred", "failed", "skipped")


@bounces_app.command("process")
def bounces_process(
    ctx: typer.Context,
    path: Annotated[
        Path | None,
        typer.Argument(metavar="PATH", help="A Maildir folder or an mbox file of returned mail."),
    ] = None,
    imap: Annotated[
        bool, typer.Option("--imap", help="Read the IMAP folder of [bounces.imap] instead.")
    ] = False,
) -> None:
    """Act on bounces and complaints; handled mail moves to a `processed` folder beside it."""
    settings = _settings(ctx)
    if (path is None) != imap:
        err.print("error: give a Maildir or mbox PATH, or --imap (one of the two)")
        raise typer.Exit(2)
    report = _run(lambda: pipeline.process_bounces(settings, path))
    out.print(
        f"{report.messages} message(s): {report.hard} hard, {report.soft} soft, "
        f"{report.complaints} complaint(s), {report.ignored} auto-reply/delivery notice(s); "
        f"{report.suppressed} address(es) suppressed."
    )
    if report.unrecognized:
        where = path or "the IMAP folder"
        out.print(f"{len(report.unrecognized)} message(s) named no subscriber and stay in {where}:")
        for key in report.unrecognized:
            out.print(f"    {key}")


@bounces_app.command("list")
def bounces_list(ctx: typer.Context) -> None:
    """The latest bounces and complaints, with what was done about each."""
    settings = _settings(ctx)
    rows = _run(lambda: pipeline.bounce_rows(settings))
    for row in rows:
        out.print(
            f"{row.received_at:%Y-%m-%d %H:%M}  {row.email}  {row.kind} {row.status_code} "
            f"{row.reason}  -> {row.action}"
        )
    out.print(f"{len(rows)} bounce(s).")


@app.command()
def worker(
    ctx: typer.Context,
    list_slug: Annotated[
        str | None, typer.Option("--list", "-l", help="Only this list's sends.")
    ] = None,
) -> None:
    """Join every send in progress (on any machine with the same config and database)."""
    settings = _settings(ctx)
    with _graceful_stop() as stop:
        summary = _run(lambda: pipeline.work(settings, list_slug, stop=stop))
    out.print(
        f"Worker done: {summary.sent} sent, {summary.failed} failed, {summary.deferred} deferred."
    )
    if summary.stopped_early:
        raise typer.Exit(1)


@app.command()
def serve(
    ctx: typer.Context,
    host: Annotated[str, typer.Option("--host", help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="Port to listen on.")] = 8000,
) -> None:
    """Serve one-click unsubscribe, confirmation links and the public archive (ASGI, uvicorn)."""
    settings = _settings(ctx)
    from newsletter.web.app import serve as run_server

    out.print(
        f"Serving {settings.publication.name} on http://{host}:{port} "
        f"(links in mail point to {settings.publication.base_url})."
    )
    _run(lambda: run_server(settings, host, port))


@app.command()
def status(
    ctx: typer.Context,
    list_slug: Annotated[str | None, typer.Option("--list", "-l", help="Only this list.")] = None,
) -> None:
    """Show each digest and its ledger: queued, sending, sent, deferred, failed, skipped."""
    settings = _settings(ctx)
    rows = _run(lambda: pipeline.digest_statuses(settings, list_slug))
    if not rows:
        out.print("No digests yet.")
    for row in rows:
        out.print(
            f"#{row.digest_id} {row.list_slug}: {row.status}, {row.briefings} briefing(s), "
            f"“{row.subject}”"
        )
        out.print("    " + " · ".join(f"{key} {row.counts.get(key, 0)}" for key in _LEDGER_COLUMNS))


@contextmanager
def _spinner(description: str) -> Iterator[Callable[[], None]]:
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
def _progress() -> Iterator[tuple[Progress, TaskID]]:
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
def _graceful_stop() -> Iterator[threading.Event]:
    """First Ctrl-C or SIGTERM: finish messages in flight, keep the rest queued. Second: abort."""
    stop = threading.Event()

    def handler(signum: int, _frame: FrameType | None) -> None:
        if stop.is_set():
            raise KeyboardInterrupt
        stop.set()
        err.print("Stopping after the messages in flight; press Ctrl-C again to abort.")

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield stop
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        err.print("Aborted.")
        sys.exit(130)
