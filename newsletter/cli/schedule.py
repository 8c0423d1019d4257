"""`newsletter run`: fetch, then send every list whose scheduled slot is due; with `--loop`, at
every slot until SIGTERM."""

from __future__ import annotations

from collections import Counter
from datetime import datetime, timedelta
from typing import Annotated, get_args
from zoneinfo import ZoneInfo

import typer

from newsletter.cli.common import app_of, graceful_stop, out, run, send_progress
from newsletter.cli.main import app
from newsletter.schedule import local_label
from newsletter.services.schedule import ListRun, RunReport, Verdict
from newsletter.services.sending import SendReport


@app.command("run")
def run_command(
    ctx: typer.Context,
    list_slug: Annotated[
        str | None, typer.Option("--list", "-l", help="Only this list's schedule.")
    ] = None,
    loop: Annotated[
        bool,
        typer.Option(
            "--loop",
            help="Keep running: wake at each next slot (a systemd service, a container); "
            "SIGTERM stops it cleanly.",
        ),
    ] = False,
) -> None:
    """Fetch every feed, then send each list whose latest scheduled slot has passed and that
    has sent nothing since (`[[lists]] schedule` in config.toml; lists without one are left
    to `newsletter send`). At most one digest per list and slot, however often it runs.

    Exit status: 0, or 1 when a list's send failed or stopped part-way.
    """
    newsletter = app_of(ctx)
    schedule = newsletter.schedule
    with send_progress() as (progress, task), graceful_stop() as stop:

        def started(report: SendReport) -> None:
            progress.update(
                task, total=report.audience, visible=True, description=f"Sending {report.list_slug}"
            )

        def advance(outcome: str) -> None:
            if outcome in ("sent", "failed", "deferred"):
                progress.advance(task)

        def listed(entry: ListRun) -> None:
            progress.update(task, visible=False, completed=0, total=None)
            out.print(describe(entry, newsletter.settings.publication.zone))

        if not loop:
            report = run(
                lambda: schedule.run(
                    list_slug, stop=stop, progress=advance, on_start=started, on_list=listed
                )
            )
            out.print(summary(report))
            if report.failed or report.stopped:
                raise typer.Exit(1)
            return

        def ran(report: RunReport, wake: datetime | None) -> None:
            out.print(summary(report))
            if wake is None:
                out.print("No list has a schedule: nothing to wait for ([[lists]] schedule).")
            elif not stop.is_set():
                zone = newsletter.settings.publication.zone
                out.print(f"Sleeping until {local_label(wake, zone)}.")
            out.file.flush()  # a service's log shows each run as it ends

        run(
            lambda: schedule.loop(
                list_slug,
                stop=stop,
                on_run=ran,
                progress=advance,
                on_start=started,
                on_list=listed,
            )
        )
        if stop.is_set():
            out.print("Stopped.")


def describe(entry: ListRun, zone: ZoneInfo) -> str:
    """One line: what `run` did with a list, and why."""
    slug, verdict = entry.slug, entry.verdict
    if verdict == "unscheduled":
        return f"{slug}: no schedule; `newsletter run` never sends it (`newsletter send` does)."
    assert entry.slot is not None
    assert entry.next_slot is not None
    slot, following = local_label(entry.slot, zone), local_label(entry.next_slot, zone)
    then = f"next slot {following}"
    if verdict == "sent":
        send = entry.send
        digest = f"digest {entry.digest_id}"
        if send is not None and send.resumed:
            digest = f"resumed digest {entry.digest_id}"
        subject = f" “{send.subject}”" if send is not None else ""
        extra = _send_problems(send)
        return f"{slug}: slot {slot}: sent {entry.sent:,} ({digest}{subject}{extra}); {then}."
    if verdict == "nothing new":
        return f"{slug}: nothing new; skipped the slot of {slot}; {then}."
    if verdict == "no audience":
        return (
            f"{slug}: no active subscribers; skipped the slot of {slot} (its briefings wait "
            f"for the next); {then}."
        )
    if verdict == "waits for approval":
        until = local_label(entry.slot + entry.grace, zone)
        why = f" ({entry.detail})" if entry.detail else ""
        return (
            f"{slug}: waits for approval{why}: the slot of {slot}; {entry.hint}; a run "
            f"until {until} sends it once approved."
        )
    if verdict == "missed":
        late, grace = _duration(entry.late), _duration(entry.grace)
        return f"{slug}: the slot of {slot} was missed by {late} (grace {grace}): not sent; {then}."
    if verdict == "failed":
        hint = f" ({entry.hint})" if entry.hint else ""
        return f"{slug}: slot {slot}: failed: {entry.detail}{hint}; the next run tries again."
    if verdict == "stopped":
        return (
            f"{slug}: slot {slot}: stopped after {entry.sent:,} sent; the next run goes on "
            f"where it stopped."
        )
    if verdict == "sent since":
        return f"{slug}: digest {entry.digest_id} went out after the slot of {slot}; {then}."
    if verdict == "taken":
        return f"{slug}: another run has the slot of {slot}; nothing sent by this one."
    if entry.late < timedelta(0) or entry.recorded is None:
        return f"{slug}: not due; {then}."
    return f"{slug}: not due (the slot of {slot}: {entry.recorded.value}); {then}."


def _send_problems(send: SendReport | None) -> str:
    if send is None:
        return ""
    summary = send.summary
    parts = [
        f"{n} {what}"
        for n, what in ((summary.failed, "failed"), (summary.deferred, "deferred"))
        if n
    ]
    return "; " + ", ".join(parts) if parts else ""


def _duration(span: timedelta) -> str:
    hours = span.total_seconds() / 3600
    if hours >= 48:
        return f"{hours / 24:.0f} days"
    if hours >= 1:
        return f"{hours:.0f} h"
    return f"{span.total_seconds() / 60:.0f} min"


def summary(report: RunReport) -> str:
    """The run's last line: the feeds fetched, and the lists by what happened."""
    feeds = report.feeds
    new = sum(feed.counts.new for feed in feeds)
    failed = sum(1 for feed in feeds if feed.status == "error")
    fetched = f"Fetched {len(feeds)} feed(s): {new} new" + (f", {failed} failed" if failed else "")
    counts = Counter(entry.verdict for entry in report.lists)
    sent = sum(entry.sent for entry in report.lists)
    parts = []
    if counts["sent"]:
        noun = "message" if sent == 1 else "messages"
        parts.append(f"{counts['sent']} digest(s) sent ({sent:,} {noun})")
    for verdict in get_args(Verdict)[1:]:  # "sent" is counted above, with its messages
        if counts[verdict]:
            parts.append(f"{counts[verdict]} {_LABELS.get(verdict, verdict)}")
    return f"{fetched}. " + ("; ".join(parts) or "no lists") + "."


_LABELS = {
    "taken": "held by another run",
    "sent since": "sent since the slot",
    "unscheduled": "without a schedule",
    "no audience": "without subscribers",
}
