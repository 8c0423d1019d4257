"""`newsletter bounces process` and `newsletter bounces list`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from newsletter.cli.common import app_of, err, out, run
from newsletter.cli.main import bounces_app


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
    """Act on bounces and complaints about mail we sent; handled and unreadable mail moves to a
    `processed` folder beside it."""
    if (path is None) != imap:
        err.print("error: give a Maildir or mbox PATH, or --imap (one of the two)")
        raise typer.Exit(2)
    newsletter = app_of(ctx)
    report = run(lambda: newsletter.bounces.process(path))
    out.print(
        f"{report.messages} message(s): {report.hard} hard, {report.soft} soft, "
        f"{report.complaints} complaint(s), {report.ignored} auto-reply/delivery notice(s); "
        f"{report.suppressed} address(es) suppressed."
    )
    if report.unrecognized:
        where = path or "the IMAP folder"
        out.print(f"{len(report.unrecognized)} message(s) changed nothing and stay in {where}:")
        for key in report.unrecognized:
            out.print(f"    {key}: {report.why[key]}")
    if report.unreadable:
        out.print(
            f"{len(report.unreadable)} message(s) could not be read and moved to the processed "
            "folder:"
        )
        for key in report.unreadable:
            out.print(f"    {key}: {report.why[key]}")


@bounces_app.command("list")
def bounces_list(ctx: typer.Context) -> None:
    """The latest bounces and complaints, with what was done about each."""
    newsletter = app_of(ctx)
    rows = run(newsletter.bounces.recent)
    for row in rows:
        out.print(
            f"{row.received_at:%Y-%m-%d %H:%M}  {row.email}  {row.kind} {row.status_code} "
            f"{row.reason}  -> {row.action}"
        )
    out.print(f"{len(rows)} bounce(s).")
