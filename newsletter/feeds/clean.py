"""Parsed entries -> clean values. Pure CPU work with light imports: it runs in worker processes."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime

from newsletter.feeds.images import StoryImage, choose_image
from newsletter.feeds.parse import ParsedEntry, ParsedFeed, parse_feed
from newsletter.feeds.sanitize import clean_html, plain_text, single_line, web_url
from newsletter.feeds.shape import first_paragraph, is_bare_time, key_points, why_it_matters

MAX_DEK_CHARS = 400


@dataclass(frozen=True)
class CleanEntry:
    guid: str
    url: str
    title: str
    dek: str
    body_html: str
    key_points: list[str]
    source_name: str
    source_url: str
    published: datetime | None
    tags: tuple[str, ...]
    # The image as the feed describes it: a size it does not give is 0, and the fetch probes
    # for it (feeds/probe.py); only an image with both is stored (images.with_size).
    image_url: str = ""
    image_width: int = 0
    image_height: int = 0
    image_alt: str = ""
    why_it_matters: str = ""

    @property
    def image(self) -> StoryImage:
        return StoryImage(self.image_url, self.image_width, self.image_height, self.image_alt)

    @property
    def content_hash(self) -> str:
        digest = hashlib.sha256()
        for part in (
            self.title,
            self.dek,
            self.body_html,
            self.source_name,
            self.source_url,
            self.url,
            *self.tags,
            # Key points too: they are stored, and a change in how they are found must reach
            # the briefings already stored at the next fetch even when the body is the same.
            "\x1f".join(self.key_points),
        ):
            digest.update(part.encode("utf-8", "surrogatepass") + b"\0")
        # The image as the feed gives it, not as probed: an unchanged item is not probed again,
        # and a new picture (or a size the feed now gives) is stored at the next fetch. Left
        # out when there is none, so items without either keep the hash stored before these.
        if self.image_url or self.why_it_matters:
            for extra in (
                self.image_url,
                str(self.image_width),
                str(self.image_height),
                self.image_alt,
                self.why_it_matters,
            ):
                digest.update(extra.encode("utf-8", "surrogatepass") + b"\0")
        return digest.hexdigest()


def clean_entry(
    entry: ParsedEntry, feed: ParsedFeed, feed_url: str, feed_name: str = ""
) -> CleanEntry:
    """One entry's briefing. feed_name is the feed's name in config.toml: the outlet when the
    item names no <source> (a feed's own title is often a code, "Science twis")."""
    # Links go into every reader's e-mail: only absolute http(s) URLs survive.
    feed_link = web_url(feed.link, feed_url)
    link = web_url(entry.link, feed_link or feed_url)
    url = link or feed_link
    body = clean_html(entry.content_html or entry.summary_html, base_url=url)
    dek = _summary_text(entry.summary_html) if entry.content_html else first_paragraph(body)
    if entry.content_html and is_bare_time(dek):  # a live blog's "8.13pm GMT"
        dek = first_paragraph(body)
    if len(dek) > MAX_DEK_CHARS:
        dek = dek[: MAX_DEK_CHARS - 1].rsplit(" ", 1)[0] + "…"
    title = plain_text(entry.title) or dek[:80] or "(untitled)"
    identity = entry.guid.strip() or entry.link.strip()
    if not identity:
        identity = "sha256:" + hashlib.sha256(f"{title}\0{body}".encode()).hexdigest()
    outlet = plain_text(entry.source_name) or single_line(feed_name) or plain_text(feed.title)
    image = choose_image(entry.media, body, link or feed_link or feed_url)
    return CleanEntry(
        guid=identity,
        url=url,
        title=title,
        dek=dek,
        body_html=body,
        key_points=key_points(body),
        source_name=outlet or url or "the feed",
        # "Open the original source" opens the article: the item's <source url>, else its own
        # link; never the feed's home page, so an item without a usable link gets none.
        source_url=web_url(entry.source_url, link or feed_link or feed_url) or link,
        published=entry.published,
        tags=entry.tags,
        image_url=image.url,
        image_width=image.width,
        image_height=image.height,
        image_alt=image.alt,
        why_it_matters=why_it_matters(body),
    )


# How much of a summary's HTML to read for a dek at first: many feeds repeat the whole
# article in it, and cleaning all of that for 400 characters was a fifth of what nh3 read.
_SUMMARY_HTML_READ = 8 * MAX_DEK_CHARS


def _summary_text(summary_html: str) -> str:
    """The summary's text, as far as a dek needs: its start is the start of the whole text."""
    if len(summary_html) > _SUMMARY_HTML_READ:
        start = plain_text(summary_html[:_SUMMARY_HTML_READ])
        if len(start) > MAX_DEK_CHARS + 100:  # well past the cut, whatever the cut broke
            return start
    return plain_text(summary_html)


def prepare_entries(
    content: bytes, headers: dict[str, str], name: str, url: str
) -> list[CleanEntry]:
    """Parse and clean a feed's bytes: pure CPU work, run in worker processes."""
    parsed = parse_feed(content, name=name, headers=headers)
    return [clean_entry(entry, parsed, url, name) for entry in parsed.entries]
