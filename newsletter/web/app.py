"""The ASGI app (Starlette) and `newsletter serve` (uvicorn): one app object's web side.

The routes live in web/routes/ by area (reader links, signup, preferences, archive); every
handler parses the request, calls one service method and presents its answer.
Unsubscribe tokens never expire; confirmation tokens do.
"""

from __future__ import annotations

import logging
import re
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from sqlalchemy.exc import SQLAlchemyError
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import MutableHeaders
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from newsletter.app import Newsletter
from newsletter.errors import NewsletterError
from newsletter.web.pages import SECURITY_HEADERS, Pages
from newsletter.web.routes import archive, preferences, reader, signup


def create_app(app: Newsletter) -> Starlette:
    """The web side of one app object; the database closes when the server stops."""
    settings = app.settings
    pages = Pages(settings, app.readers.standards_path() or settings.publication.standards_url)

    @asynccontextmanager
    async def lifespan(_application: Starlette) -> AsyncIterator[None]:
        database = await run_in_threadpool(lambda: app.database)  # a bad one stops the start
        await run_in_threadpool(app.signup.purge_unconfirmed)
        stop_checkpoints = database.checkpoint_apart()
        yield
        stop_checkpoints()
        app.close()

    async def database_down(request: Request, exc: Exception) -> Response:
        return pages.message(
            "We could not do that just now",
            "Our database is not answering. Nothing was changed; please try again in a few "
            "minutes.",
            status=503,
        )

    async def cannot_now(request: Request, exc: Exception) -> Response:
        # Mail that cannot leave (no signing key, the SMTP server down): the operator's log
        # says why; the reader is told to try again, and nothing half-done is kept.
        logging.getLogger("newsletter.web").error("%s: %s", request.url.path, exc)
        return pages.message(
            "We could not do that just now",
            "Something on our side is not working. Please try again in a few minutes.",
            status=503,
        )

    async def not_found(request: Request, exc: Exception) -> Response:
        return pages.message(
            "There is no page here",
            "The address may be mistyped, or the page was moved.",
            status=404,
            link="/",
            link_text=f"{settings.publication.name}: home",
        )

    async def not_allowed(request: Request, exc: Exception) -> Response:
        return pages.message(
            "That cannot be done here",
            "This page does not take that kind of request.",
            status=405,
            link="/",
            link_text=f"{settings.publication.name}: home",
        )

    application = Starlette(
        middleware=[Middleware(_SecurityHeaders)],
        exception_handlers={
            SQLAlchemyError: database_down,
            NewsletterError: cannot_now,
            404: not_found,
            405: not_allowed,
        },
        routes=[
            *signup.routes(app, pages),
            *reader.routes(app, pages),
            *preferences.routes(app, pages),
            *archive.routes(app, pages),
        ],
        lifespan=lifespan,
    )
    application.router.redirect_slashes = False  # no redirects built from a client's Host
    return application


class _SecurityHeaders:
    """The security headers on every answer, errors included. Plain ASGI: Starlette's
    BaseHTTPMiddleware runs each request in a task group of its own, a fifth of the server's
    time on a one-click unsubscribe."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in SECURITY_HEADERS.items():
                    headers.setdefault(name, value)
            await send(message)

        await self.app(scope, receive, with_headers)


def check_can_listen(host: str, port: int) -> None:
    """Fail with one line, before anything starts, when the address cannot be listened on."""
    try:
        with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind((host, port))
    except OSError as exc:
        raise NewsletterError(
            f"cannot listen on {host}:{port}: {exc.strerror or exc}",
            hint="pick another --port, or stop what is using that one",
        ) from None


class _RedactTokens(logging.Filter):
    """Links in mail carry signed tokens that act for a reader: the access log keeps the path
    without them."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple) and len(record.args) >= 3:
            path = str(record.args[2])
            record.args = (*record.args[:2], _TOKEN_PATH.sub(r"\1…", path), *record.args[3:])
        return True


_TOKEN_PATH = re.compile(
    r"^(/(?:unsubscribe|resubscribe|confirm|preferences)/)(?!preview\b)[^/?\s]+"
)


def serve(app: Newsletter, host: str, port: int) -> None:
    import uvicorn

    app.database  # noqa: B018 (opened before the first request: a bad URL stops here)
    logging.getLogger("uvicorn.access").addFilter(_RedactTokens())
    uvicorn.run(
        create_app(app),
        host=host,
        port=port,
        log_level="info",
        proxy_headers=True,
        server_header=False,
    )
