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
    if not within_limits(fragment):
        text = _flat_text(fragment)
        return f"<p>{html.escape(text, quote=False)}</p>" if text else ""
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


def plain_text(fragment: str) -> str:
    """Text of an HTML fragment (or of plain text with entities) on one line, no control chars."""
    if "<" in fragment:
        if not within_limits(fragment):
            return _flat_text(fragment)
        fragment = _TEXT_ONLY.clean(_BLOCK_BOUNDARY.sub(" <", fragment))
    return single_line(html.unescape(fragment))


# nh3's parser (html5ever) walks the open elements at every block tag, and at later tags opens
# again each formatting element that an end tag of its parent closed (up to three identical
# ones: the HTML standard's limit): 1 MB of nested <div>s took 107 s, and 1 MB re-opening 100
# distinct <b>s took 2 GB. A linear scan bounds both before nh3 sees a fragment; past them,
# the fragment is taken as plain text. The deepest fragment in the feed corpus is 22 deep.
MAX_DEPTH = 100
_REOPEN_ALLOWANCE = 2000  # plus one re-opened element per two characters of the fragment
_FEW_TAGS = 60  # fewer tags than this stay within both limits


def _names(names: str) -> frozenset[bytes]:
    return frozenset(name.encode() for name in names.split())


# Elements that never stay open around others: void ones, and those the next of their kind
# (or the end of their parent) closes. Their end tags change nothing either.
_NOT_NESTING = _names(
    "area base basefont bgsound br col embed frame hr image img input keygen link meta param "
    "source track wbr body caption colgroup dd dt head html li option p tbody td tfoot th "
    "thead tr"
)
_NOT_NESTING |= {b"/" + name for name in _NOT_NESTING}
_FORMATTING = _names("a b big code em font i nobr s small strike strong tt u")
_ONE_AT_A_TIME = _names("a nobr")  # a second one ends the first
# Bytes patterns: ASCII only, as HTML tag names are, and bytes.lower() keeps every offset.
_TAG_NAME = re.compile(rb"<(/?[a-z][a-z0-9]*)")  # run on the lower-cased fragment
_FORMATTING_START = re.compile(
    rb"<(?:" + b"|".join(sorted(_FORMATTING)) + rb")(?![a-z0-9])[^<>]*", re.IGNORECASE
)


def within_limits(fragment: str) -> bool:
    """Whether nh3 cleans this fragment in about linear time and memory (every real feed does).

    An estimate on the safe side of html5ever's work: the open elements as a stack, where an
    end tag closes what was opened inside its element, and the formatting elements closed that
    way, which the parser opens again at later tags until their own end tag.
    """
    if fragment.count("<") < _FEW_TAGS:
        return True
    allowance = _REOPEN_ALLOWANCE + len(fragment) // 2
    raw = fragment.encode("utf-8", "surrogatepass")
    stack: list[bytes] = []
    on_stack: dict[bytes, int] = {}
    formatting_on_stack: list[int] = []  # their numbers among the formatting start tags
    formatting_seen = 0
    start_tags: list[bytes] = []  # read only when a formatting element is closed early
    closed_early: dict[bytes, list[bytes]] = {}  # element -> its start tags, in order
    identical: dict[bytes, int] = {}  # start tag -> how many of it are closed early
    reopened = 0  # what each later tag opens again: three identical start tags at most

    def end(name: bytes) -> None:
        nonlocal reopened, start_tags
        if on_stack.get(name):
            while (top := stack.pop()) != name:
                on_stack[top] -= 1
                if top in _FORMATTING:
                    start_tags = start_tags or _FORMATTING_START.findall(raw)
                    tag = start_tags[formatting_on_stack.pop()]
                    closed_early.setdefault(top, []).append(tag)
                    identical[tag] = identical.get(tag, 0) + 1
                    if identical[tag] <= 3:
                        reopened += 1
            on_stack[name] -= 1
            if name in _FORMATTING:
                formatting_on_stack.pop()
        elif closed_early.get(name):
            tag = closed_early[name].pop()
            identical[tag] -= 1
            if identical[tag] < 3:
                reopened -= 1

    for token in _TAG_NAME.findall(raw.lower()):
        if reopened:
            allowance -= reopened
            if allowance < 0:
                return False
        if token in _NOT_NESTING:
            continue
        if token[0] == ord("/"):
            end(token[1:])
            continue
        if token in _FORMATTING:
            if token in _ONE_AT_A_TIME and (on_stack.get(token) or closed_early.get(token)):
                end(token)
            formatting_on_stack.append(formatting_seen)
            formatting_seen += 1
        stack.append(token)
        on_stack[token] = on_stack.get(token, 0) + 1
        if len(stack) > MAX_DEPTH:
            return False
    return True


# Linear: a "<" without its ">" ends at the next "<".
_ANY_TAG = re.compile(r"<[^<>]*>?")


def _flat_text(fragment: str) -> str:
    """The text of a fragment past the limits, without nh3: every tag dropped, on one line."""
    return single_line(html.unescape(_ANY_TAG.sub(" ", fragment)))


_UNSAFE_IN_URL = re.compile(r"[\x00-\x20\x7f]")


@functools.lru_cache(maxsize=1024)  # a feed's own link is resolved again for every entry
def web_url(value: str, base: str = "") -> str:
    """An absolute http(s) URL made from a feed value, or "" (javascript:, data:, junk)."""
    # Tabs and line breaks inside a URL are dropped, as browsers do: feeds wrap long links.
    value = value.strip().replace("\n", "").replace("\r", "").replace("\t", "")
    if not value:
        return ""
    try:
        candidate = urljoin(base, value) if base else value
        parts = urlsplit(candidate)
    except ValueError:  # "http://[x": one broken URL must not stop the feed's other entries
        return ""
    if parts.scheme.lower() not in ("http", "https") or not parts.netloc:
        return ""
    return "" if _UNSAFE_IN_URL.search(candidate) else candidate


# Invisible characters that change how the rest is shown: bidi embeddings, overrides and
# isolates make "moc.elgoog" read "google.com"; zero-width ones hide inside look-alike words.
# A zero-width joiner between two emoji (a family, a flag) is how those are written: kept.
_EMOJI = "\u2600-\u27bf\ufe0f\U0001f000-\U0001faff"
_INVISIBLE = re.compile(
    f"[\u200b\u200c\u200e\u200f\u202a-\u202e\u2060\u2066-\u2069\ufeff]"
    f"|(?<![{_EMOJI}])\u200d|\u200d(?![{_EMOJI}])"
)


def visible_line(text: str) -> str:
    """Text as it may go into a header or a name: one line, no controls, no bidi controls or
    zero-width characters (letters, accents, CJK and emoji stay as they are)."""
    return single_line(_INVISIBLE.sub("", text))


def single_line(text: str) -> str:
    """Collapse white space and drop control characters (no CR/LF can reach a header)."""
    return " ".join(_CONTROL.sub(" ", text).split())
