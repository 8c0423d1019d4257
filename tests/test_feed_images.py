"""Story images and "why it matters": chosen from real feeds, sized from real image bytes served
over HTTP on 127.0.0.1, stored with each briefing, and the schema migrated for them."""

from __future__ import annotations

import base64
import html
import re
import struct
import time
import zlib
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from alembic import command
from alembic.config import Config as AlembicConfig
from sqlalchemy import create_engine, inspect, text

from newsletter.config import Settings, load_settings
from newsletter.feeds.clean import CleanEntry, prepare_entries
from newsletter.feeds.fetch import FetchRules, http_client
from newsletter.feeds.images import (
    NO_IMAGE,
    MediaRef,
    StoryImage,
    choose_image,
    image_size,
    with_size,
)
from newsletter.feeds.probe import MAX_PROBES, PROBE_BYTES, images_to_probe, probe_size
from newsletter.feeds.shape import why_it_matters
from newsletter.models import Briefing
from newsletter.schema import MIGRATIONS, SCHEMA_HEAD, create_schema
from tests.conftest import CORPUS, ROOT, Project
from tests.feedserver import FeedServer, serve
from tests.test_fetch_http import configure, fetch_feeds, stored

REAL = CORPUS / "feeds" / "real"
SEED = ROOT / "tests" / "data" / "seed-briefing.txt"  # a copy of the shared seed briefing


# Image files, made of their own bytes. PNG and GIF decode; the JPEG and WebP headers are
# what their encoders write before the pixel data (WebP's 1x1 files are complete ones).
def png(width: int, height: int) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data)
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    rows = (b"\x00" + b"\x80" * width) * height  # 8-bit grey, no filter
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


def gif(width: int, height: int) -> bytes:
    one_pixel = bytes.fromhex(
        "474946383961010001008000 00ffffff000000 2c00000000010001000002024401003b".replace(" ", "")
    )
    screen = struct.pack("<HH", width, height)
    return one_pixel[:6] + screen + one_pixel[10:21] + screen + one_pixel[25:]


def segment(marker: int, payload: bytes) -> bytes:
    return bytes([0xFF, marker]) + struct.pack(">H", len(payload) + 2) + payload


def jpeg(width: int, height: int, *, exif: int = 0, frame: int = 0xC0) -> bytes:
    parts = [b"\xff\xd8", segment(0xE0, b"JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00")]
    if exif:  # a camera's EXIF block with its thumbnail: up to 64 KiB before the frame
        parts.append(segment(0xE1, b"Exif\x00\x00" + bytes(exif)))
    parts += [
        segment(0xDB, b"\x00" + bytes(range(64))),  # quantisation table
        segment(0xC4, b"\x00" + bytes(16)),  # a Huffman table: C4, but no frame header
        b"\xff\xff",  # fill bytes, which may come before any marker
        segment(frame, struct.pack(">BHHB", 8, height, width, 1) + b"\x01\x11\x00"),
        segment(0xDA, b"\x01\x01\x00\x00\x3f\x00") + bytes(64) + b"\xff\xd9",
    ]
    return b"".join(parts)


# The 1x1 WebP files browsers' feature tests decode: lossy (VP8), lossless (VP8L) and
# extended (VP8X, with alpha).
WEBP_1X1 = {
    "VP8 ": "UklGRiIAAABXRUJQVlA4IBYAAAAwAQCdASoBAAEADsD+JaQAA3AAAAAA",
    "VP8L": "UklGRhoAAABXRUJQVlA4TA0AAAAvAAAAEAcQERGIiP4HAA==",
    "VP8X": "UklGRkoAAABXRUJQVlA4WAoAAAAQAAAAAAAAAAAAQUxQSAwAAAARBxAR/Q9ERP8DAABWUDggGAAAABQBAJ0B"
    "KgEAAQAAAP4AAA3AAP7mtQAAAA==",
}


def webp(kind: str, width: int, height: int) -> bytes:
    data = bytearray(base64.b64decode(WEBP_1X1[kind]))
    if kind == "VP8 ":
        data[26:30] = struct.pack("<HH", width, height)
    elif kind == "VP8L":
        data[21:25] = struct.pack("<I", (width - 1) | (height - 1) << 14)
    else:
        data[24:30] = (width - 1).to_bytes(3, "little") + (height - 1).to_bytes(3, "little")
    return bytes(data)


@pytest.mark.parametrize("kind", sorted(WEBP_1X1))
def test_image_size_reads_real_one_pixel_webp_files(kind: str) -> None:
    data = base64.b64decode(WEBP_1X1[kind])
    assert data[12:16] == kind.encode()
    assert image_size(data) == (1, 1)


@pytest.mark.parametrize(
    ("data", "size"),
    [
        (png(460, 276), (460, 276)),
        (gif(640, 360), (640, 360)),
        (gif(1, 1), (1, 1)),
        (jpeg(1024, 576), (1024, 576)),
        (jpeg(800, 1200, frame=0xC2), (800, 1200)),  # progressive
        (jpeg(3000, 2000, exif=60_000), (3000, 2000)),  # the frame after a big EXIF block
        (webp("VP8 ", 1200, 675), (1200, 675)),
        (webp("VP8L", 300, 16383), (300, 16383)),
        (webp("VP8X", 4000, 3000), (4000, 3000)),
    ],
)
def test_image_size_reads_each_format(data: bytes, size: tuple[int, int]) -> None:
    assert image_size(data) == size


def test_image_size_says_nothing_of_cut_or_foreign_bytes() -> None:
    big_exif = jpeg(3000, 2000, exif=60_000)
    frame_at = big_exif.index(b"\xff\xc0")
    assert frame_at > 60_000
    assert image_size(big_exif[:frame_at]) is None  # not read far enough yet
    assert image_size(big_exif[: frame_at + 9]) == (3000, 2000)
    for junk in (b"", b"<!doctype html><title>404</title>", png(10, 10)[:20], b"\xff\xd8\x00"):
        assert image_size(junk) is None
    assert image_size(jpeg(0, 0)) is None
    # A scan before any frame header is a broken file, not a size.
    assert image_size(b"\xff\xd8" + segment(0xDA, b"\x00" * 6) + jpeg(10, 10)[2:]) is None


def entries(name: str) -> list[CleanEntry]:
    path = REAL / name
    return prepare_entries(path.read_bytes(), {}, name, path.as_uri())


def test_corpus_feeds_give_their_images_and_only_real_ones() -> None:
    bbc = entries("bbc-urdu.rss")
    assert all(entry.image.sized for entry in bbc)
    assert (bbc[0].image_width, bbc[0].image_height) == (1024, 576)
    assert bbc[0].image_url.startswith("http://c.files.bbci.co.uk/")
    cloud = entries("google-cloud-blog.rss")
    assert (cloud[0].image_width, cloud[0].image_height) == (540, 540)
    assert cloud[0].image_url.endswith("shadow_IT.max-600x600.png")
    # Podcast episodes are audio, and commit avatars are 30 px: no story images there.
    assert not [entry for entry in entries("atp-podcast.rss") if entry.image_url]
    assert not [entry for entry in entries("github-commits.atom") if entry.image_url]
    # The Guardian gives a 140 and a 460 px width and no height: the wider one, to be probed.
    guardian = entries("guardian-uk.rss")
    assert all(entry.image_width == 460 and not entry.image_height for entry in guardian)
    assert "w=460" in guardian[0].image_url
    # TechCrunch and reddit give no size at all: the first image offered, to be probed.
    techcrunch = entries("techcrunch-2011.rss")
    assert techcrunch[0].image_url.endswith("angies-list.jpeg?w=150")
    assert techcrunch[0].image == StoryImage(techcrunch[0].image_url)  # its title, a file name
    reddit = [entry for entry in entries("reddit-frontpage-2015.rss") if entry.image_url]
    assert reddit
    assert all("thumbs.redditmedia.com" in e.image_url and not e.image_width for e in reddit)


def test_trackers_avatars_icons_and_other_media_are_never_the_image() -> None:
    body = (
        '<p><img src="http://feeds.feedburner.com/~r/X/~4/abc" height="1" width="1"></p>'
        '<p><img src="https://cdn.example/icon.png" width="16" height="16"></p>'
        '<p><img src="https://cdn.example/spacer.gif" width="600" height="1"></p>'
        '<p><img src="https://cdn.example/lead.jpg" width="640" height="360" alt="The lead"></p>'
        '<p><img src="https://cdn.example/later.jpg" width="1600" height="900"></p>'
    )
    assert choose_image([], body) == StoryImage(
        "https://cdn.example/lead.jpg", 640, 360, "The lead"
    )
    media = [
        MediaRef("content", "https://cdn.example/ep.mp3", medium="audio", type="audio/mpeg"),
        MediaRef("content", "https://cdn.example/clip.mp4", type="video/mp4"),
        MediaRef("content", "https://cdn.example/poster.jpg", medium="video"),
        MediaRef("content", "https://cdn.example/logo.svg", type="image/svg+xml"),
        MediaRef("content", "https://cdn.example/download"),  # no kind, no image name
        MediaRef("enclosure", "https://cdn.example/ep.m4a", type="audio/x-m4a"),
        MediaRef("thumbnail", "https://www.gravatar.com/avatar/abc.jpg"),
        MediaRef("thumbnail", "javascript:alert(1)//a.jpg"),
        MediaRef("content", "http://[broken/a.jpg", medium="image"),
    ]
    assert choose_image(media) == NO_IMAGE
    assert choose_image(media, body).url == "https://cdn.example/lead.jpg"


def test_the_largest_known_width_wins_and_the_same_picture_is_one_candidate() -> None:
    media = [
        MediaRef("content", "https://cdn.example/a.jpg", width="460"),
        MediaRef("thumbnail", "https://cdn.example/b.jpg"),
        MediaRef("content", "https://cdn.example/c.jpg", medium="image", width="1200"),
        MediaRef("thumbnail", "https://cdn.example/c.jpg", height="675", text="<b>Crowds</b>"),
        MediaRef("enclosure", "/d.png", type="image/png"),
    ]
    assert choose_image(media) == StoryImage("https://cdn.example/c.jpg", 1200, 675, "Crowds")
    unknown = [MediaRef("thumbnail", "https://cdn.example/b.jpg"), media[4]]
    assert choose_image(unknown) == StoryImage("https://cdn.example/b.jpg")
    assert choose_image(unknown[1:], base_url="https://news.example/story") == StoryImage(
        "https://news.example/d.png"
    )


def test_an_image_is_stored_only_with_both_sizes_and_wide_enough() -> None:
    half = StoryImage("https://cdn.example/a.jpg", 460, 0, "Alt")
    assert with_size(half, None) == NO_IMAGE
    assert with_size(half, (460, 276)) == StoryImage("https://cdn.example/a.jpg", 460, 276, "Alt")
    assert with_size(half, (150, 100)) == NO_IMAGE  # the probe found a thumbnail
    whole = StoryImage("https://cdn.example/a.jpg", 640, 360)
    assert with_size(whole, None) == whole
    assert with_size(NO_IMAGE, (640, 360)) == NO_IMAGE


MEDIA_FEED = """<?xml version="1.0" encoding="UTF-8"?>
<rss version="2.0" xmlns:media="http://search.yahoo.com/mrss/"><channel>
<title>Images</title><link>https://news.example/</link>
{items}
</channel></rss>"""


def item(guid: str, media: str = "", body: str = "<p>A story.</p>") -> str:
    return (
        f"<item><title>Story {guid}</title><link>https://news.example/{guid}</link>"
        f"<guid>{guid}</guid><description>{html.escape(body)}</description>{media}</item>"
    )


def test_the_alt_text_is_the_media_description_else_its_title_never_the_items_title() -> None:
    items = [
        item(
            "described",
            '<media:content url="https://cdn.example/a.jpg" medium="image" width="800" '
            'height="450"><media:title>court</media:title><media:description type="html">'
            "Crowds outside the &lt;b&gt;court&lt;/b&gt;\n on Monday</media:description>"
            "</media:content>",
        ),
        item(
            "titled",
            '<media:content url="https://cdn.example/b.jpg" width="800" height="450">'
            "<media:title>A long queue at the port</media:title></media:content>",
        ),
        item(
            "long",
            '<media:thumbnail url="https://cdn.example/c.jpg"/>'
            f"<media:title>{'word ' * 80}</media:title>",
        ),
    ]
    content = MEDIA_FEED.format(items="".join(items)).encode()
    parsed = {
        entry.guid: entry
        for entry in prepare_entries(content, {}, "m", "https://news.example/feed")
    }
    assert parsed["described"].image_alt == "Crowds outside the court on Monday"
    assert parsed["described"].title == "Story described"  # media:title is not the item's
    assert parsed["described"].dek == "A story."  # nor its description the item's body
    assert parsed["titled"].image_alt == "A long queue at the port"
    assert parsed["long"].image_alt.endswith("…")
    assert len(parsed["long"].image_alt) <= 200


def test_at_most_thirty_probes_and_only_for_new_or_edited_entries() -> None:
    base = entries("guardian-uk.rss")[0]
    many = [
        replace(base, guid=f"g{n}", image_url=f"https://cdn.example/{n}.jpg") for n in range(40)
    ]
    assert len(images_to_probe(many, {})) == MAX_PROBES
    stored_now = {entry.guid: entry.content_hash for entry in many[:35]}
    edited = replace(many[1], title="Edited")
    wanted = images_to_probe([*many[:35], edited, many[35]], stored_now)
    assert wanted == ["https://cdn.example/1.jpg", "https://cdn.example/35.jpg"]
    sized = replace(many[36], image_height=276)
    assert images_to_probe([sized], {}) == []  # the feed gave both: nothing to read


@pytest.fixture
def image_server(tmp_path: Path) -> Iterator[FeedServer]:
    (tmp_path / "img").mkdir()
    (tmp_path / "img" / "lead.png").write_bytes(png(460, 276))
    (tmp_path / "img" / "second.jpg").write_bytes(jpeg(1200, 800, exif=60_000))
    (tmp_path / "img" / "garbage.png").write_bytes(b"<!doctype html><p>Not an image</p>" * 50)
    (tmp_path / "img" / "thumb.gif").write_bytes(gif(140, 84))
    # Megabytes of an image: the probe reads the start and hangs up.
    (tmp_path / "img" / "huge.png").write_bytes(png(460, 276) + bytes(4 * 2**20))
    with serve(tmp_path) as server:
        yield server


def guardian_like(server: FeedServer, *names: str) -> str:
    """Items as the Guardian writes them: two widths of one picture, no height."""
    media = (
        '<media:content width="140" url="{url}?w=140"/>'
        '<media:content width="460" url="{url}?w=460"/>'
    )
    items = [item(name, media.format(url=server.url(f"img/{name}"))) for name in names]
    return MEDIA_FEED.format(items="".join(items) + item("no-image"))


def feed_settings(
    project: Project, server: FeedServer, feed: str, *, allow: bool, query: str = ""
) -> Settings:
    (Path(server.root) / "feed.xml").write_text(feed)
    # The test server's Last-Modified never changes: a new query makes a changed feed new.
    configure(project, {"images": server.url(f"feed.xml{query}")})
    project.update("fetch", probe_images=True)  # the tests' projects keep it off
    if allow:  # the images are on 127.0.0.1 too, which only this lets the probe reach
        project.update("fetch", allow_private_hosts=["127.0.0.1"])
    return load_settings(project.config_path)


def images_stored(settings: Settings) -> dict[str, tuple[str, int, int]]:
    _, briefings = stored(settings)
    return {b.guid: (b.image_url, b.image_width, b.image_height) for b in briefings}


def image_requests(server: FeedServer) -> list[str]:
    return [path for path, _ in server.requests if path.startswith("/img/")]


def test_a_probe_over_http_gives_a_width_only_image_its_height(
    project: Project, image_server: FeedServer
) -> None:
    settings = feed_settings(
        project, image_server, guardian_like(image_server, "lead.png", "second.jpg"), allow=True
    )
    report = fetch_feeds(settings)[0]
    assert (report.status, report.counts.new) == ("ok", 3)
    lead = image_server.url("img/lead.png?w=460")
    assert images_stored(settings) == {
        "lead.png": (lead, 460, 276),
        "second.jpg": (image_server.url("img/second.jpg?w=460"), 1200, 800),  # the file's size
        "no-image": ("", 0, 0),
    }
    assert image_requests(image_server) == ["/img/lead.png?w=460", "/img/second.jpg?w=460"]
    headers = dict(image_server.requests)["/img/lead.png?w=460"]
    assert headers["Range"] == f"bytes=0-{PROBE_BYTES - 1}"

    # Unchanged items are not probed again; a new one is, on the fetch that brings it.
    feed = guardian_like(image_server, "lead.png", "second.jpg", "huge.png")
    settings = feed_settings(project, image_server, feed, allow=True, query="?edited")
    report = fetch_feeds(settings)[0]
    assert (report.counts.new, report.counts.unchanged) == (1, 3)
    assert image_requests(image_server)[2:] == ["/img/huge.png?w=460"]
    assert images_stored(settings)["huge.png"][1:] == (460, 276)


def test_with_probe_images_off_no_picture_is_asked_for_and_none_unsized_is_kept(
    project: Project, image_server: FeedServer
) -> None:
    feed_settings(project, image_server, guardian_like(image_server, "lead.png"), allow=True)
    project.update("fetch", probe_images=False)
    settings = load_settings(project.config_path)
    assert fetch_feeds(settings)[0].counts.new == 2
    assert image_requests(image_server) == []
    assert images_stored(settings)["lead.png"] == ("", 0, 0)


def test_a_probe_never_reaches_a_private_host_that_is_not_allowed(
    project: Project, image_server: FeedServer
) -> None:
    # The feed's own host is the editor's choice; the images the feed names are not.
    settings = feed_settings(
        project, image_server, guardian_like(image_server, "lead.png"), allow=False
    )
    report = fetch_feeds(settings)[0]
    assert (report.status, report.counts.new, report.error) == ("ok", 2, "")
    assert image_requests(image_server) == []  # never even asked
    assert images_stored(settings)["lead.png"] == ("", 0, 0)


def test_missing_garbage_and_too_small_images_leave_no_image_and_the_feed_stored(
    project: Project, image_server: FeedServer
) -> None:
    feed = guardian_like(image_server, "missing.png", "garbage.png", "thumb.gif", "lead.png")
    settings = feed_settings(project, image_server, feed, allow=True)
    report = fetch_feeds(settings)[0]
    assert (report.status, report.counts.new, report.error) == ("ok", 5, "")
    images = images_stored(settings)
    assert images["lead.png"][1:] == (460, 276)
    for name in ("missing.png", "garbage.png", "thumb.gif", "no-image"):
        assert images[name] == ("", 0, 0), name
    _, briefings = stored(settings)
    assert all(b.image_alt == "" for b in briefings if not b.image_url)


def test_a_probe_keeps_to_its_deadline_and_follows_redirects(image_server: FeedServer) -> None:
    rules = FetchRules.of(5, ["127.0.0.1"])
    with http_client(timeout=5) as client:
        started = time.monotonic()
        assert probe_size(image_server.url("hang"), client=client, rules=rules, seconds=1) is None
        assert time.monotonic() - started < 3
        moved = image_server.url(f"redirect?to={image_server.url('img/lead.png')}")
        assert probe_size(moved, client=client, rules=rules) == (460, 276)
        assert probe_size(image_server.url("img/huge.png"), client=client, rules=rules) == (
            460,
            276,
        )
        to_a_file = image_server.url("redirect?to=file:///etc/passwd")
        assert probe_size(to_a_file, client=client, rules=rules) is None
        refused = FetchRules.of(5, [])
        assert probe_size(image_server.url("img/lead.png"), client=client, rules=refused) is None


def seed_as_html(style: str) -> str:
    """The seed briefing as a feed carries it: paragraphs, bullets, and its section titles as
    headings or as bold paragraphs."""
    blocks = [block.strip() for block in SEED.read_text().split("\n\n") if block.strip()]
    out = []
    for block in blocks:
        lines = [line.strip() for line in block.splitlines()]
        if all(line.startswith("•") for line in lines):
            out.append(
                "<ul>"
                + "".join(f"<li>{html.escape(line[1:].strip())}</li>" for line in lines)
                + "</ul>"
            )
        elif len(block) < 40 and not block.endswith("."):
            label = html.escape(block)
            out.append(
                {"h2": f"<h2>{label}</h2>", "h3": f"<h3>{label}</h3>"}.get(
                    style, f"<p><strong>{label}</strong></p>"
                )
            )
        else:
            out.append(f"<p>{html.escape(block)}</p>")
    return "\n".join(out)


SEED_WHY = (
    "This move by Alibaba highlights the heightened scrutiny and control China is applying to "
    "foreign AI technologies, especially those that could pose security or regulatory risks."
)


@pytest.mark.parametrize("style", ["h2", "h3", "strong"])
def test_why_it_matters_is_the_first_sentence_under_its_label(style: str) -> None:
    content = MEDIA_FEED.format(items=item("seed", body=seed_as_html(style))).encode()
    (entry,) = prepare_entries(content, {}, "seed", "https://news.example/feed")
    assert entry.why_it_matters == SEED_WHY
    assert why_it_matters(seed_as_html(style).replace("Why it matters", "What it means")) == ""


@pytest.mark.parametrize(
    ("fragment", "expected"),
    [
        ("<p><strong>Why it matters:</strong> Dr. Ng said so. Then more.</p>", "Dr. Ng said so."),
        (
            "<p><b>WHY THIS MATTERS</b></p><p>U.S. ports slow down. More.</p>",
            "U.S. ports slow down.",
        ),
        ("<h3>Why it’s important:</h3><ul><li>Prices rise.</li><li>Two</li></ul>", "Prices rise."),
        ("<p>Why it matters: costs fall</p>", "costs fall"),
        ("<p>Why it matters so much is unclear. Really.</p>", ""),  # a sentence, not a label
        ("<h2>Why it matters to banks</h2><p>Not this.</p>", ""),
        ("<h3>Why it matters</h3><h3>What next</h3><p>Not this.</p>", ""),
        ("<p>Nothing to see.</p>", ""),
    ],
)
def test_why_it_matters_labels(fragment: str, expected: str) -> None:
    assert why_it_matters(fragment) == expected


def test_why_it_matters_is_cut_at_a_word() -> None:
    long = "<h3>Why it matters</h3><p>" + "Ports " * 100 + "close.</p>"
    line = why_it_matters(long)
    assert len(line) <= 300
    assert line.endswith("Ports…")


def test_every_sample_briefing_has_its_why_it_matters_line() -> None:
    path = ROOT / "samples" / "briefings.xml"
    sample = prepare_entries(path.read_bytes(), {}, "sample", path.as_uri())
    assert len(sample) == 15
    assert all(entry.why_it_matters for entry in sample)
    assert sample[0].why_it_matters.startswith("Banks are among the heaviest early users")
    assert not re.search(r"[<>]|\s{2}", "".join(entry.why_it_matters for entry in sample))
    with_chart = [entry for entry in sample if entry.image_url]
    assert [entry.image for entry in with_chart] == [
        StoryImage("https://signaldesk.example/img/chart.png", 400, 200, "Freight volumes chart")
    ]


def test_migrating_an_existing_database_from_0004_keeps_its_briefings(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite:///{tmp_path / 'existing.db'}")
    with engine.begin() as connection:
        config = AlembicConfig()
        config.set_main_option("script_location", str(MIGRATIONS))
        config.attributes["connection"] = connection
        command.upgrade(config, "0004")
        connection.execute(
            text(
                "INSERT INTO feed (id, name, config_url, url, disabled) "
                "VALUES (1, 'f', 'u', 'u', 0)"
            )
        )
        connection.execute(
            text(
                "INSERT INTO briefing (feed_id, guid, url, title, dek, body_html, key_points, "
                "tags, source_name, source_url, content_hash, published_at, first_seen_at, "
                "updated_at) VALUES (1, 'old', 'https://news.example/old', 'Old story', '', "
                "'', '[]', '[]', 'Outlet', '', 'hash', '2026-11-30 10:00:00.000000', "
                "'2026-11-30 10:00:00.000000', '2026-11-30 10:00:00.000000')"
            )
        )
    create_schema(engine)
    with engine.connect() as connection:
        version = connection.execute(text("SELECT version_num FROM alembic_version")).scalar()
        rows = connection.execute(
            text(
                "SELECT guid, title, image_url, image_width, image_height, image_alt, "
                "why_it_matters FROM briefing"
            )
        ).all()
    assert version == SCHEMA_HEAD
    assert [tuple(row) for row in rows] == [("old", "Old story", "", 0, 0, "", "")]
    columns = {column["name"] for column in inspect(engine).get_columns("briefing")}
    assert {"image_url", "image_width", "image_height", "image_alt", "why_it_matters"} <= columns
    assert set(Briefing.model_fields) >= {"image_url", "why_it_matters"}
    engine.dispose()
