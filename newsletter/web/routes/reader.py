"""Links in mail: RFC 8058 one-click unsubscribe and its page, undoing it, previews' links.

A POST unsubscribes at once and is answered 200 (never a redirect); a GET only shows a page
with one button, because link scanners fetch URLs and must not unsubscribe anyone.
"""

from __future__ import annotations

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from newsletter.app import Newsletter
from newsletter.audience.tokens import PREVIEW_UNSUBSCRIBE_PATH
from newsletter.web.pages import Pages, cross_site, small_body


def routes(app: Newsletter, pages: Pages) -> list[Route]:
    readers, settings = app.readers, app.settings

    async def unsubscribe_page(request: Request, token: str) -> Response:
        shown = await run_in_threadpool(readers.unsubscribe_page, token)
        return pages.page(
            "unsubscribe.html.j2",
            list_name=shown.list_name,
            already=shown.already,
            preferences_url=pages.local(shown.preferences_url),
            action=request.url.path,
        )

    async def unsubscribe_now(request: Request, token: str) -> Response:
        readers.check_unsubscribe_token(token)  # a bad link is answered before its body is read
        body = await small_body(request)
        if body is None:
            return PlainTextResponse("request body too large", status_code=413)
        one_click = "List-Unsubscribe=One-Click" in body
        done = await run_in_threadpool(
            lambda: readers.unsubscribe(token, origin="one-click" if one_click else "web")
        )
        return pages.page(
            "unsubscribed.html.j2",
            list_name=done.list_name,
            resubscribe_action=f"/resubscribe/{done.undo_token}",
            preferences_url=pages.local(done.preferences_url),
        )

    async def resubscribe(request: Request, token: str) -> Response:
        if cross_site(request, settings.publication.base_url):
            return pages.message(
                "This button works only on our own page",
                "Use the “Subscribe again” button on the page you saw after unsubscribing.",
                status=403,
            )
        undone = await run_in_threadpool(readers.resubscribe, token)
        if undone.changed:
            return pages.message(
                f"You are subscribed to {undone.list_name} again.",
                "The next issue will reach you as before.",
            )
        return pages.message(
            f"Nothing to change for {undone.list_name}.",
            "This address cannot be subscribed again from here; write to us if you want it back.",
        )

    def pointing_to_archive(heading: str, text: str) -> Response:
        return pages.message(heading, text, link="/archive", link_text="Read past issues")

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

    return [
        Route("/unsubscribe", unsubscribe_help, methods=["GET"]),
        Route(PREVIEW_UNSUBSCRIBE_PATH, preview_link, methods=["GET", "POST"]),
        Route("/unsubscribe/{token}", pages.tokened(unsubscribe_page), methods=["GET"]),
        Route("/unsubscribe/{token}", pages.tokened(unsubscribe_now), methods=["POST"]),
        Route("/resubscribe/{token}", pages.tokened(resubscribe), methods=["POST"]),
    ]
