"""HTML from feeds -> HTML safe for an inbox, and plain text for titles and the text part."""

from __future__ import annotations

import functools
import html
import re
from contextvars import ContextVar
from urllib.parse import urljoin, urlsplit

import nh3

ALLOWED_TAGS = frozenset(
    {
        "a", "abbr", "b", "blockquote", "br", "caption", "cite", "code", "dd", "del", "dl", "dt",
        "em", "figcaption", "figure", "h2", "h3", "h4", "h5", "h6", "hr", "i", "img", "ins", "li",
        "ol", "p", "pre", "q", "s", "small", "strong", "sub", "sup", "table", "tbody", "td",
        "tfoot", "th", "thead", "tr", "u", "ul",
    }
)  # fmt: skip
ALLOWED_ATTRIBUTES = {
    "a": {"href", "title"},
    "img": {"src", "alt", "width", "height", "title"},
    "abbr": {"title"},
    "td": {"colspan", "rowspan"},
    "th": {"colspan", "rowspan", "scope"},
}
URL_SCHEMES = frozenset({"http", "https", "mailto"})
_URL_ATTRIBUTES = frozenset({"href", "src"})
# The C0 and C1 controls that are not white space (str.split() takes care of those).
_CONTROL = re.compile(r"[\x00-\x08\x0e-\x1b\x7f-\x84\x86-\x9f]")


def clean_html(fragment: str, *, base_url: str = "") -> str:
    """Keep an email-safe allow-list of tags and attributes; make links and images absolute."""
    token = _base_url.set(base_url)
    try:
        return _EMAIL_SAFE.clean(fragment).strip()
    finally:
        _base_url.reset(token)


# The base URL relative links resolve against, for the cleaner built once below: building an
# nh3 cleaner per fragment cost a third of cleaning it.
_base_url: ContextVar[str] = ContextVar("base_url", default="")


def _absolute(tag: str, attribute: str, value: str) -> str | None:
    if attribute not in _URL_ATTRIBUTES:
        return value
    if value.startswith(("https://", "http://")):  # the common case, without urljoin
        return value
    base_url = _base_url.get()
    resolved = urljoin(base_url, value.strip()) if base_url else value.strip()
    return resolved if urlsplit(resolved).scheme.lower() in URL_SCHEMES else None


_EMAIL_SAFE = nh3.Cleaner(
    tags=set(ALLOWED_TAGS),
    attributes={tag: set(names) for tag, names in ALLOWED_ATTRIBUTES.items()},
    url_schemes=set(URL_SCHEMES),
    attribute_filter=_absolute,
    link_rel="noopener noreferrer",
    strip_comments=True,
)
# No tags at all: every tag goes, and script and style with their content.
_TEXT_ONLY = nh3.Cleaner(tags=set(), attributes={}, strip_comments=True)

_BLOCK_BOUNDARY = re.compile(r"<(?=/?(?:p|br|li|div|h[1-6]|tr|td|blockquote)\b)", re.IGNORECASE)
_FIRST_LIST = re.compile(r"<(ul|ol)\b[^>]*>(.*?)</\1>", re.IGNORECASE | re.DOTALL)
_TAG = re.compile(r"<[^>]*>")
_LIST_ITEM = re.compile(r"<li\b[^>]*>(.*?)(?=<li\b|$)", re.IGNORECASE | re.DOTALL)


def plain_text(fragment: str) -> str:
    """Text of an HTML fragment (or of plain text with entities) on one line, no control chars."""
    if "<" in fragment:
        fragment = _TEXT_ONLY.clean(_BLOCK_BOUNDARY.sub(" <", fragment))
    return single_line(html.unescape(fragment))


_UNSAFE_IN_URL = re.compile(r"[\x00-\x20\x7f]")


@functools.lru_cache(maxsize=1024)  # a feed's own link is resolved again for every entry
def web_url(value: str, base: str = "") -> str:
    """An absolute http(s) URL made from a feed value, or "" (javascript:, data:, junk)."""
    # Tabs and line breaks inside a URL are dropped, as browsers do: feeds wrap long links.
    value = value.strip().replace("\n", "").replace("\r", "").replace("\t", "")
    if not value:
        return ""
    candidate = urljoin(base, value) if base else value
    parts = urlsplit(candidate)
    if parts.scheme.lower() not in ("http", "https") or not parts.netloc:
        return ""
    return "" if _UNSAFE_IN_URL.search(candidate) else candidate


def single_line(text: str) -> str:
    """Collapse white space and drop control characters (no CR/LF can reach a header)."""
    return " ".join(_CONTROL.sub(" ", text).split())


def key_points(clean_fragment: str, *, limit: int = 5) -> list[str]:
    """The items of the first bulleted list, which briefings use for their key points.

    Takes HTML already cleaned by clean_html, whose markup is regular enough for a pattern;
    the first closing list tag ends the key points, so a nested list cuts them short.
    """
    found = _FIRST_LIST.search(clean_fragment)
    if not found:
        return []
    # Clean HTML has no comments, scripts or stray "<", so dropping tags leaves the text.
    items = (
        single_line(html.unescape(_TAG.sub("", item)))
        for item in _LIST_ITEM.findall(found.group(2))
    )
    return [item for item in items if item][:limit]


def first_paragraph(fragment: str) -> str:
    """Text of the first <p>, or of the whole fragment when it has none."""
    match = re.search(r"<p\b[^>]*>(.*?)</p>", fragment, flags=re.IGNORECASE | re.DOTALL)
    return plain_text(match.group(1) if match else fragment)
