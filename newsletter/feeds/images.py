"""A briefing's story image: chosen from what the feed offers, and sized from the image's bytes.

Pure functions with light imports: the choice runs in the parser processes, and image_size on
the first bytes the fetch's probe reads (feeds/probe.py).

An e-mail needs an image's width and height to lay it out before it loads, so an image is only
kept with both; feeds often give only a width or nothing, and the probe reads the rest.
"""

from __future__ import annotations

import html
import re
import struct
from collections.abc import Iterable
from typing import Literal, NamedTuple
from urllib.parse import urlsplit

from newsletter.feeds.sanitize import plain_text, web_url

# Narrower than this is an avatar, an icon, a button or a tracking pixel, not a story image;
# lower than MIN_HEIGHT is a spacer or a rule.
MIN_WIDTH = 200
MIN_HEIGHT = 50
MAX_ALT_CHARS = 200
# What e-mail clients show and image_size reads. SVG is left out: many clients block it.
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".gif", ".webp")
_IMAGE_TYPES = frozenset(
    {"image/jpeg", "image/jpg", "image/pjpeg", "image/png", "image/gif", "image/webp"}
)
# Hosts whose images are counters, ad slots or share buttons, never a story's picture: the
# feed corpus has FeedBurner's pixels and "flare" buttons, DoubleClick and Pheedo ads, and
# trackers in a dozen feeds. Gravatar serves the author's face.
_NOT_STORY_HOSTS = (
    "feedburner.com",
    "feedproxy.google.com",
    "doubleclick.net",
    "pheedo.com",
    "bluekai.com",
    "adsrvr.org",
    "stats.wordpress.com",
    "pixel.wp.com",
    "gravatar.com",
)

Source = Literal["content", "thumbnail", "enclosure"]


class MediaRef(NamedTuple):
    """One media element of an item as the feed gives it (attributes as text, unchecked)."""

    source: Source  # media:content, media:thumbnail or an enclosure
    url: str
    medium: str = ""  # media:content's medium="image|audio|video|document|executable"
    type: str = ""  # the MIME type the feed declares
    width: str = ""
    height: str = ""
    text: str = ""  # the media:description or media:title the feed gives it


class StoryImage(NamedTuple):
    url: str = ""  # "" when the briefing has none
    width: int = 0  # 0 when not known
    height: int = 0
    alt: str = ""

    @property
    def sized(self) -> bool:
        return bool(self.url and self.width and self.height)


NO_IMAGE = StoryImage()


def choose_image(media: Iterable[MediaRef], clean_body: str = "", base_url: str = "") -> StoryImage:
    """The item's best image candidate: the largest known width, else the first offered.

    Candidates are its media:content images, media:thumbnails, image enclosures, then the
    first image of its clean body HTML (after any trackers or icons), in that order. Its size
    may be incomplete (see sized()).
    """
    offered = [image for image in _from_media(media, base_url) if _story_sized(image)]
    # Only the body's first: images further down illustrate a passage, not the story.
    lead = next((image for image in _from_body(clean_body) if _story_sized(image)), None)
    candidates: dict[str, StoryImage] = {}
    for image in (*offered, *([lead] if lead else [])):
        known = candidates.get(image.url)
        if known is None:
            candidates[image.url] = image
        else:  # the same picture offered twice (thumbnail and content): what each knows
            candidates[image.url] = StoryImage(
                image.url,
                known.width or image.width,
                known.height or image.height,
                known.alt or image.alt,
            )
    if not candidates:
        return NO_IMAGE
    ranked = sorted(enumerate(candidates.values()), key=lambda pair: (-pair[1].width, pair[0]))
    return ranked[0][1]


def with_size(image: StoryImage, probed: tuple[int, int] | None) -> StoryImage:
    """The image as stored: its own size, else the probed one; none without both, or too small."""
    if image.sized:
        return image
    if probed is None or not image.url:
        return NO_IMAGE
    image = image._replace(width=probed[0], height=probed[1])
    return image if image.sized and _story_sized(image) else NO_IMAGE


def _story_sized(image: StoryImage) -> bool:
    """Whether nothing known of the image says it is too small to be a story's picture."""
    if image.width and image.width < MIN_WIDTH:
        return False
    return not (image.height and image.height < MIN_HEIGHT)


def _from_media(media: Iterable[MediaRef], base_url: str) -> Iterable[StoryImage]:
    for ref in media:
        if not _is_image(ref):
            continue
        url = _image_url(ref.url, base_url)
        if url:
            yield StoryImage(url, _pixels(ref.width), _pixels(ref.height), _alt(ref.text, url))


def _is_image(ref: MediaRef) -> bool:
    medium = ref.medium.strip().lower()
    kind = ref.type.split(";")[0].strip().lower()
    if medium not in ("", "image") or (kind and kind not in _IMAGE_TYPES):
        return False  # audio, video, SVG: a podcast's episode is never its picture
    if ref.source == "enclosure":
        return bool(kind)  # an enclosure is an image only when its type says so
    if ref.source == "thumbnail" or medium or kind:
        return True
    return _has_image_extension(ref.url)  # a bare media:content: its file name tells


def _has_image_extension(url: str) -> bool:
    return urlsplit(url.strip()).path.lower().endswith(IMAGE_EXTENSIONS)


_IMG = re.compile(r"<img\b[^>]*>", re.IGNORECASE)
_ATTRIBUTE = re.compile(r'\s([a-z]+)="([^"]*)"', re.IGNORECASE)


def _from_body(clean_body: str) -> Iterable[StoryImage]:
    """The body's images, from HTML clean_html wrote: double-quoted attributes, absolute src."""
    if "<img" not in clean_body:
        return
    for tag in _IMG.finditer(clean_body):
        attributes = {
            name.lower(): html.unescape(value) for name, value in _ATTRIBUTE.findall(tag.group())
        }
        url = _image_url(attributes.get("src", ""))
        if url:
            width, height = _pixels(attributes.get("width")), _pixels(attributes.get("height"))
            yield StoryImage(url, width, height, _alt(attributes.get("alt", ""), url))


def _image_url(value: str, base_url: str = "") -> str:
    url = web_url(value, base_url)
    if not url:
        return ""
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    if any(host == name or host.endswith("." + name) for name in _NOT_STORY_HOSTS):
        return ""
    return "" if parts.path.lower().endswith(".svg") else url


def _pixels(value: str | None) -> int:
    """A width or height attribute as a number of pixels; 0 for "100%", "auto", junk."""
    value = (value or "").strip().lower().removesuffix("px")
    return int(value) if value.isdigit() and len(value) <= 5 else 0


# One word with an underscore, or lower-case words joined by hyphens: a file's name.
_FILE_NAME = re.compile(r"\S*_\S*|[a-z0-9]+(?:-[a-z0-9]+)+")


def _alt(text: str, url: str) -> str:
    """Text that describes an image: one plain line, cut at a word; "" for a file's name."""
    alt = plain_text(text)
    stem = urlsplit(url).path.rsplit("/", 1)[-1].rsplit(".", 1)[0]
    if alt.casefold() == stem.casefold() or _FILE_NAME.fullmatch(alt):
        return ""  # "angies-list", "Ent1_copy": a CMS gives the file's name as its title
    if len(alt) > MAX_ALT_CHARS:
        alt = alt[: MAX_ALT_CHARS - 1].rsplit(" ", 1)[0] + "…"
    return alt


def image_size(data: bytes) -> tuple[int, int] | None:
    """Width and height from an image's first bytes (PNG, GIF, JPEG, WebP), or None when these
    bytes do not say (yet): not an image of those kinds, or cut before its size."""
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        size = _png(data)
    elif data[:6] in (b"GIF87a", b"GIF89a"):
        size = struct.unpack("<HH", data[6:10]) if len(data) >= 10 else None
    elif data.startswith(b"\xff\xd8"):
        size = _jpeg(data)
    elif data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        size = _webp(data)
    else:
        return None
    return size if size and size[0] > 0 and size[1] > 0 else None


def could_be_image(data: bytes) -> bool:
    """Whether the bytes start as one of the images image_size reads (or are too few to say)."""
    signatures = (b"\x89PNG\r\n\x1a\n", b"GIF87a", b"GIF89a", b"\xff\xd8", b"RIFF")
    return any(data.startswith(s) or s.startswith(data[: len(s)]) for s in signatures)


def _png(data: bytes) -> tuple[int, int] | None:
    if len(data) < 24 or data[12:16] != b"IHDR":
        return None
    width, height = struct.unpack(">II", data[16:24])
    return width, height


# Start-of-frame markers: C0-CF, except DHT (C4), JPG (C8) and DAC (CC).
_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
# Markers without a length: TEM, RST0-7, SOI.
_STANDALONE = frozenset({0x01, *range(0xD0, 0xD9)})


def _jpeg(data: bytes) -> tuple[int, int] | None:
    """The frame's size from its SOFn segment, skipping the segments before it (EXIF, ICC)."""
    at = 2
    while at + 4 <= len(data):
        if data[at] != 0xFF:
            return None  # not at a marker: a broken file
        marker = data[at + 1]
        if marker == 0xFF:  # fill bytes before a marker
            at += 1
            continue
        if marker in _STANDALONE:
            at += 2
            continue
        if marker in (0xD9, 0xDA):
            return None  # end of image or start of scan before any frame header
        (length,) = struct.unpack(">H", data[at + 2 : at + 4])
        if length < 2:
            return None
        if marker in _SOF:
            if at + 9 > len(data):
                return None
            height, width = struct.unpack(">HH", data[at + 5 : at + 9])
            return width, height
        at += 2 + length
    return None


def _webp(data: bytes) -> tuple[int, int] | None:
    chunk = data[12:16]
    if chunk == b"VP8 " and len(data) >= 30 and data[23:26] == b"\x9d\x01\x2a":
        width, height = struct.unpack("<HH", data[26:30])
        return width & 0x3FFF, height & 0x3FFF
    if chunk == b"VP8L" and len(data) >= 25 and data[20] == 0x2F:
        (bits,) = struct.unpack("<I", data[21:25])
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    if chunk == b"VP8X" and len(data) >= 30:
        width = int.from_bytes(data[24:27], "little") + 1
        height = int.from_bytes(data[27:30], "little") + 1
        return width, height
    return None
