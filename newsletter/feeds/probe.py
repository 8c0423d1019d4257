"""Sizing story images the feed gives no size for, by reading the first bytes of each.

Network I/O on the fetching side (the parser processes only choose the image). The image's
server is no more trusted than a feed's: each probe is one of fetch.py's downloads, with its
deadline, its checked addresses and its counted redirects, and it reads at most PROBE_BYTES.
Nothing here fails a feed: an image that cannot be sized is a briefing without one.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping

import httpx

from newsletter.errors import FeedError
from newsletter.feeds.clean import CleanEntry
from newsletter.feeds.fetch import (
    MAX_REDIRECTS,
    FetchRules,
    check_reach,
    decompressed,
    redirect_target,
)
from newsletter.feeds.images import could_be_image, image_size
from newsletter.feeds.network import Download, current_download

MAX_PROBES = 30  # per feed and fetch: a first fetch of a long feed sizes its newest items
PROBE_BYTES = 64 * 1024  # a JPEG's frame header comes after its EXIF, rarely further
PROBE_SECONDS = 5.0  # for one image, its redirects too
FEED_PROBE_SECONDS = 30.0  # for all of one feed's images
# Only the start of the file is wanted; a server that ignores Range sends it all, and the
# probe hangs up once it knows the size.
_HEADERS = {"Accept": "image/*", "Range": f"bytes=0-{PROBE_BYTES - 1}"}
ImageSizes = dict[str, tuple[int, int]]


def images_to_probe(
    entries: Iterable[CleanEntry], stored: Mapping[str, str], limit: int = MAX_PROBES
) -> list[str]:
    """The images of new or edited entries (stored: guid -> content_hash) that lack a size,
    each once, in the feed's order (newest first, in most feeds), at most `limit`."""
    urls: dict[str, None] = {}
    for entry in entries:
        if len(urls) >= limit:
            break
        unsized = entry.image_url and not entry.image.sized
        # The hash last: it reads the whole body, and most entries need no probe.
        if unsized and stored.get(entry.guid) != entry.content_hash:
            urls[entry.image_url] = None
    return list(urls)


def probe_sizes(
    urls: Iterable[str],
    *,
    client: httpx.Client,
    rules: FetchRules,
    budget: float = FEED_PROBE_SECONDS,
    each: float = PROBE_SECONDS,
) -> ImageSizes:
    """The sizes of the images that could be read, one after another within the budget."""
    sizes: ImageSizes = {}
    ends_at = time.monotonic() + budget
    for url in urls:
        left = ends_at - time.monotonic()
        if left <= 0:
            break
        size = probe_size(url, client=client, rules=rules, seconds=min(each, left))
        if size is not None:
            sizes[url] = size
    return sizes


def probe_size(
    url: str, *, client: httpx.Client, rules: FetchRules, seconds: float = PROBE_SECONDS
) -> tuple[int, int] | None:
    """An image's width and height from its first bytes, or None for any failure."""
    # No host is the editor's own here (configured=None): the URL is the feed's to choose,
    # so only public addresses and the hosts [fetch] allow_private_hosts names are asked.
    download = Download(time.monotonic() + seconds, None, rules)
    token = current_download.set(download)
    try:
        return _probe(url, client, download)
    except (FeedError, httpx.HTTPError, httpx.InvalidURL, ValueError):
        return None  # refused, unreachable, too slow, not an image: no image, not an error
    finally:
        current_download.reset(token)


def _probe(url: str, client: httpx.Client, download: Download) -> tuple[int, int] | None:
    target = httpx.URL(url)
    for hop in range(MAX_REDIRECTS + 1):
        check_reach("image", url, target, download, redirected=hop > 0)
        with client.stream("GET", target, headers=_HEADERS) as response:
            if not response.has_redirect_location:
                return _size(response) if response.status_code in (200, 206) else None
            location = response.headers["location"]
        target = redirect_target("image", url, target, location)
    return None


def _size(response: httpx.Response) -> tuple[int, int] | None:
    """Read until the bytes tell the size, they cannot be an image, or PROBE_BYTES are read."""
    data = bytearray()
    for piece in decompressed(response):
        data += piece
        size = image_size(bytes(data))
        if size is not None:
            return size
        if len(data) >= PROBE_BYTES or not could_be_image(bytes(data)):
            return None
    return None
