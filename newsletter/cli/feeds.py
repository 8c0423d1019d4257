"""`newsletter fetch` and `newsletter feeds`."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table
from rich.text import Text

from newsletter.cli.common import app_of, err, out, run, spinner
from newsletter.cli.main import app

_STATUS_STYLES = {"ok": "green", "error": "red", "gone": "yellow"}


@app.command()
def fetch(
    ctx: typer.Context,
    strict: Annotated[bool, typer.Option("--strict", help="Exit 1 if any feed failed.")] = False,
) -> None:
    """Fetch every feed and store new and edited briefings."""
    newsletter = app_of(ctx)
    with spinner("Fetching feeds") as advance:
        reports = run(lambda: newsletter.feeds.fetch(on_feed=lambda _r: advance()))
    table = Table("Feed", "Status", "New", "Updated", title="Fetch")
    for report in reports:
        status = Text(report.status, style=_STATUS_STYLES.get(report.status, ""))
        table.add_row(report.name, status, str(report.counts.new), str(report.counts.updated))
    out.print(table)
    for report in reports:
        if report.error:  # feed errors name their feed; a gone feed's notice does not
            named = report.error.startswith(f"feed {report.name!r}")
            err.print(report.error if named else f"feed {report.name!r}: {report.error}")
    window_days = newsletter.settings.digest.window_days
    for report in reports:
        if report.counts.too_old:  # stored, yet no digest will show them: say why
            counted = _new(report.counts.new, report.counts.too_old, window_days)
            out.print(f"feed {report.name!r}: {counted}")
    failed = [r for r in reports if r.status == "error"]
    new = _new(
        sum(r.counts.new for r in reports), sum(r.counts.too_old for r in reports), window_days
    )
    updated = sum(r.counts.updated for r in reports)
    out.print(f"{len(reports)} feed(s): {new}, {updated} updated, {len(failed)} failed.")
    if reports and (len(failed) == len(reports) or (strict and failed)):
        raise typer.Exit(1)
    if failed:
        out.print("The other feeds were stored; with --strict a failed feed makes the exit 1.")


def _new(new: int, too_old: int, window_days: int) -> str:
    """ "48 new", and how many of them are older than the digest window, naming the setting."""
    if not too_old:
        return f"{new} new"
    days = "day" if window_days == 1 else "days"
    return (
        f"{new} new ({too_old} older than {window_days} {days}: "
        "[digest] window_days keeps them out of digests)"
    )


@app.command()
def feeds(ctx: typer.Context) -> None:
    """List the feeds with their last fetch, last error and how many briefings each gave."""
    newsletter = app_of(ctx)
    for row in run(newsletter.feeds.statuses):
        fetched = f"{row.last_fetched_at:%Y-%m-%d %H:%M} UTC" if row.last_fetched_at else "never"
        state = " (disabled)" if row.disabled else ""
        attempt = "last tried" if row.last_error else "last fetched"
        out.print(f"{row.name}{state}: {row.briefings} briefing(s), {attempt} {fetched}")
        out.print(f"    {row.url}")
        if row.last_error:
            out.print(f"    last error: {row.last_error}")
