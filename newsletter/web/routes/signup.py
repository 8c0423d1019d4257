"""The front door: the home page, the signup form, and confirming by a button.

The answer to a signup is the same page whether the address was new, pending or subscribed
already, so the form cannot be used to learn who reads. A confirmation link only shows a page
with one button; the POST confirms, so link scanners that fetch URLs confirm nobody.
"""

from __future__ import annotations

from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from newsletter.app import Newsletter
from newsletter.audience.addresses import normalize_email
from newsletter.audience.consent import client_network
from newsletter.errors import AddressError
from newsletter.resources import package_folder
from newsletter.services.signup import Visit
from newsletter.web.antibot import Refusal, SignupGate
from newsletter.web.pages import (
    PRIVATE,
    SECURITY_HEADERS,
    WITH_OWN_SCRIPT,
    Fields,
    Pages,
    client_address,
    first,
    form_fields,
)

LATEST_ON_HOME = 5
SIGNUP_SCRIPT = package_folder("web") / "static" / "signup.js"


def routes(app: Newsletter, pages: Pages) -> list[Route]:
    settings, preferences, signup = app.settings, app.preferences, app.signup
    gate = SignupGate(app)
    public_lists = settings.public_lists

    def form_page(
        name: str,
        status: int = 200,
        *,
        notice: str = "",
        fields: Fields | None = None,
        **context: object,
    ) -> Response:
        ticket = gate.ticket()
        fields = fields or {}
        values: dict[str, Any] = {
            "form": ticket,
            "lists": public_lists,
            "themes": preferences.theme_names,
            "email": first(fields, "email", 254),
            "chosen_lists": fields.get("list", []),
            "chosen_themes": fields.get("theme", []),
            "notice": notice,
            **context,
        }
        headers = WITH_OWN_SCRIPT if ticket.challenge else PRIVATE
        return pages.page(name, status, headers=headers, **values)

    async def home(request: Request) -> Response:
        entries = await run_in_threadpool(app.readers.archive)
        return form_page("home.html.j2", entries=entries[:LATEST_ON_HOME])

    async def subscribe_form(request: Request) -> Response:
        return form_page("subscribe.html.j2")

    def check_your_inbox(email: str) -> Response:
        # What the visitor typed, and the same words whoever owns it: it tells nobody who reads.
        return pages.message(
            "Check your inbox",
            f"We sent a message with a button to confirm to {email}, unless that address is "
            "subscribed already. Nothing more is sent to it until the button is pressed. It "
            "can take a few minutes; look in the spam folder too. A typing mistake? Sign up "
            "again with the right address.",
            link="/subscribe",
            link_text="Sign up with another address",
        )

    async def subscribe(request: Request) -> Response:
        fields = await form_fields(request)
        if fields is None:
            return pages.too_large()
        if settings.signup.proof_of_work and not first(fields, "altcha") and first(fields, "email"):
            return form_page(
                "subscribe.html.j2",
                notice="This form needs JavaScript to check that a person sent it. Please "
                "turn it on for this site and press Subscribe again.",
                fields=fields,
            )
        try:
            email = normalize_email(first(fields, "email", 320))
        except AddressError as exc:
            return form_page(
                "subscribe.html.j2", 400, notice=_address_problem(str(exc)), fields=fields
            )
        slugs = fields.get("list", [])
        if len(public_lists) == 1 and not slugs:
            slugs = [public_lists[0].slug]
        refusal = gate.check(
            {key: first(fields, key, 4000) for key in fields},
            client_address(request),
            email.rpartition("@")[2],
        )
        if refusal == Refusal.SCRIPT:
            return check_your_inbox(email)  # a script learns nothing from the answer
        if refusal == Refusal.TOO_FAST:
            return form_page(
                "subscribe.html.j2",
                notice="That was quicker than we expected. Please press Subscribe again.",
                fields=fields,
            )
        if refusal == Refusal.EXPIRED:
            return form_page(
                "subscribe.html.j2",
                notice="This form was open for a long time. Please press Subscribe again.",
                fields=fields,
            )
        if refusal == Refusal.TOO_MANY:
            return pages.message(
                "Too many signups just now",
                "We had many signups from your network or for your mail provider in the last "
                "hour. Please try again later.",
                status=429,
            )
        if not slugs:
            return form_page("subscribe.html.j2", notice="Choose at least one list.", fields=fields)
        visit = Visit(page=str(request.url.path), client=client_network(client_address(request)))
        themes = fields.get("theme", [])
        await run_in_threadpool(lambda: signup.signup(email, slugs, themes, visit))
        return check_your_inbox(email)

    async def confirm_page(request: Request, token: str) -> Response:
        if request.method == "HEAD":  # link checkers peek with HEAD: show nothing, do nothing
            await run_in_threadpool(signup.confirm_target, token)
            return Response(status_code=200, headers=PRIVATE)
        target = await run_in_threadpool(signup.confirm_target, token)
        if target.state != "pending":  # opened again later: no button that would do nothing
            return confirmed_page(target.list_name, False, target.state, target.preferences_url)
        return pages.page("confirm.html.j2", list_name=target.list_name, action=request.url.path)

    def confirmed_page(list_name: str, changed: bool, state: str, preferences_url: str) -> Response:
        return pages.page(
            "confirmed.html.j2",
            list_name=list_name,
            changed=changed,
            state=state,
            preferences_url=pages.local(preferences_url),
        )

    async def confirm(request: Request, token: str) -> Response:
        visit = Visit(page=str(request.url.path), client=client_network(client_address(request)))
        done = await run_in_threadpool(lambda: signup.confirm(token, visit))
        return confirmed_page(done.list_name, done.changed, done.state, done.preferences_url)

    async def script(request: Request) -> Response:
        return Response(
            SIGNUP_SCRIPT.read_bytes(),
            media_type="text/javascript; charset=utf-8",
            headers={**SECURITY_HEADERS, "Cache-Control": "public, max-age=3600"},
        )

    return [
        Route("/", home, methods=["GET"]),
        Route("/subscribe", subscribe_form, methods=["GET"]),
        Route("/subscribe", subscribe, methods=["POST"]),
        Route("/confirm/{token}", pages.tokened(confirm_page), methods=["GET", "HEAD"]),
        Route("/confirm/{token}", pages.tokened(confirm), methods=["POST"]),
        Route("/static/signup.js", script, methods=["GET"]),
    ]


def _address_problem(message: str) -> str:
    """What is wrong with a typed address, in the reader's words."""
    if "non-ASCII letters before the @" in message:
        return (
            "We cannot send to addresses with letters like ö or é before the @ yet. If you "
            "have another address, please use that one."
        )
    return "That does not look like an e-mail address. Please check it."
