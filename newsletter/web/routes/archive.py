"""The public pages that need no token: the archive, its Atom feed, the standards page, and
the health check."""

from __future__ import annotations

from markupsafe import Markup
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import FileResponse, PlainTextResponse, Response
from starlette.routing import Route

from newsletter.app import Newsletter
from newsletter.brand import BRAND_PATH, brand_of
from newsletter.web.pages import Pages


def routes(app: Newsletter, pages: Pages) -> list[Route]:
    readers = app.readers

    async def archive(request: Request) -> Response:
        entries = await run_in_threadpool(readers.archive)
        return pages.page(
            "archive.html.j2", private=False, entries=entries, feed_url="/archive.xml"
        )

    async def edition(request: Request) -> Response:
        digest_id = int(request.path_params["digest_id"])
        html = await run_in_threadpool(readers.edition, digest_id) if digest_id < 2**31 else None
        if html is None:
            return pages.message(
                "No such issue",
                "It may not have been sent yet.",
                status=404,
                link="/archive",
                link_text="All issues",
            )
        return pages.edition(html)

    async def atom(request: Request) -> Response:
        feed = await run_in_threadpool(readers.atom)
        return Response(feed, media_type="application/atom+xml; charset=utf-8")

    async def standards(request: Request) -> Response:
        body = await run_in_threadpool(readers.standards)  # Markdown without raw HTML
        return pages.page("standards.html.j2", private=False, body=Markup(body))  # noqa: S704 (markdown-it, html off)

    async def brand(request: Request) -> Response:
        # Looked up each time (the brand is cached until a logo file changes): a logo replaced
        # or added beside config.toml is served without a restart.
        found = brand_of(app.settings).files.get(request.path_params["name"])
        if found is None:
            return pages.message(
                "There is no file here", "", status=404, link="/", link_text="Home"
            )
        # The mail links it with a version in its query: a new logo is a new URL.
        return FileResponse(found, headers={"Cache-Control": "public, max-age=31536000"})

    async def healthz(request: Request) -> Response:
        if await run_in_threadpool(readers.healthy):
            return PlainTextResponse("ok")
        return PlainTextResponse("database unavailable", status_code=503)

    found = [
        Route("/archive", archive, methods=["GET"]),
        Route("/archive.xml", atom, methods=["GET"]),
        Route("/archive/{digest_id:int}", edition, methods=["GET"]),
        Route("/healthz", healthz, methods=["GET"]),
        Route(BRAND_PATH + "/{name}", brand, methods=["GET"]),
    ]
    standards_path = readers.standards_path()
    if standards_path is not None:  # else standards_url is another site's page
        found.append(Route(standards_path, standards, methods=["GET"]))
    return found
