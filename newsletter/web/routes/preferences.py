"""The preference centre behind `/preferences/<token>`, linked from every digest: themes, lists,
name, leave everything, download my data, delete me (after one confirming step).

Every POST carries the form's CSRF token (signed for that reader, good for a day) and must come
from our own page; a GET changes nothing.
"""

from __future__ import annotations

from email.utils import parseaddr

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from newsletter.app import Newsletter
from newsletter.audience.consent import client_network
from newsletter.audience.tokens import preferences_form_token, verify_preferences_form_token
from newsletter.errors import BadToken
from newsletter.services.preferences import Preferences
from newsletter.services.signup import Visit
from newsletter.web.pages import PRIVATE, Pages, client_address, cross_site, first, form_fields

NOTICES = {
    "saved": "Your choices are saved.",
    "no-theme": "Tick at least one theme (your themes were kept as they were). To stop all "
    "mail, use “Unsubscribe from everything”.",
    "left": "You are unsubscribed from everything. Nothing more will be sent to this "
    "address; tick a list and save to come back.",
}


def routes(app: Newsletter, pages: Pages) -> list[Route]:
    preferences, settings = app.preferences, app.settings

    def shown(
        request: Request, token: str, reader: Preferences, notice: str = "", status: int = 200
    ) -> Response:
        subscriber_id = preferences.reader(token)
        return pages.page(
            "preferences.html.j2",
            status,
            reader=reader,
            notice=notice,
            action=f"/preferences/{token}",
            data_url=f"/preferences/{token}/data",
            csrf=preferences_form_token(app.signing_key(), subscriber_id),
        )

    async def show(request: Request, token: str) -> Response:
        reader = await run_in_threadpool(preferences.view, token)
        return shown(request, token, reader, NOTICES.get(request.query_params.get("done", ""), ""))

    def done(token: str, what: str) -> Response:
        # Post/Redirect/Get: reloading the page afterwards does not send the form again.
        return RedirectResponse(f"/preferences/{token}?done={what}", 303, headers=PRIVATE)

    async def change(request: Request, token: str) -> Response:
        subscriber_id = await run_in_threadpool(preferences.reader, token)
        fields = await form_fields(request)
        if fields is None:
            return pages.too_large()
        try:
            if cross_site(request, settings.publication.base_url):
                raise BadToken("not our page")
            verify_preferences_form_token(app.signing_key(), first(fields, "csrf"), subscriber_id)
        except BadToken:
            reader = await run_in_threadpool(preferences.view, token)
            return shown(
                request,
                token,
                reader,
                "This page was open too long or came from elsewhere, so nothing was changed. "
                "Make your choices again and save.",
                status=403,
            )
        visit = Visit(page=str(request.url.path), client=client_network(client_address(request)))
        action = first(fields, "action") or "save"
        if action == "unsubscribe_all":
            await run_in_threadpool(lambda: preferences.unsubscribe_everywhere(token, visit))
            reader = await run_in_threadpool(preferences.view, token)
            return shown(
                request,
                token,
                reader,
                "You are unsubscribed from everything. Nothing more "
                "will be sent to this address; tick a list and save to come back.",
            )
        if action == "forget":
            reader = await run_in_threadpool(preferences.view, token)
            return pages.page(
                "forget.html.j2",
                email=reader.email,
                action=f"/preferences/{token}",
                csrf=first(fields, "csrf"),
            )
        if action == "forget_confirmed":
            await run_in_threadpool(preferences.forget, token)
            contact = parseaddr(settings.publication.reply_to or settings.publication.from_)[1]
            return pages.message(
                "Everything about you is deleted",
                "Only a one-way hash of the address is kept, so that no list, form or import "
                f"can add it again. To subscribe again one day, write to {contact}.",
            )
        themes, lists = fields.get("theme", []), fields.get("list", [])
        name = first(fields, "name", 500)
        reader = await run_in_threadpool(
            lambda: preferences.save(token, themes=themes, lists=lists, name=name, visit=visit)
        )
        return done(token, "saved" if themes or not reader.active else "no-theme")

    async def data(request: Request, token: str) -> Response:
        body = await run_in_threadpool(preferences.data, token)
        return Response(
            body,
            media_type="application/json; charset=utf-8",
            headers={**PRIVATE, "Content-Disposition": 'attachment; filename="my-data.json"'},
        )

    return [
        Route("/preferences/{token}", pages.tokened(show), methods=["GET"]),
        Route("/preferences/{token}", pages.tokened(change), methods=["POST"]),
        Route("/preferences/{token}/data", pages.tokened(data), methods=["GET"]),
    ]
