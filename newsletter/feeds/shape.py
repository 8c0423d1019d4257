"""Where an item's dek and key points are, read from its clean HTML in the shape briefings have.

A briefing opens with its dek (the first paragraph), then its key points as a short list, then
its sections. Feeds hold much else in lists (navigation, a widget's tabs, related stories, show
notes, a changelog), so a list becomes key points only where the item itself presents it as
such: right after the first paragraph, as the bullets that open an item before it (the
Guardian's standfirst), or under a heading that says so ("Key points", "What to know").

Everything here reads HTML cleaned by sanitize.clean_html: balanced tags from a short
allow-list, no comments, scripts or stray "<", regular enough for patterns and a tag scan.
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterator
from typing import NamedTuple

from newsletter.feeds.sanitize import plain_text, single_line

# Block elements of the allow-list, and the void ones that separate text without holding any.
_BLOCKS = frozenset(
    {"blockquote", "dl", "figure", "h2", "h3", "h4", "h5", "h6", "ol", "p", "pre", "table", "ul"}
)
_VOID = frozenset({"br", "hr", "img"})
_LISTS = frozenset({"ul", "ol"})
_TAG = re.compile(r"<(/?)([a-zA-Z][a-zA-Z0-9]*)[^>]*>")
_ANY_TAG = re.compile(r"<[^>]*>")
_BREAK = re.compile(r"<(?:br|/?(?:p|li|h[2-6]|td|th|tr|dt|dd|blockquote))\b[^>]*>", re.IGNORECASE)
_LIST_ITEM = re.compile(r"<li\b[^>]*>(.*?)(?=<li\b|$)", re.IGNORECASE | re.DOTALL)
_LEADING_LINK = re.compile(r"\s*(?:<(?:b|strong|em|i)>\s*)*<a\b", re.IGNORECASE)
_WORDS_TO_KEY_POINTS = (
    r"(?:the\s+)?(?:key\s+(?:points|takeaways|facts|findings)|takeaways|highlights"
    r"|what\s+(?:you\s+need\s+)?to\s+know|at\s+a\s+glance|in\s+brief|tl;?\s*dr|the\s+gist)"
)
# A heading, or a paragraph that is only (bold) words, saying the list under it is key points.
_KEY_POINTS_HEADING = re.compile(
    r"<(h[2-6]|p)\b[^>]*>\s*(?:<(?:b|strong|em|i|u)>\s*)*"
    + _WORDS_TO_KEY_POINTS
    + r"\s*[:.]?\s*(?:</(?:b|strong|em|i|u)>\s*)*</\1>",
    re.IGNORECASE,
)
# Labels of site furniture that come as one- or two-word list items.
_MENU_LABELS = frozenset(
    {
        "home", "menu", "search", "share", "tweet", "facebook", "twitter", "linkedin", "email",
        "e-mail", "print", "comments", "next", "previous", "prev", "more", "subscribe", "login",
        "register", "related", "tags", "categories", "archives", "top", "back", "newer", "older",
        "read more", "sign up", "log in", "sign in", "see all", "show more", "back to top",
    }
)  # fmt: skip


class Block(NamedTuple):
    kind: str  # a block tag's name, or "text" for a run of text and inline tags between blocks
    start: int
    end: int


def _blocks(fragment: str, start: int = 0) -> Iterator[Block]:
    """The top-level blocks from start on, in order; void tags come as blocks of their own.

    Clean HTML is balanced, so counting a block's own tag name finds its end. Stops at an end
    tag of a block it did not open: start was inside that block, and its content has ended.
    """
    run = start  # where the current run of text and inline tags began
    open_kind, open_at, depth = "", 0, 0
    for tag in _TAG.finditer(fragment, start):
        closing, name = tag.group(1), tag.group(2).lower()
        if depth:
            if name == open_kind:
                depth += -1 if closing else 1
                if not depth:
                    yield Block(open_kind, open_at, tag.end())
                    run = tag.end()
            continue
        if name not in _BLOCKS and name not in _VOID:
            continue  # an inline tag: part of the run
        if tag.start() > run:
            yield Block("text", run, tag.start())
        if closing:
            return
        if name in _VOID:
            yield Block(name, tag.start(), tag.end())
            run = tag.end()
        else:
            open_kind, open_at, depth = name, tag.start(), 1
    if not depth and len(fragment) > run:
        yield Block("text", run, len(fragment))


def _text(html_fragment: str) -> str:
    # Clean HTML: dropping its tags leaves the text (no comments, scripts or stray "<"); a
    # break between blocks is a space, an inline tag nothing ("<b>Bold</b>." stays "Bold.").
    return single_line(html.unescape(_ANY_TAG.sub("", _BREAK.sub(" ", html_fragment))))


# A time or a date alone: "8.13pm GMT", "20:13", "Updated 31 January 2018 20.13 GMT",
# "2018-01-31T20:13:00Z", "Wed, 31 Jan 2018". A live blog's summary often starts with one.
_DATE_WORDS = (
    r"jan(?:uary)?|feb(?:ruary)?|mar(?:ch)?|apr(?:il)?|may|june?|july?|aug(?:ust)?"
    r"|sept?(?:ember)?|oct(?:ober)?|nov(?:ember)?|dec(?:ember)?"
    r"|mon(?:day)?|tue(?:s|sday)?|wed(?:nesday)?|thu(?:rs|rsday)?|fri(?:day)?|sat(?:urday)?"
    r"|sun(?:day)?|today|yesterday|[ap]\.?m\.?|gmt|bst|utc|cet|cest|[ecmp][sd]?t|z"
    r"|updated|published|posted|first|last|at|on|of|st|nd|rd|th"
)
_BARE_TIME = re.compile(
    # One digit at a time: a quantifier inside the repeated group would backtrack
    # exponentially over a long run of digits followed by a letter.
    rf"(?:\d|(?<![a-z])(?:{_DATE_WORDS})(?![a-z])|(?<=\d)T(?=\d)|[\s.,:;/+\-–—|()])+",
    re.IGNORECASE,
)


def is_bare_time(text: str) -> bool:
    """Whether the text is only a time or a date (with at least one digit), nothing to read."""
    # The pattern first: on text to read it fails at the first word that is not a date's.
    return bool(_BARE_TIME.fullmatch(text)) and any(c.isdigit() for c in text)


def _real_text(text: str) -> bool:
    return bool(text) and not is_bare_time(text)


def first_paragraph(fragment: str) -> str:
    """Text of the first paragraph with something to read (not empty, not a bare time or
    date), or of the whole fragment when it has no <p>."""
    found = False
    for match in re.finditer(r"<p\b[^>]*>(.*?)</p>", fragment, flags=re.IGNORECASE | re.DOTALL):
        found = True
        text = plain_text(match.group(1))
        if _real_text(text):
            return text
    if found:
        return ""
    text = plain_text(fragment)
    return text if _real_text(text) else ""


def key_points(clean_fragment: str, *, limit: int = 5) -> list[str]:
    """The items of the list the item presents as its key points, or none.

    Under a key-points heading first (the item says so), else the list next to the first
    paragraph. A list found there still has to read as points: flat, not a list of links
    (navigation, related stories, a widget's tabs), not menu labels.
    """
    if "<ul" not in clean_fragment and "<ol" not in clean_fragment:
        return []  # most items: no list at all, nothing to scan
    for heading in _KEY_POINTS_HEADING.finditer(clean_fragment):
        block = next(_meaningful(clean_fragment, heading.end()), None)
        if block is not None and block.kind in _LISTS:
            points = _points(clean_fragment[block.start : block.end])
            if points:
                return points[:limit]
    points = _points(_opening_list(clean_fragment))
    return points[:limit]


def _meaningful(fragment: str, start: int = 0) -> Iterator[Block]:
    """The blocks a reader reads: not images, rules, line breaks, empty or time-only text."""
    for block in _blocks(fragment, start):
        if block.kind in _VOID or block.kind == "figure":
            continue
        if block.kind in ("text", "p") and not _real_text(_text(fragment[block.start : block.end])):
            continue
        yield block


def _opening_list(fragment: str) -> str:
    """The list right after the first paragraph, or the one that opens the item with the first
    paragraph right after it; "" when the item does not open that way."""
    blocks = _meaningful(fragment)
    first, second = next(blocks, None), next(blocks, None)
    if first is None or second is None:
        return ""
    if first.kind in ("p", "text") and second.kind in _LISTS:
        # "... with minor variations:": the list goes on with the paragraph's sentence.
        if _text(fragment[first.start : first.end]).endswith(":"):
            return ""
        return fragment[second.start : second.end]
    if first.kind in _LISTS and second.kind in ("p", "text"):
        return fragment[first.start : first.end]
    return ""


def _points(list_html: str) -> list[str]:
    """A list's items as key points, or none when it does not read as points."""
    inner = list_html[list_html.find(">") + 1 : list_html.rfind("</")]
    if not inner or "<ul" in inner or "<ol" in inner:
        return []  # show notes, outlines: key points are one flat list
    items = [item for item in _LIST_ITEM.findall(inner) if _text(item)]
    if len(items) < 2:
        return []  # one bullet is an aside or a quote, not a set of points
    if all(_LEADING_LINK.match(item) for item in items):
        return []  # a list of links: navigation, related stories, a widget's tabs
    points = [_text(item) for item in items]
    if any(_label(point) for point in points):
        return []
    return points


def _label(text: str) -> bool:
    """Site furniture as a list item: a menu word, or a short label all in capitals."""
    short = len(text.split()) < 3
    return short and (text.isupper() or text.casefold() in _MENU_LABELS)


MAX_WHY_CHARS = 300
_HEADINGS = frozenset({"h2", "h3", "h4", "h5", "h6"})
_WHY_LABEL = re.compile(
    r"why\s+(?:it|this)\s+matters|why\s+it(?:['’]s|\s+is)\s+important", re.IGNORECASE
)
_LABEL_END = re.compile(r"\s*[:.—–-]?\s*")
_EMPHASIS_FIRST = re.compile(r"<p\b[^>]*>\s*<(?:b|strong|em|i|u)>", re.IGNORECASE)


def why_it_matters(clean_fragment: str) -> str:
    """The first sentence under the item's "Why it matters" (or "Why this matters", "Why it's
    important"): a heading saying so, a paragraph of only those words, or a paragraph that
    opens with them as a label, in bold or with a colon. "" when the item has none."""
    if not _WHY_LABEL.search(clean_fragment):
        return ""  # most items: no such label at all, nothing to scan
    for block in _blocks(clean_fragment):
        if block.kind not in _HEADINGS and block.kind != "p":
            continue
        html_block = clean_fragment[block.start : block.end]
        text = _text(html_block)
        label = _WHY_LABEL.match(text)
        if label is None:
            continue
        after = _LABEL_END.match(text, label.end())
        rest = text[after.end() if after else label.end() :]
        if not rest:  # the label alone: what follows is the next block
            following = next(_meaningful(clean_fragment, block.end), None)
            if following is None or following.kind in _HEADINGS:
                continue
            rest = _text(clean_fragment[following.start : following.end])
        elif block.kind in _HEADINGS:
            continue  # "Why it matters to Europe's banks": a section's own title
        elif not (_EMPHASIS_FIRST.match(html_block) or text[label.end() :].lstrip()[:1] in ":—–-"):
            continue  # "Why it matters so much is ...": a sentence, not a label
        sentence = _first_sentence(rest)
        if sentence:
            return _cut(sentence, MAX_WHY_CHARS)
    return ""


# Words before a full stop that do not end a sentence ("Dr. Ångström", "U.S. officials").
_ABBREVIATIONS = frozenset(
    {"mr", "mrs", "ms", "dr", "prof", "st", "sr", "jr", "inc", "ltd", "co", "corp", "vs", "no",
     "e.g", "i.e", "etc", "approx", "gen", "gov", "sen", "rep"}
)  # fmt: skip
_SENTENCE_END = re.compile(r"[.!?…]+[\"'”’)\]]*\s+|[。！？]")


def _first_sentence(text: str) -> str:
    for end in _SENTENCE_END.finditer(text):
        word = text[: end.start()].rsplit(None, 1)[-1] if text[: end.start()].strip() else ""
        if word.casefold().rstrip(".") in _ABBREVIATIONS or (len(word) == 1 and word.isupper()):
            continue  # an abbreviation or an initial ("J. Smith")
        following = text[end.end() : end.end() + 1]
        if not following or following.isupper() or following.isdigit() or following in "\"'“‘(":
            return text[: end.end()].strip()
    return text.strip()


def _cut(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    return text[: limit - 1].rsplit(" ", 1)[0].rstrip(",;:—– ") + "…"
