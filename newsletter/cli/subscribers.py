"""`newsletter subscribers …` and `newsletter lists`."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from newsletter.audience.lifecycle import RemoveOutcome, SubscribeOutcome
from newsletter.cli.common import ListOption, app_of, err, operator, out, run
from newsletter.cli.main import app, subscribers_app


@subscribers_app.command("import")
def subscribers_import(
    ctx: typer.Context,
    file: Annotated[
        Path,
        typer.Argument(
            metavar="FILE",
            help="CSV file with a header row: email, and optionally name, themes (names "
            "separated by ; or |), status, consent; other columns become attributes. "
            "Exports of Mailchimp, listmonk, Substack and Buttondown are recognised by their "
            "header and read as they come.",
        ),
    ],
    list_slug: ListOption,
    skip_invalid: Annotated[
        bool, typer.Option("--skip-invalid", help="Import the good rows and report the bad ones.")
    ] = False,
) -> None:
    """Import subscribers from a CSV file into a list (all rows or none)."""
    newsletter = app_of(ctx)
    report = run(
        lambda: newsletter.subscribers.import_csv(file, list_slug, skip_invalid=skip_invalid)
    )
    for problem in report.skipped:
        err.print(f"skipped {problem}")
    for note in report.repeated:
        err.print(note)
    updated = f" ({report.updated} with a new name or attributes)" if report.updated else ""
    # Our own layout goes unsaid; another tool's is named, so a misread file is noticed.
    detail = f" ({report.format_detail})" if report.format_detail else ""
    read_as = (
        f"Read as a {report.format_name} export{detail}: " if report.format_name != "plain" else ""
    )
    out.print(
        f"{read_as}{file}: {report.added} added, "
        f"{report.unchanged + report.updated} already subscribed"
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
    newsletter = app_of(ctx)
    # The consent record of a hand-added reader: who added them, on which machine.
    consent = f"cli ({operator()})"
    report = run(
        lambda: newsletter.subscribers.add(email, list_slug, name, origin="cli", consent=consent)
    )
    email = report.email
    messages = {
        SubscribeOutcome.ADDED: f"{email} now receives {list_slug}.",
        SubscribeOutcome.PENDING: f"{email} is pending: a confirmation mail "
        f"{'went out' if report.confirmations_sent else 'could not be sent'}.",
        SubscribeOutcome.UNCHANGED: f"{email} was already on {list_slug}.",
        SubscribeOutcome.SUPPRESSED: f"{email} left earlier (unsubscribed, bounced, complained "
        "or forgotten) and is not re-added.",
    }
    out.print(messages[report.outcome])
    if report.outcome == SubscribeOutcome.SUPPRESSED:
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
    newsletter = app_of(ctx)
    rows = run(lambda: newsletter.subscribers.listed(list_slug, status))
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
    """Write a list's subscribers as CSV to standard output (email,name,status,since,consent,
    themes, then their attributes)."""
    newsletter = app_of(ctx)
    written = run(lambda: newsletter.subscribers.export(list_slug, sys.stdout, status))
    sys.stdout.flush()  # the CSV before the count, when both go to one terminal
    err.print(f"{written} subscriber(s) exported.")


@subscribers_app.command("show")
def subscribers_show(
    ctx: typer.Context,
    email: Annotated[str, typer.Argument(metavar="EMAIL", help="The subscriber's address.")],
) -> None:
    """Print everything stored about one person: profile, lists, consent, deliveries, bounces."""
    newsletter = app_of(ctx)
    record = run(lambda: newsletter.subscribers.record(email))
    if record is None:
        forgotten = run(lambda: newsletter.subscribers.was_forgotten(email))
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
    newsletter = app_of(ctx)
    if not yes and not typer.confirm(f"Erase everything about {email}?", default=False):
        raise typer.Exit(1)
    forgotten = run(lambda: newsletter.subscribers.forget(email))
    out.print(
        f"{email}: erased; only a hash is kept so they are never re-added."
        if forgotten
        else f"Nothing is stored about {email}."
    )


@subscribers_app.command("unforget")
def subscribers_unforget(
    ctx: typer.Context,
    email: Annotated[str, typer.Argument(metavar="EMAIL", help="The forgotten address.")],
) -> None:
    """Let a forgotten address be added again, when its owner asked to come back; it is then
    new to us (`subscribers add`, or the signup form, which confirms by mail)."""
    newsletter = app_of(ctx)
    lifted = run(lambda: newsletter.subscribers.unforget(email))
    out.print(
        f"{email} may be added again."
        if lifted
        else f"{email} was not forgotten; nothing to change."
    )


@subscribers_app.command("confirm")
def subscribers_confirm(
    ctx: typer.Context,
    link: Annotated[
        str, typer.Argument(metavar="LINK", help="The confirmation link, or the token at its end.")
    ],
) -> None:
    """Confirm a pending subscription from its link (what the web page does when it is opened)."""
    newsletter = app_of(ctx)
    token = link.rstrip("/").rsplit("/", 1)[-1]
    report = run(lambda: newsletter.subscribers.confirm(token))
    verb = "Confirmed" if report.changed else "Already confirmed"
    out.print(f"{verb}: {report.list_name}.")


@subscribers_app.command("remove")
def subscribers_remove(
    ctx: typer.Context,
    email: Annotated[str, typer.Argument(metavar="EMAIL", help="The subscriber's address.")],
    list_slug: ListOption,
) -> None:
    """Unsubscribe an address from a list; it will not be re-added by an import."""
    newsletter = app_of(ctx)
    outcome, stored = run(lambda: newsletter.subscribers.remove(email, list_slug))
    messages = {
        RemoveOutcome.UNSUBSCRIBED: f"{stored} is unsubscribed from {list_slug}.",
        RemoveOutcome.ALREADY_UNSUBSCRIBED: f"{stored} had already left {list_slug}.",
        RemoveOutcome.NOT_ON_LIST: f"{stored} is not on {list_slug}.",
    }
    out.print(messages[outcome])


@app.command("lists")
def lists_command(ctx: typer.Context) -> None:
    """Show every list with how many subscribers are in each status."""
    newsletter = app_of(ctx)
    for summary in run(newsletter.reports.lists):
        mode = "double opt-in" if summary.double_opt_in else "single opt-in"
        counts = " · ".join(
            f"{status} {summary.counts.get(status, 0)}"
            for status in ("active", "pending", "unsubscribed", "bounced", "complained")
        )
        out.print(f"{summary.slug} “{summary.name}” ({mode}): {counts}")
