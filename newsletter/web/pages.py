"""What every handler shares: pages from templates/web/ with the security headers, the answer to
a bad link, small request bodies and form fields, and telling our own pages' POSTs from
another site's."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from urllib.parse import parse_qs, urlsplit

from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from newsletter.config import Settings
from newsletter.errors import BadToken, ReaderGone
from newsletter.render.templating import render_page

SECURITY_HEADERS = {
    # Token URLs must not leak to other sites; pages need no scripts but the signup form's own.
    "Referrer-Policy": "no-referrer",
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; "
    "img-src 'self' https:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
}
PRIVATE = {"Cache-Control": "no-store", **SECURITY_HEADERS}
WITH_OWN_SCRIPT = {
    **PRIVATE,
    "Content-Security-Policy": SECURITY_HEADERS["Content-Security-Policy"] + "; script-src 'self'",
}

Handler = Callable[[Request], Awaitable[Response]]
_BODY_OPENS = re.compile(r"<body[^>]*>", re.IGNORECASE)
Fields = dict[str, list[str]]


class Pages:
    def __init__(self, settings: Settings, standards_href: str) -> None:
        self.settings = settings
        self.standards_href = standards_href  # a path when we serve it, else its URL

    def page(
        self,
        name: str,
        status: int = 200,
        *,
        private: bool = True,
        headers: dict[str, str] | None = None,
        **context: object,
    ) -> HTMLResponse:
        chosen = headers or (PRIVATE if private else SECURITY_HEADERS)
        return HTMLResponse(
            render_page(self.settings, name, standards_href=self.standards_href, **context),
            status_code=status,
            headers=chosen,
        )

    def edition(self, html: str) -> HTMLResponse:
        """A sent issue as the archive shows it: the e-mail itself, under the site's bar."""
        bar = render_page(self.settings, "_edition_bar.html.j2", standards_href=self.standards_href)
        # The issue is the page's main content: screen readers jump past the bar to it.
        framed = _BODY_OPENS.sub(lambda opened: opened.group(0) + bar + "<main>", html, count=1)
        return HTMLResponse(
            framed.replace("</body>", "</main></body>", 1), headers=SECURITY_HEADERS
        )

    def message(
        self, heading: str, text: str, status: int = 200, link: str = "", link_text: str = ""
    ) -> HTMLResponse:
        return self.page(
            "message.html.j2", status, heading=heading, text=text, link=link, link_text=link_text
        )

    def invalid(self) -> HTMLResponse:
        return self.message(
            "This link is not valid",
            "It may have been cut short or changed. Use the link in the most recent "
            "e-mail you received from us.",
            status=400,
        )

    def tokened(self, handler: Callable[[Request, str], Awaitable[Response]]) -> Handler:
        """A handler of /path/<token>: a token that is not ours answers the 400 page."""

        async def wrapped(request: Request) -> Response:
            try:
                return await handler(request, request.path_params["token"])
            except ReaderGone:  # a 200: for a one-click unsubscribe, that is the truth too
                return self.message(
                    "Nothing is stored about this address",
                    "Everything about it was deleted on request, so there is nothing to "
                    "unsubscribe from or change, and nothing more is sent to it.",
                )
            except BadToken:
                return self.invalid()

        return wrapped

    def local(self, url: str) -> str:
        """A URL of this site as a path, so links on its pages work wherever it is served
        (a trial on 127.0.0.1 as well as at base_url); mail keeps absolute URLs."""
        base = self.settings.publication.base_url
        return url[len(base) :] if url.startswith(base + "/") else url

    def too_large(self) -> HTMLResponse:
        return self.message("That was too much", "The form sent more than it can hold.", 413)


def cross_site(request: Request, base_url: str) -> bool:
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


async def small_body(request: Request, limit: int = 4096) -> str | None:
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


async def form_fields(request: Request, limit: int = 16_384) -> Fields | None:
    """An urlencoded form's fields (each a list of values); None when the body is too big."""
    body = await small_body(request, limit)
    if body is None:
        return None
    try:
        return parse_qs(body, keep_blank_values=True, max_num_fields=200)
    except ValueError:  # more fields than any of our forms has
        return None


def first(fields: Fields, name: str, limit: int = 1000) -> str:
    values = fields.get(name) or [""]
    return values[0][:limit]


def client_address(request: Request) -> str | None:
    return request.client.host if request.client else None
