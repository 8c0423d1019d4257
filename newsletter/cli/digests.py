"""`newsletter digest pin`, `newsletter preview` and `newsletter status`."""

from __future__ import annotations

import webbrowser
from pathlib import Path
from typing import Annotated

import typer

from newsletter.cli.common import ListOption, app_of, err, out, print_last_digest_note, run
from newsletter.cli.main import app, digest_app
from newsletter.services.digests import EditionStatus

_LEDGER_COLUMNS = ("queued", "sending", "sent", "deferred", "failed", "skipped")


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
    newsletter = app_of(ctx)
    title = run(lambda: newsletter.digests.pin(list_slug, guid))
    out.print(f"The next {list_slug} digest leads with “{title}”.")


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
    themes: Annotated[
        str | None,
        typer.Option(
            "--themes",
            metavar="NAMES",
            help='The edition of a reader who chose these themes, e.g. "Security,Energy".',
        ),
    ] = None,
) -> None:
    """Render the next digest of a list to files, without sending or storing anything."""
    newsletter = app_of(ctx)
    chosen = None if themes is None else [name.strip() for name in themes.split(",")]
    report = run(lambda: newsletter.digests.preview(list_slug, out_dir, chosen))
    if report is None:
        out.print(f"Nothing new to preview for {list_slug}: no new briefings in the window.")
        return
    if report.sent_at:
        print_last_digest_note(list_slug, report.sent_at, "this is that digest")
    if report.themes:
        out.print(f"Edition for readers of {', '.join(report.themes)}: “{report.subject}”")
    elif chosen is not None:
        out.print(f"Those are every theme: the full digest, “{report.subject}”")
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
def status(
    ctx: typer.Context,
    list_slug: Annotated[str | None, typer.Option("--list", "-l", help="Only this list.")] = None,
) -> None:
    """Show each digest and its ledger: queued, sending, sent, deferred, failed, skipped."""
    newsletter = app_of(ctx)
    rows = run(lambda: newsletter.reports.digests(list_slug))
    editions = run(lambda: newsletter.digests.editions(list_slug))
    if not rows:
        out.print("No digests yet.")
    for row in rows:
        out.print(
            f"#{row.digest_id} {row.list_slug}: {row.status}, {row.briefings} briefing(s), "
            f"“{row.subject}”"
        )
        out.print("    " + " · ".join(f"{key} {row.counts.get(key, 0)}" for key in _LEDGER_COLUMNS))
        shown = editions.get(row.digest_id, [])
        if shown:
            out.print(f"    {len(shown)} editions, by the themes readers chose:")
        for edition in shown:
            out.print("      " + _edition_line(edition))


def _edition_line(edition: EditionStatus) -> str:
    themes = ", ".join(edition.themes) or "every theme"
    subject = f", “{edition.subject}”" if edition.themes and edition.briefings else ""
    counts = [f"{key} {edition.counts[key]}" for key in _LEDGER_COLUMNS if edition.counts.get(key)]
    return f"{themes}: {edition.briefings} briefing(s){subject} · " + (
        " · ".join(counts) or "no deliveries"
    )
