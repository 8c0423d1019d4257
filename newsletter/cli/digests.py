"""`newsletter digest show/drop/note/pin/approve`, `newsletter preview` and `newsletter status`."""

from __future__ import annotations

import webbrowser
from pathlib import Path
from typing import Annotated

import typer

from newsletter.cli.common import (
    ListOption,
    app_of,
    err,
    operator,
    out,
    print_last_digest_note,
    run,
)
from newsletter.cli.main import app, digest_app
from newsletter.schedule import local_label
from newsletter.services.digests import EditionStatus

_LEDGER_COLUMNS = ("queued", "sending", "sent", "deferred", "failed", "skipped")


BriefingArgument = Annotated[
    str,
    typer.Argument(
        metavar="ID|GUID",
        help="The briefing: its short id from `digest show` (b123) or its feed guid.",
    ),
]


@digest_app.command("show")
def digest_show(ctx: typer.Context, list_slug: ListOption) -> None:
    """Show the list's next digest as `send` would send it now: theme by theme, each story
    with its short id, guid and outlet, in the e-mail or on the web only, merged duplicates,
    the pin, the note and the approval."""
    newsletter = app_of(ctx)
    plan = run(lambda: newsletter.desk.show(list_slug))
    if plan is None:
        out.print(f"Nothing new for {list_slug}: no new briefings in the window.")
        explain_too_old(ctx, list_slug)
        return
    out.print(f"Next digest of {list_slug}: “{plan.subject}”", markup=False, highlight=False)
    out.print(
        f"{plan.in_email} stories in the e-mail, {plan.web_only} on the web only. "
        f"Approval: {plan.approval}"
        + (f" ({plan.approved_at:%Y-%m-%d %H:%M} UTC)." if plan.approved_at else "."),
        markup=False,
    )
    if plan.note:
        first = plan.note.splitlines()[0]
        out.print(f"Note: {first}" + (" …" if "\n" in plan.note else ""), markup=False)
    theme = None
    for story in plan.stories:
        heading = f"Top story · {story.theme}" if story.lead else story.theme
        if heading != theme:
            out.print(f"\n{heading}", markup=False, style="bold")
            theme = heading
        marks = [story.outlet]
        if story.pinned:
            marks.append("pinned")
        if not story.in_email:
            marks.append("web only")
        out.print(f"  {story.short_id:>6}  {story.title}", markup=False, highlight=False)
        out.print(
            f"          {' · '.join(marks)} · guid {story.guid}", markup=False, highlight=False
        )
        for duplicate in story.also:
            out.print(f"          + the same story: {duplicate}", markup=False, highlight=False)
    if plan.dropped:
        out.print("\nDropped (`digest drop --undo` brings one back):", style="bold")
        for story in plan.dropped:
            plain(f"  {story.short_id:>6}  {story.title}")


def explain_too_old(ctx: typer.Context, list_slug: str) -> None:
    newsletter = app_of(ctx)
    old = run(lambda: newsletter.desk.too_old(list_slug))
    if old:
        days = newsletter.settings.digest.window_days
        out.print(
            f"{old} briefing(s) are older than {days} days, so no digest carries them: "
            f"[digest] window_days = {days} in {newsletter.settings.path.name} decides.",
            markup=False,
        )


def plain(line: str) -> None:
    """A line of the editor's data as it is: titles may hold [brackets] rich would eat."""
    out.print(line, markup=False, highlight=False)


@digest_app.command("drop")
def digest_drop(
    ctx: typer.Context,
    briefing: BriefingArgument,
    list_slug: ListOption,
    undo: Annotated[bool, typer.Option("--undo", help="Let it back into the digest.")] = False,
) -> None:
    """Leave a briefing out of the list's digests (`--undo` lets it back in)."""
    newsletter = app_of(ctx)
    dropped = run(lambda: newsletter.desk.drop(list_slug, briefing, undo=undo))
    story = f"{dropped.short_id} “{dropped.title}”"
    if dropped.sent_in is not None:
        plain(f"{story} went out in digest {dropped.sent_in} of {list_slug}: nothing to change.")
    elif not undo:
        plain(f"{story} is left out of {list_slug}'s digests.")
    elif dropped.in_next:
        plain(f"{story} is back in the next {list_slug} digest.")
    else:
        days = newsletter.settings.digest.window_days
        plain(
            f"{story} may be carried again, but no digest to come will: it is older than the "
            f"window of the next {list_slug} digest (since the last one, at most {days} days)."
        )


@digest_app.command("note")
def digest_note(
    ctx: typer.Context,
    list_slug: ListOption,
    text: Annotated[
        str | None, typer.Argument(metavar="TEXT", help="The note, in Markdown.")
    ] = None,
    file: Annotated[
        Path | None, typer.Option("--file", help="Read the note (Markdown) from a file.")
    ] = None,
    clear: Annotated[bool, typer.Option("--clear", help="Remove the note.")] = False,
) -> None:
    """Set the editor's note atop the list's next digest (Markdown: paragraphs, links,
    emphasis, lists), shown in both parts; used once, like a pin."""
    newsletter = app_of(ctx)
    if not clear and text is None and file is None:
        err.print("error: give the note as TEXT or --file PATH, or --clear to remove it")
        raise typer.Exit(2)
    note = run(lambda: newsletter.desk.note(list_slug, text, path=file, clear=clear))
    if note:
        blocks = len([part for part in note.split("\n\n") if part.strip()])
        noun = "block" if blocks == 1 else "blocks"
        out.print(f"The next {list_slug} digest opens with your note ({blocks} {noun} of text).")
    else:
        out.print(f"The next {list_slug} digest has no note.")


@digest_app.command("approve")
def digest_approve(ctx: typer.Context, list_slug: ListOption) -> None:
    """Approve the list's next digest as `digest show` shows it now (for a list with
    `require_approval = true`); a change after this asks for approval again."""
    newsletter = app_of(ctx)
    plan = run(lambda: newsletter.desk.approve(list_slug, by=operator()))
    out.print(
        f"Approved the next {list_slug} digest: “{plan.subject}” ({plan.in_email} stories).",
        markup=False,
    )


@digest_app.command("pin")
def digest_pin(
    ctx: typer.Context,
    list_slug: ListOption,
    briefing: Annotated[
        str | None,
        typer.Argument(
            metavar="ID|GUID",
            help="The briefing: its short id from `digest show` (b123) or its feed guid.",
        ),
    ] = None,
    clear: Annotated[bool, typer.Option("--clear", help="Take the pin off.")] = False,
) -> None:
    """Make a briefing the top story of the list's next digest (`--clear` takes the pin off)."""
    newsletter = app_of(ctx)
    if clear:
        was = run(lambda: newsletter.desk.unpin(list_slug))
        plain(
            f"No pin on the next {list_slug} digest any more (it was “{was}”)."
            if was
            else f"The next {list_slug} digest had no pin."
        )
        return
    if briefing is None:
        err.print("error: name the briefing (ID or GUID), or --clear to take the pin off")
        raise typer.Exit(2)
    title = run(lambda: newsletter.digests.pin(list_slug, briefing))
    plain(f"The next {list_slug} digest leads with “{title}”.")


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
        explain_too_old(ctx, list_slug)
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
    for problem in report.brand_problems:
        err.print(f"warning: {problem}")
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
    """Show each digest and its ledger: queued, sending, sent, deferred, failed, skipped; and
    each scheduled list's next slot."""
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
    zone = newsletter.settings.publication.zone
    for slot in run(lambda: newsletter.schedule.slots(list_slug)):
        due = "due now: `newsletter run` sends it" if slot.due else ""
        last = (
            f"the slot of {local_label(slot.latest, zone)}: {slot.recorded}"
            if slot.recorded
            else ""
        )
        out.print(
            f"{slot.slug}: schedule “{slot.schedule}”, next slot {local_label(slot.next, zone)}"
            + "".join(f"; {part}" for part in (due, last) if part)
        )


def _edition_line(edition: EditionStatus) -> str:
    themes = ", ".join(edition.themes) or "every theme"
    subject = f", “{edition.subject}”" if edition.themes and edition.briefings else ""
    counts = [f"{key} {edition.counts[key]}" for key in _LEDGER_COLUMNS if edition.counts.get(key)]
    return f"{themes}: {edition.briefings} briefing(s){subject} · " + (
        " · ".join(counts) or "no deliveries"
    )
