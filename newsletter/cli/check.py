"""`newsletter check`: the preflight of the next digest."""

from __future__ import annotations

from typing import Annotated

import typer

from newsletter.cli.common import ListOption, app_of, out, print_last_digest_note, run, spinner
from newsletter.cli.main import app
from newsletter.services.check import CheckReport


@app.command()
def check(
    ctx: typer.Context,
    list_slug: ListOption,
    offline: Annotated[
        bool, typer.Option("--offline", help="Skip fetching the links: what `send` checks.")
    ] = False,
) -> None:
    """Check the list's next digest (or the last one, when nothing is new) before it goes out:
    every link answers, the size stays under Gmail's clip, subject, preheader, text part,
    alt text, lang, link words, List-Unsubscribe, DKIM and base_url.

    One line per finding, with the story it is about. Exit status: 1 on any error.
    """
    newsletter = app_of(ctx)
    with spinner("Checking" if offline else "Checking links") as advance:
        report = run(
            lambda: newsletter.check.preflight(
                list_slug, links=not offline, progress=lambda _done, _total: advance()
            )
        )
    if report is None:
        out.print(f"Nothing to check for {list_slug}: no briefings yet and no digest before.")
        return
    if report.sent_at:
        print_last_digest_note(list_slug, report.sent_at, "checked that digest")
    for finding in report.findings:
        out.print(finding.line)
    out.print(_summary(report))
    if report.errors:
        raise typer.Exit(1)


def _summary(report: CheckReport) -> str:
    links = (
        "links not fetched (--offline)"
        if report.links is None
        else f"{report.links} link{'' if report.links == 1 else 's'} fetched"
    )
    counts = ", ".join(
        f"{number} {word}{'' if number == 1 else 's'}"
        for number, word in (
            (report.errors, "error"),
            (report.warnings, "warning"),
            (report.notes, "note"),
        )
    )
    if report.sent_at:
        return f"Digest {report.digest_id} “{report.subject}” (sent): {links}; {counts}."
    verdict = "not ready to send" if report.errors else "ready to send"
    return f"The next digest “{report.subject}”: {links}; {counts}: {verdict}."
