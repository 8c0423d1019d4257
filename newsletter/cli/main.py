"""The `newsletter` Typer app, its command groups and global options; the commands live in
the modules beside this one, by area, and `newsletter.cli` puts them together."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from newsletter import __version__
from newsletter.cli.common import State, out

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
    state = State(config)
    ctx.obj = state
    ctx.call_on_close(state.close)
