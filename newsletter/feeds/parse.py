"""Bytes -> plain parsed values. The only module that imports feedparser."""

from __future__ import annotations

import calendar
import codecs
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import feedparser
import feedparser.api
from feedparser.namespaces import mediarss

from newsletter.errors import FeedError
from newsletter.feeds.images import MediaRef

_SAX_DRIVER = "newsletter.feeds.expat_buffered"
if _SAX_DRIVER not in feedparser.api.PREFERRED_XML_PARSERS:
    # feedparser asks xml.sax.make_parser for the first driver in this list that imports.
    feedparser.api.PREFERRED_XML_PARSERS.insert(0, _SAX_DRIVER)


@dataclass(frozen=True)
class ParsedEntry:
    guid: str
    link: str
    title: str
    summary_html: str
    content_html: str
    tags: tuple[str, ...]
    published: datetime | None
    source_name: str
    source_url: str
    media: tuple[MediaRef, ...] = ()  # the item's media:content, media:thumbnail, enclosures


@dataclass(frozen=True)
class ParsedFeed:
    title: str
    link: str
    entries: list[ParsedEntry] = field(default_factory=list)


def parse_feed(data: bytes, *, name: str, headers: Mapping[str, str] | None = None) -> ParsedFeed:
    """Parse feed bytes without feedparser's own sanitizer (we clean once, with nh3)."""
    data = _LEADING_BLANKS.sub(rb"\1", data, count=1)
    parsed = feedparser.parse(
        data,
        response_headers=with_detected_charset(data, headers or {}),
        sanitize_html=False,
        resolve_relative_uris=False,
    )
    if not parsed.entries and (parsed.get("bozo") or not parsed.get("version")):
        reason = parsed.get("bozo_exception") or "no RSS or Atom elements in it"
        raise FeedError(
            f"feed {name!r}: could not be read as RSS or Atom: {reason}",
            hint="check that the URL points to the feed itself, not to a web page",
        )
    feed = parsed.feed
    return ParsedFeed(
        title=str(feed.get("title", "") or ""),
        link=str(feed.get("link", "") or ""),
        entries=[_entry(raw) for raw in parsed.entries],
    )


# Blank lines before the XML declaration (a PHP template's) make it ill-formed XML, and
# feedparser then falls back to its lenient parser: slower, and worse at namespaces.
_LEADING_BLANKS = re.compile(rb"^(\xef\xbb\xbf)?[ \t\r\n]+(?=<\?xml)")
_XML_ENCODING = re.compile(rb"^\s*<\?xml[^>]*encoding\s*=", re.IGNORECASE)
_BOMS = (
    codecs.BOM_UTF8,
    codecs.BOM_UTF16_LE,
    codecs.BOM_UTF16_BE,
    codecs.BOM_UTF32_LE,
    codecs.BOM_UTF32_BE,
)


def with_detected_charset(data: bytes, headers: Mapping[str, str]) -> dict[str, str]:
    """The response headers, plus a detected charset when nothing declares one and not UTF-8.

    feedparser assumes UTF-8 when neither HTTP nor the XML declaration names an encoding; many
    real feeds are windows-1252 or legacy Asian encodings without saying so.
    """
    result = {key.lower(): value for key, value in headers.items()}
    content_type = result.get("content-type", "")
    if "charset=" in content_type.lower() or data.startswith(_BOMS) or _XML_ENCODING.match(data):
        return result
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        # Imported here: few feeds need it, and every parser process would import it first.
        import charset_normalizer

        best = charset_normalizer.from_bytes(data[:65536]).best()
        if best is not None:
            media_type = content_type.split(";")[0].strip() or "application/xml"
            result["content-type"] = f"{media_type}; charset={best.encoding}"
    return result


def _entry(raw: Any) -> ParsedEntry:
    content = raw.get("content") or []
    content_html = "".join(str(part.get("value", "")) for part in content)
    source = raw.get("source") or {}
    return ParsedEntry(
        guid=str(raw.get("id", "") or ""),
        link=str(raw.get("link", "") or ""),
        title=str(raw.get("title", "") or ""),
        summary_html=str(dict.get(raw, "summary") or dict.get(raw, _DESCRIPTION) or ""),
        content_html=content_html,
        tags=tuple(str(tag.get("term") or "") for tag in raw.get("tags", []) if tag.get("term")),
        # dict.get: feedparser's own .get maps a missing key to the other one, with a warning.
        published=_when(dict.get(raw, "published_parsed") or dict.get(raw, "updated_parsed")),
        source_name=str(source.get("title", "") or ""),
        # RSS's <source url="..."> (feedparser's href). An Atom <source>'s link is the home
        # page of the feed the entry came from, never the article: the entry's own link is.
        source_url=str(source.get("href") or ""),
        media=_media(raw),
    )


def _media(raw: Any) -> tuple[MediaRef, ...]:
    # An item-level media:description or media:title describes the item's media.
    text = str(dict.get(raw, _DESCRIPTION) or dict.get(raw, _ITEM_MEDIA_TEXT) or "")
    media = [
        MediaRef(
            "content",
            str(item.get("url") or ""),
            medium=str(item.get("medium") or ""),
            type=str(item.get("type") or ""),
            width=str(item.get("width") or ""),
            height=str(item.get("height") or ""),
            text=str(item.get(_DESCRIPTION) or item.get(_TITLE) or text),
        )
        for item in dict.get(raw, "media_content") or []
    ]
    media += [
        MediaRef(
            "thumbnail",
            str(item.get("url") or ""),
            width=str(item.get("width") or ""),
            height=str(item.get("height") or ""),
            text=text,
        )
        for item in dict.get(raw, "media_thumbnail") or []
    ]
    media += [
        MediaRef("enclosure", str(item.get("href") or ""), type=str(item.get("type") or ""))
        for item in dict.get(raw, "enclosures") or []
    ]
    return tuple(ref for ref in media if ref.url)


# feedparser reads a media:description as the item's description, and one after the item's
# own as its content (the body became the photo's caption), and keeps nothing of either for
# the media, where they describe an image (its alt text). Here a media:description is the
# media's own; it is the item's summary only when the item has none (a video's, in YouTube's
# feeds). A media:title stays feedparser's (never over the item's own title) and is kept for
# the media too.
_DESCRIPTION = "newsletter_media_description"  # on a media:content, and on the item
_TITLE = "newsletter_title"  # on a media:content
_ITEM_MEDIA_TEXT = "newsletter_media_text"  # an item-level media:title


def _end_media_title(parser: Any) -> None:
    if parser.elementstack and parser.inentry and not parser.insource:
        pieces = parser.elementstack[-1][2]
        text = "".join(p.decode("utf-8", "replace") if isinstance(p, bytes) else p for p in pieces)
        media = getattr(parser, "_newsletter_media", None)
        if media is not None:
            media.setdefault(_TITLE, text)
        elif text.strip():
            parser.entries[-1].setdefault(_ITEM_MEDIA_TEXT, text)
    _ENDS_MEDIA_TITLE(parser)


def _start_media_description(parser: Any, attrs_d: Any) -> None:
    # Stored by feedparser under this name, as an element it does not know would be.
    parser.push_content(_DESCRIPTION, attrs_d, "text/plain", 1)


def _end_media_description(parser: Any) -> None:
    text = parser.pop_content(_DESCRIPTION)
    media = getattr(parser, "_newsletter_media", None)
    if media is not None and text:
        media.setdefault(_DESCRIPTION, text)


def _start_media_content(parser: Any, attrs_d: Any) -> None:
    _STARTS_MEDIA_CONTENT(parser, attrs_d)
    context = parser._get_context()
    parser._newsletter_media = (
        context["media_content"][-1] if context.get("media_content") else None
    )


def _end_media_content(parser: Any) -> None:
    parser._newsletter_media = None


_STARTS_MEDIA_CONTENT = mediarss.Namespace._start_media_content
_ENDS_MEDIA_TITLE = mediarss.Namespace._end_media_title
if not hasattr(mediarss.Namespace, "_end_media_content"):
    mediarss.Namespace._start_media_content = _start_media_content
    mediarss.Namespace._end_media_content = _end_media_content
    mediarss.Namespace._end_media_title = _end_media_title
    mediarss.Namespace._start_media_description = _start_media_description
    mediarss.Namespace._end_media_description = _end_media_description


def _when(value: Any) -> datetime | None:
    if not value:
        return None
    try:
        return datetime.fromtimestamp(calendar.timegm(value), tz=UTC)
    except (OverflowError, ValueError, TypeError):
        return None
