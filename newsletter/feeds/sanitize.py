"""HTML from feeds -> HTML safe for an inbox, and plain text for titles and the text part."""

from __future__ import annotations

import html
import re
from html.parser import HTMLParser
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
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]+")
_SPACE = re.compile(r"\s+")


def clean_html(fragment: str, *, base_url: str = "") -> str:
    """Keep an email-safe allow-list of tags and attributes; make links and images absolute."""

    def absolute(tag: str, attribute: str, value: str) -> str | None:
        if attribute not in _URL_ATTRIBUTES:
            return value
        resolved = urljoin(base_url, value.strip()) if base_url else value.strip()
        return resolved if urlsplit(resolved).scheme.lower() in URL_SCHEMES else None

    return nh3.clean(
        fragment,
        tags=set(ALLOWED_TAGS),
        attributes={tag: set(names) for tag, names in ALLOWED_ATTRIBUTES.items()},
        url_schemes=set(URL_SCHEMES),
        attribute_filter=absolute,
        link_rel="noopener noreferrer",
        strip_comments=True,
    ).strip()


class _TextExtractor(HTMLParser):
    _BLOCKS = frozenset({"p", "br", "li", "div", "h1", "h2", "h3", "h4", "h5", "h6", "tr"})
    _SKIP = frozenset({"script", "style", "template"})

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._skipping = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self._SKIP:
            self._skipping += 1
        elif tag in self._BLOCKS:
            self.parts.append(" ")

    def handle_endtag(self, tag: str) -> None:
        if tag in self._SKIP and self._skipping:
            self._skipping -= 1
        elif tag in self._BLOCKS:
            self.parts.append(" ")

    def handle_data(self, data: str) -> None:
        if not self._skipping:
            self.parts.append(data)


def plain_text(fragment: str) -> str:
    """Text of an HTML fragment (or of plain text with entities) on one line, no control chars."""
    if "<" in fragment:
        extractor = _TextExtractor()
        extractor.feed(fragment)
        extractor.close()
        text = "".join(extractor.parts)
    else:
        text = html.unescape(fragment)
    return single_line(text)


def single_line(text: str) -> str:
    """Collapse white space and drop control characters (no CR/LF can reach a header)."""
    return _SPACE.sub(" ", _CONTROL.sub(" ", text)).strip()


class _ListItems(HTMLParser):
    """Collects the text of each <li> in the first list of a fragment: a briefing's key points."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.items: list[str] = []
        self._depth = 0
        self._current: list[str] | None = None
        self._done = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if self._done:
            return
        if tag in ("ul", "ol"):
            self._depth += 1
        elif tag == "li" and self._depth == 1:
            self._current = []

    def handle_endtag(self, tag: str) -> None:
        if self._done:
            return
        if tag == "li" and self._depth == 1 and self._current is not None:
            text = single_line("".join(self._current))
            if text:
                self.items.append(text)
            self._current = None
        elif tag in ("ul", "ol") and self._depth:
            self._depth -= 1
            self._done = self._depth == 0

    def handle_data(self, data: str) -> None:
        if self._current is not None:
            self._current.append(data)


def key_points(fragment: str, *, limit: int = 5) -> list[str]:
    """The items of the first bulleted list, which briefings use for their key points."""
    parser = _ListItems()
    parser.feed(fragment)
    parser.close()
    return parser.items[:limit]


def first_paragraph(fragment: str) -> str:
    """Text of the first <p>, or of the whole fragment when it has none."""
    match = re.search(r"<p\b[^>]*>(.*?)</p>", fragment, flags=re.IGNORECASE | re.DOTALL)
    return plain_text(match.group(1) if match else fragment)
