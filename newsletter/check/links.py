"""The link checker: every distinct URL once, HEAD first and GET when HEAD is refused,
redirects followed by hand, a few at a time, each within its own deadline and all within one.

The connections are the feed fetcher's (`feeds.network`): its deadline holds however slowly a
server trickles, where httpx's own timeouts are per read. Only what the links name is asked;
no address is refused, since the editor's own links may well be on this machine.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass

import httpx

from newsletter import USER_AGENT
from newsletter.check.findings import Level
from newsletter.feeds.fetch import FetchRules
from newsletter.feeds.network import DeadlineTransport, Download, current_download

# Servers that do not do HEAD answer one of these (or hang up), some even 404: a GET says what
# a reader's browser gets.
HEAD_REFUSED = frozenset({403, 404, 405, 501})
TOO_MANY_REQUESTS = 429


@dataclass(frozen=True)
class LinkLimits:
    concurrency: int = 8  # requests at once
    per_url: float = 10.0  # seconds for one URL, its redirects and its GET after a HEAD too
    total: float = 60.0  # seconds for the whole check
    redirects: int = 5


@dataclass(frozen=True)
class LinkResult:
    url: str
    level: Level | None  # None: the link works
    problem: str = ""  # "answered 404", "did not answer within 10 s", ...
    status: int | None = None
    final_url: str = ""  # where the redirects led

    @property
    def ok(self) -> bool:
        return self.level is None


class _Unfollowable(Exception):
    """A redirect to something that is not an http(s) URL, or too many of them."""


Progress = Callable[[int, int], None]  # (done, total)


def check_links(
    urls: Sequence[str],
    limits: LinkLimits = LinkLimits(),
    progress: Progress | None = None,
) -> list[LinkResult]:
    """Each distinct URL once, in the order given; `progress` hears of each one done."""
    distinct = list(dict.fromkeys(urls))
    results: dict[str, LinkResult] = {}
    ends_at = time.monotonic() + limits.total
    with (
        httpx.Client(
            transport=DeadlineTransport(),
            timeout=httpx.Timeout(limits.per_url),
            headers={"User-Agent": f"{USER_AGENT} link-check", "Accept": "*/*"},
            follow_redirects=False,  # by hand: each hop counted and within the deadline
        ) as client,
        ThreadPoolExecutor(max(1, limits.concurrency), thread_name_prefix="links") as pool,
    ):
        futures = [pool.submit(_check, client, url, limits, ends_at) for url in distinct]
        for done, future in enumerate(as_completed(futures), 1):
            result = future.result()
            results[result.url] = result
            if progress:
                progress(done, len(distinct))
    return [results[url] for url in distinct]


def _check(client: httpx.Client, url: str, limits: LinkLimits, ends_at: float) -> LinkResult:
    started = time.monotonic()
    if started >= ends_at:
        return LinkResult(url, "error", f"not checked: the check's {limits.total:g} s ran out")
    own_end = started + limits.per_url
    download = Download(min(own_end, ends_at), None, FetchRules())
    token = current_download.set(download)
    try:
        return _result(url, *_head_then_get(client, url, limits))
    except httpx.TimeoutException:
        if download.ends_at < own_end:
            problem = f"not checked in time: the check's {limits.total:g} s ran out"
        else:
            problem = f"did not answer within {limits.per_url:g} s"
        return LinkResult(url, "error", problem)
    except httpx.HTTPError as exc:
        return LinkResult(url, "error", f"cannot be reached: {_reason(exc)}")
    except httpx.InvalidURL as exc:
        return LinkResult(url, "error", f"is not a URL that can be fetched: {exc}")
    except _Unfollowable as exc:
        return LinkResult(url, "error", str(exc))
    finally:
        current_download.reset(token)


def _reason(exc: httpx.HTTPError) -> str:
    cause: BaseException | None = exc
    while cause is not None:  # httpx's error wraps httpcore's, which wraps the socket's
        if isinstance(cause, socket.gaierror):
            try:
                host = exc.request.url.host  # a redirect's target, maybe
            except RuntimeError:  # httpx raises this for an error with no request
                return "its host does not resolve"
            return f"{host} does not resolve"
        cause = cause.__cause__ or cause.__context__
    return str(exc) or type(exc).__name__


def _head_then_get(client: httpx.Client, url: str, limits: LinkLimits) -> tuple[int, str]:
    try:
        status, final = _follow(client, "HEAD", url, limits)
    except httpx.TimeoutException:
        raise  # a GET would wait as long again, past the URL's deadline
    except httpx.HTTPError:
        status, final = 0, url  # some servers hang up on HEAD: GET decides
    if status == 0 or status in HEAD_REFUSED:
        status, final = _follow(client, "GET", url, limits)
    return status, final


def _follow(client: httpx.Client, method: str, url: str, limits: LinkLimits) -> tuple[int, str]:
    """The status at the end of the redirects, and where that is. A GET's body is not read:
    the status is the answer, and closing the response hangs up on the rest."""
    target = httpx.URL(url)
    for _ in range(limits.redirects + 1):
        with client.stream(method, target) as response:
            if not response.has_redirect_location:
                return response.status_code, str(target)
            location = response.headers["location"]
        target = target.join(location)
        if target.scheme not in ("http", "https"):
            raise _Unfollowable(f"redirects to {location}, not an http(s) URL")
    raise _Unfollowable(f"redirects more than {limits.redirects} times")


def _result(url: str, status: int, final: str) -> LinkResult:
    if status < 400:
        return LinkResult(url, None, status=status, final_url=final)
    where = "" if final == url else f" (redirected to {final})"
    # Too many requests: the link is there, the server only wants fewer of them at once.
    level: Level = "warning" if status == TOO_MANY_REQUESTS else "error"
    return LinkResult(url, level, f"answered {status}{where}", status, final)
