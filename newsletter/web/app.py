"""The ASGI app (Starlette) and `newsletter serve` (uvicorn).

Unsubscribe links follow RFC 8058: a POST unsubscribes at once and is answered 200 (never a
redirect); a GET only shows a page with one button, because link scanners fetch URLs and must
not unsubscribe anyone. Unsubscribe tokens never expire; confirmation tokens do.
"""

from __future__ import annotations

import logging
import re
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from urllib.parse import urlsplit

from sqlalchemy.exc import SQLAlchemyError
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.middleware.base import BaseHTTPMiddleware, RequestResponseEndpoint
from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, Response
from starlette.routing import Route

from newsletter.app import Newsletter
from newsletter.audience.tokens import PREVIEW_UNSUBSCRIBE_PATH
from newsletter.errors import BadToken, NewsletterError
from newsletter.render.templating import render_page

SECURITY_HEADERS = {
    # Token URLs must not leak to other sites; pages need no scripts at all.
    "Referrer-Policy": "no-referrer",
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; img-src https:; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
}
PRIVATE = {"Cache-Control": "no-store", **SECURITY_HEADERS}

Handler = Callable[[Request], Awaitable[Response]]


def create_app(app: Newsletter) -> Starlette:
    """The web side of one app object; the database closes when the server stops."""
    readers, settings = app.readers, app.settings

    def page(name: str, status: int = 200, private: bool = True, **context: object) -> HTMLResponse:
        return HTMLResponse(
            render_page(settings, name, **context),
            status_code=status,
            headers=PRIVATE if private else SECURITY_HEADERS,
        )

    def message(heading: str, text: str, status: int = 200, **context: object) -> HTMLResponse:
        return page(
            "message.html.j2",
            status,
            heading=heading,
            text=text,
            link=context.get("link", ""),
            link_text=context.get("link_text", ""),
        )

    def invalid() -> HTMLResponse:
        return message(
            "This link is not valid",
            "It may have been cut short or changed. Use the link in the most recent "
            "e-mail you received from us.",
            status=400,
        )

    def tokened(handler: Callable[[Request, str], Awaitable[Response]]) -> Handler:
        async def wrapped(request: Request) -> Response:
            try:
                return await handler(request, request.path_params["token"])
            except BadToken:
                return invalid()

        return wrapped

    async def unsubscribe_page(request: Request, token: str) -> Response:
        list_name = await run_in_threadpool(readers.list_for_unsubscribe, token)
        return page("unsubscribe.html.j2", list_name=list_name, action=request.url.path)

    async def unsubscribe_now(request: Request, token: str) -> Response:
        await run_in_threadpool(readers.list_for_unsubscribe, token)  # a bad link reads nothing
        body = await _small_body(request)
        if body is None:
            return PlainTextResponse("request body too large", status_code=413)
        one_click = "List-Unsubscribe=One-Click" in body
        done = await run_in_threadpool(
            lambda: readers.unsubscribe(token, origin="one-click" if one_click else "web")
        )
        return page(
            "unsubscribed.html.j2",
            list_name=done.list_name,
            resubscribe_action=f"/resubscribe/{done.undo_token}",
        )

    async def resubscribe(request: Request, token: str) -> Response:
        if _cross_site(request, settings.publication.base_url):
            return message(
                "This button works only on our own page",
                "Use the “Subscribe again” button on the page you saw after unsubscribing.",
                status=403,
            )
        undone = await run_in_threadpool(readers.resubscribe, token)
        if undone.changed:
            return message(
                f"You are subscribed to {undone.list_name} again.",
                "The next issue will reach you as before.",
            )
        return message(
            f"Nothing to change for {undone.list_name}.",
            "This address cannot be subscribed again from here; write to us if you want it back.",
        )

    async def confirm(request: Request, token: str) -> Response:
        if request.method == "HEAD":  # link checkers peek with HEAD: confirm nothing
            return Response(status_code=200, headers=PRIVATE)
        confirmed = await run_in_threadpool(readers.confirm, token)
        heading = (
            f"You are subscribed to {confirmed.list_name}."
            if confirmed.changed
            else f"You were already subscribed to {confirmed.list_name}."
        )
        return message(heading, "Thank you for confirming. The next issue will reach you.")

    def pointing_to_archive(heading: str, text: str) -> Response:
        return message(heading, text, link="/archive", link_text="Read past issues")

    async def unsubscribe_help(request: Request) -> Response:
        return pointing_to_archive(
            "Unsubscribe",
            "Every issue we send has an unsubscribe link at the bottom, made for the "
            "address it went to. Use that link to leave the list at once.",
        )

    async def preview_link(request: Request) -> Response:
        return pointing_to_archive(
            "This is a preview",
            "This unsubscribe link comes from a preview or a test copy of an issue, so it "
            "unsubscribes nobody. In the issue readers get, the same link leaves the list at once.",
        )

    async def archive(request: Request) -> Response:
        entries = await run_in_threadpool(readers.archive)
        return page("archive.html.j2", private=False, entries=entries, feed_url="/archive.xml")

    async def edition(request: Request) -> Response:
        digest_id = int(request.path_params["digest_id"])
        html = await run_in_threadpool(readers.edition, digest_id) if digest_id < 2**31 else None
        if html is None:
            return message(
                "No such issue",
                "It may not have been sent yet.",
                status=404,
                link="/archive",
                link_text="All issues",
            )
        return HTMLResponse(html, headers=SECURITY_HEADERS)

    async def atom(request: Request) -> Response:
        feed = await run_in_threadpool(readers.atom)
        return Response(feed, media_type="application/atom+xml; charset=utf-8")

    async def healthz(request: Request) -> Response:
        if await run_in_threadpool(readers.healthy):
            return PlainTextResponse("ok")
        return PlainTextResponse("database unavailable", status_code=503)

    @asynccontextmanager
    async def lifespan(_application: Starlette) -> AsyncIterator[None]:
        await run_in_threadpool(lambda: app.database)  # a bad database stops the start
        yield
        app.close()

    async def database_down(request: Request, exc: Exception) -> Response:
        return message(
            "We could not do that just now",
            "Our database is not answering. Nothing was changed; please try again in a few "
            "minutes.",
            status=503,
        )

    application = Starlette(
        middleware=[Middleware(_SecurityHeaders)],
        exception_handlers={SQLAlchemyError: database_down},
        routes=[
            Route("/unsubscribe", unsubscribe_help, methods=["GET"]),
            Route(PREVIEW_UNSUBSCRIBE_PATH, preview_link, methods=["GET", "POST"]),
            Route("/unsubscribe/{token}", tokened(unsubscribe_page), methods=["GET"]),
            Route("/unsubscribe/{token}", tokened(unsubscribe_now), methods=["POST"]),
            Route("/resubscribe/{token}", tokened(resubscribe), methods=["POST"]),
            Route("/confirm/{token}", tokened(confirm), methods=["GET"]),
            Route("/archive", archive, methods=["GET"]),
            Route("/archive.xml", atom, methods=["GET"]),
            Route("/archive/{digest_id:int}", edition, methods=["GET"]),
            Route("/healthz", healthz, methods=["GET"]),
        ],
        lifespan=lifespan,
    )
    application.router.redirect_slashes = False  # no redirects built from a client's Host
    return application


def _cross_site(request: Request, base_url: str) -> bool:
    """A form POST that another site's page made the reader's browser send. Browsers say so in
    Sec-Fetch-Site, older ones by Origin; with neither (not a browser), the token alone decides."""
    site = request.headers.get("sec-fetch-site")
    if site is not None:
        return site not in ("same-origin", "none")
    origin = request.headers.get("origin")
    if origin is None or origin == "null":
        return origin == "null"
    ours = {_origin(base_url), f"{request.url.scheme}://{request.url.netloc}"}
    return origin.rstrip("/") not in ours


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


async def _small_body(request: Request, limit: int = 4096) -> str | None:
    """The request body if it is at most `limit` bytes; None (refuse) for anything bigger."""
    declared = request.headers.get("content-length", "0")
    if not declared.isdigit() or int(declared) > limit:
        return None
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            return None
    return body.decode("utf-8", "replace")


class _SecurityHeaders(BaseHTTPMiddleware):
    """The security headers on every answer, errors included."""

    async def dispatch(self, request: Request, call_next: RequestResponseEndpoint) -> Response:
        response = await call_next(request)
        for name, value in SECURITY_HEADERS.items():
            response.headers.setdefault(name, value)
        return response


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


_TOKEN_PATH = re.compile(r"^(/(?:unsubscribe|resubscribe|confirm)/)(?!preview\b)[^/?\s]+")


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
