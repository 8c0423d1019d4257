"""`newsletter init`: start a publication in an empty folder, or bring a database up to date."""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Annotated

import typer

from newsletter.cli.common import State, app_of, out, run
from newsletter.cli.main import app
from newsletter.config import DEFAULT_CONFIG, SECRET_KEY_ENV, resolve_config_path
from newsletter.services.setup import (
    copy_templates,
    write_standards_page,
    write_starter_config,
)


@app.command()
def init(
    ctx: typer.Context,
    templates: Annotated[
        bool,
        typer.Option(
            "--templates",
            help="Also copy the bundled templates beside config.toml for editing "
            "(files already there are kept).",
        ),
    ] = False,
) -> None:
    """Start here. Writes a commented starter config.toml if there is none (SQLite, a Maildir
    outbox, the bundled sample feed, one list `weekly`) and a starter standards.md, then
    creates the database or upgrades its schema, keeping the data. Never overwrites a file."""
    state: State = ctx.obj
    path = resolve_config_path(state.config)
    starter = run(lambda: write_starter_config(path))
    if starter.written:
        out.print(f"Wrote {path}: a starter config that runs as it is; edit it to make it yours.")
    else:
        out.print(f"Using {path} (kept as it is).")
    newsletter = app_of(ctx)
    settings = newsletter.settings
    standards = run(lambda: write_standards_page(settings))
    if standards is not None:
        out.print(
            f"Wrote {standards}: your standards page, served at "
            f"{settings.publication.standards_url}; make it say what is true for you."
        )
    if templates:
        copied = run(lambda: copy_templates(settings.folder / settings.digest.templates))
        out.print(
            f"Templates in {copied.folder}: {len(copied.copied)} copied, "
            f"{len(copied.kept)} already there and kept."
        )
    report = run(newsletter.reports.database_ready)
    out.print(f"Database ready: {report.database_url}")
    out.print(f"{report.feeds} feed(s) and {report.lists} list(s) from {settings.path}")
    if report.key_origin == "environment":
        out.print(f"Link-signing key: from {SECRET_KEY_ENV}.")
    else:
        out.print(f"Link-signing key: a development key in {report.key_origin}.")
        out.print(
            f"  Before mailing real readers: set {SECRET_KEY_ENV} to a long random secret and "
            "keep it, set [security] allow_development_key = false, and set [publication] and "
            '[delivery] transport = "smtp" to your own.'
        )
    if starter.written:
        prefix = "newsletter" if path == DEFAULT_CONFIG else f"newsletter --config {_quoted(path)}"
        slug = settings.lists[0].slug
        out.print("Next:")
        out.print(f"  {prefix} fetch")
        out.print(f"  {prefix} subscribers add you@example.com --list {slug}")
        out.print(f"  {prefix} send --list {slug} --yes")


def _quoted(path: Path) -> str:
    return shlex.quote(str(path))
