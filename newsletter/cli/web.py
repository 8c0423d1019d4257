"""`newsletter serve`."""

from __future__ import annotations

from typing import Annotated

import typer

from newsletter.cli.common import app_of, err, out, run
from newsletter.cli.main import app


@app.command()
def serve(
    ctx: typer.Context,
    host: Annotated[str, typer.Option("--host", help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[
        int, typer.Option("--port", min=1, max=65535, help="Port to listen on.")
    ] = 8000,
) -> None:
    """Serve the publication's web side (ASGI, uvicorn): the home page and signup form,
    confirmation, the preference centre, one-click unsubscribe, the archive and the standards
    page. Behind a proxy on another host, set FORWARDED_ALLOW_IPS to its address so that
    signups are counted per visitor, not per proxy."""
    newsletter = app_of(ctx)
    from newsletter.web.app import check_can_listen
    from newsletter.web.app import serve as run_server

    run(lambda: check_can_listen(host, port))
    publication = newsletter.settings.publication
    out.print(
        f"Serving {publication.name} on http://{host}:{port} "
        f"(links in mail point to {publication.base_url})."
    )
    for warning in newsletter.readers.warnings():
        err.print(f"warning: {warning}")
    run(lambda: run_server(newsletter, host, port))
