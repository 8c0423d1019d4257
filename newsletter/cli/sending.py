"""`newsletter send` and `newsletter worker`."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.progress import Progress, TaskID

from newsletter.cli.common import (
    ListOption,
    app_of,
    graceful_stop,
    out,
    print_last_digest_note,
    run,
    send_progress,
)
from newsletter.cli.main import app
from newsletter.send.ledger import Outcome
from newsletter.services.sending import SendReport


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
    force: Annotated[
        bool,
        typer.Option(
            "--force",
            help="Send a new digest even when the offline preflight (`newsletter check "
            "--offline`) finds an error.",
        ),
    ] = False,
) -> None:
    """Build the list's digest if none is pending and send it to every active subscriber once.

    Deliveries an earlier send had to defer (the server said "try later") are retried first.
    A new digest is checked first as `newsletter check --offline` does, and not sent when that
    finds an error (unless --force).
    Exit status: 0 when the run finished, 1 when it stopped early or could not send.
    """
    newsletter = app_of(ctx)
    sending = newsletter.sending
    if to is not None:
        copy = run(lambda: sending.send_test(list_slug, to, dry_run=dry_run))
        if copy is None:
            out.print(f"Nothing to send to {list_slug}: no briefings yet and no digest before.")
            return
        if copy.sent_at:
            print_last_digest_note(list_slug, copy.sent_at, "the copy is of that digest")
        if dry_run:
            out.print(
                f"Dry run: a test copy of “{copy.subject}” would go to {to}; nothing was sent."
            )
        else:
            out.print(f"Test copy of “{copy.subject}” sent to {to}; the ledger is unchanged.")
        return
    if dry_run or not yes:
        plan = run(lambda: sending.send(list_slug, dry_run=True))
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
    with send_progress() as (progress, task), graceful_stop() as stop:

        def started(report: SendReport) -> None:
            progress.update(
                task, total=report.audience, visible=True, description=f"Sending {report.list_slug}"
            )

        report = run(
            lambda: sending.send(
                list_slug,
                stop=stop,
                on_start=started,
                progress=lambda o: _advance(progress, task, o),
                workers=workers,
                force=force,
            )
        )
    summary = report.summary
    totals = f"{summary.sent} sent, {summary.failed} failed, {summary.deferred} deferred"
    if report.skipped_themes:
        totals += f"; skipped: {report.skipped_themes}, nothing in their themes"
    if report.retried_digests:
        digests = ", ".join(str(number) for number in report.retried_digests)
        out.print(f"Retried deferred deliveries of digest {digests}.")
    if report.given_up:
        days = newsletter.settings.delivery.give_up_after_days
        out.print(
            f"Gave up on {report.given_up} delivery(ies) deferred for more than "
            f"{days:g} days (now failed)."
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


def _nothing_to_send(report: SendReport) -> None:
    slug = report.list_slug
    if report.no_audience:
        out.print(
            f"No active subscribers on {slug}, so no digest was built; its briefings wait "
            f"for the next send. Add some with `newsletter subscribers import FILE "
            f"--list {slug}`."
        )
    else:
        out.print(f"Nothing new to send to {slug}: no new briefings since the last digest.")


def _advance(progress: Progress, task: TaskID, outcome: Outcome) -> None:
    if outcome in ("sent", "failed", "deferred"):
        progress.advance(task)


@app.command()
def worker(
    ctx: typer.Context,
    list_slug: Annotated[
        str | None, typer.Option("--list", "-l", help="Only this list's sends.")
    ] = None,
) -> None:
    """Join every send in progress (on any machine with the same config and database)."""
    newsletter = app_of(ctx)
    with graceful_stop() as stop:
        summary = run(lambda: newsletter.sending.work(list_slug, stop=stop))
    out.print(
        f"Worker done: {summary.sent} sent, {summary.failed} failed, {summary.deferred} deferred."
    )
    if summary.stopped_early:
        raise typer.Exit(1)
