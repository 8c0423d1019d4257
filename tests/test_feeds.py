"""Feed ingestion on the sample feed and on the real-world corpus."""

from __future__ import annotations

import csv
import re
import shutil
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlmodel import select

from newsletter.app import Newsletter
from newsletter.config import load_settings
from newsletter.db import Database, DriverConnection
from newsletter.digest.themes import ThemeMatcher
from newsletter.errors import FeedError
from newsletter.feeds.clean import MAX_DEK_CHARS, CleanEntry, clean_entry, prepare_entries
from newsletter.feeds.ingest import store_entries
from newsletter.feeds.parse import ParsedEntry, ParsedFeed, parse_feed
from newsletter.feeds.sanitize import plain_text, web_url
from newsletter.models import Briefing, Feed
from newsletter.services.feeds import FeedReport
from tests.conftest import CORPUS, ROOT, Project

FEEDS = CORPUS / "feeds"
SETTINGS = load_settings(ROOT / "config.toml")
ACTIVE_CONTENT = re.compile(
    r"<\s*(script|iframe|object|embed|style|form|input|applet|meta|link|frame|svg|math)\b"
    r"|<[^>]*\son\w+\s*="
    r"|(href|src)\s*=\s*[\"']?\s*(javascript|vbscript|data):",
    re.IGNORECASE,
)


def briefings(project: Project) -> list[Briefing]:
    database = Database(load_settings(project.config_path))
    with database.session() as session:
        rows = list(session.exec(select(Briefing).order_by(Briefing.id)).all())
    database.dispose()
    return rows


def by_guid(project: Project) -> dict[str, Briefing]:
    return {b.guid.removeprefix("signaldesk-briefing-"): b for b in briefings(project)}


def test_sample_feed_ingests_with_themes_attribution_and_clean_html(project: Project) -> None:
    output = project.cli("fetch").output
    assert "15 new" in output
    stored = by_guid(project)
    assert len(stored) == 15
    matcher = ThemeMatcher(SETTINGS.themes, SETTINGS.digest.fallback_theme)

    def themes(slug: str) -> list[str]:
        briefing = stored[slug]
        return matcher.match(briefing.tags, f"{briefing.title}\n{briefing.dek}")

    assert themes("brackwater-water-ransomware-billing")[0] == "Security"
    assert themes("short-sea-freight-rates-ease") == ["Logistics"]  # keyword only
    assert themes("westbrook-library-sunday-hours") == ["More briefings"]  # fallback
    chips = stored["chips-and-tariffs-levy-delayed"]
    assert chips.title.startswith("Chips & tariffs")
    assert chips.source_name == "Capitol Brief"
    assert chips.source_url.startswith("https://")
    for briefing in stored.values():
        assert len(briefing.key_points) == 3
        assert briefing.dek
        assert not ACTIVE_CONTENT.search(briefing.body_html)
    linked = next(b for b in stored.values() if "standards" in b.body_html)
    assert 'href="https://signaldesk.example/standards"' in linked.body_html
    pictured = next(b for b in stored.values() if "<img" in b.body_html)
    assert 'src="https://signaldesk.example/img/chart.png"' in pictured.body_html
    assert 'alt="Freight volumes chart"' in pictured.body_html


def test_refetch_adds_nothing_and_an_edit_updates_in_place(project: Project) -> None:
    project.cli("fetch")
    assert "0 new, 0 updated" in project.cli("fetch").output
    feed = project.folder / "samples" / "briefings.xml"
    feed.write_text(
        feed.read_text().replace(
            "Port of Valdera reopens after crane strike ends",
            "Valdera port back at work as strike ends",
        )
    )
    assert "0 new, 1 updated" in project.cli("fetch").output
    stored = by_guid(project)
    assert len(stored) == 15
    assert stored["port-of-valdera-reopens-after-crane-strike-ends"].title == (
        "Valdera port back at work as strike ends"
    )


def test_one_bad_feed_does_not_stop_the_others(project: Project) -> None:
    data = project.config()
    data["feeds"].insert(0, {"name": "Broken", "url": "missing/feed.xml"})
    data["feeds"].append({"name": "Not a feed", "url": "subscribers/weekly.csv"})
    project.write_config(data)
    result = project.cli("fetch")
    assert "15 new" in result.output
    assert "2 failed" in result.output
    assert "feed 'Broken': no such file" in result.output
    assert "Broken: feed 'Broken'" not in result.output  # named once
    assert project.cli("fetch", "--strict", expect=1).exit_code == 1


def _sample_entries(project: Project) -> tuple[Database, int, list[CleanEntry]]:
    settings = load_settings(project.config_path)
    database = Newsletter(settings).database  # the caller disposes of it
    with database.session() as session:
        feed_id = session.exec(select(Feed.id)).one()
    assert feed_id is not None
    path = project.folder / "samples" / "briefings.xml"
    return database, feed_id, prepare_entries(path.read_bytes(), {}, "sample", path.as_uri())


def test_a_crash_mid_feed_keeps_the_briefings_stored_before_it(project: Project) -> None:
    database, feed_id, entries = _sample_entries(project)

    def failing_after_five() -> Iterator[CleanEntry]:
        yield from entries[:5]
        raise RuntimeError("killed")

    with DriverConnection(database.engine) as connection, pytest.raises(RuntimeError):
        store_entries(connection, feed_id, failing_after_five())
    database.dispose()
    assert [b.guid for b in briefings(project)] == [e.guid for e in entries[:5]]
    assert "10 new" in project.cli("fetch").output


def test_an_edit_moves_the_date_only_when_it_carries_one(project: Project) -> None:
    database, feed_id, entries = _sample_entries(project)
    first, second = entries[0], entries[1]
    later = datetime(2031, 5, 6, 7, 8, 9, tzinfo=UTC)
    with DriverConnection(database.engine) as connection:
        assert store_entries(connection, feed_id, entries).new == 15
        dated_before = {b.guid: b.published_at for b in briefings(project)}
        edits = [
            replace(first, title="Dated edit", published=later),
            replace(second, title="Undated edit", published=None),
            replace(second, title="Undated edit, again", published=None),  # twice in one feed
        ]
        counts = store_entries(connection, feed_id, [*edits, *entries[2:]])
    database.dispose()
    assert (counts.new, counts.updated, counts.unchanged) == (0, 3, 13)
    stored = {b.guid: b for b in briefings(project)}
    assert len(stored) == 15
    assert stored[first.guid].title == "Dated edit"
    assert stored[first.guid].published_at == later
    assert stored[second.guid].title == "Undated edit, again"
    assert stored[second.guid].published_at == dated_before[second.guid]


def _corpus_rows(folder: str) -> list[dict[str, str]]:
    with (FEEDS / folder / "FEEDPARSER_RESULTS.tsv").open(newline="") as handle:
        return list(csv.DictReader(handle, delimiter="\t"))


@pytest.mark.parametrize("row", _corpus_rows("real"), ids=lambda row: row["file"])
def test_real_feeds_parse_to_the_expected_entries(row: dict[str, str]) -> None:
    path = FEEDS / "real" / row["file"]
    parsed = parse_feed(path.read_bytes(), name=row["file"])
    assert len(parsed.entries) == int(row["entries"])
    for entry in parsed.entries:
        clean = clean_entry(entry, parsed, path.as_uri())
        assert clean.title.strip()
        assert "\n" not in clean.title
        assert "\r" not in clean.source_name
        assert clean.guid
        assert not ACTIVE_CONTENT.search(clean.body_html)


@pytest.mark.parametrize(
    "path",
    sorted(
        p
        for folder in ("illformed", "encoding")
        for p in (FEEDS / folder).iterdir()
        if p.suffix in (".xml", ".rss", ".atom", ".rdf")
    ),
    ids=lambda p: p.name,
)
def test_broken_and_oddly_encoded_feeds_never_crash(path: Path) -> None:
    try:
        parsed = parse_feed(path.read_bytes(), name=path.name)
    except FeedError as error:
        assert path.name in str(error)
        return
    for entry in parsed.entries:
        clean_entry(entry, parsed, path.as_uri())


@pytest.mark.parametrize("path", sorted((FEEDS / "sanitize").glob("*.xml")), ids=lambda p: p.name)
def test_hostile_html_comes_out_inert(path: Path) -> None:
    parsed = parse_feed(path.read_bytes(), name=path.name)
    for entry in parsed.entries:
        clean = clean_entry(entry, parsed, "https://feed.example/")
        assert not ACTIVE_CONTENT.search(clean.body_html), clean.body_html


HOSTILE_LINKS = b"""<?xml version="1.0"?><rss version="2.0"><channel>
<title>Hostile</title><link>https://hostile.example/</link>
<item><title>Script link</title><guid>a</guid><link>javascript:alert(document.cookie)</link>
<source url="data:text/html,&lt;script&gt;alert(1)&lt;/script&gt;">Evil</source></item>
<item><title>Relative link</title><guid>b</guid><link>/posts/2</link>
<source url="https://outlet.example/feed">Outlet</source></item>
<item><title>Forged marker [[nl-0000:email]]</title><guid>c</guid>
<link>https://hostile.example/c?who=[[nl:email]]</link></item>
</channel></rss>"""


def _dek_of_whole_summary(summary_html: str) -> str:
    text = plain_text(summary_html)
    if len(text) <= MAX_DEK_CHARS:
        return text
    return text[: MAX_DEK_CHARS - 1].rsplit(" ", 1)[0] + "…"


def test_the_dek_of_a_long_summary_is_the_start_of_its_whole_text() -> None:
    checked = 0
    for path in sorted((FEEDS / "real").iterdir()):
        if path.suffix not in (".xml", ".rss", ".atom", ".rdf"):
            continue
        parsed = parse_feed(path.read_bytes(), name=path.name)
        for entry in parsed.entries:
            if entry.content_html:
                dek = clean_entry(entry, parsed, path.as_uri()).dek
                assert dek == _dek_of_whole_summary(entry.summary_html), path.name
                checked += 1
    assert checked > 400
    # Markup so heavy that the first few thousand characters hold little text.
    heavy = '<p><a href="https://example.com/a" title="x">a</a></p>' * 200 + "<p>" + "word " * 200
    entry = ParsedEntry("g", "https://example.com/", "T", heavy, "<p>body</p>", (), None, "", "")
    feed = ParsedFeed("Feed", "https://example.com/")
    assert clean_entry(entry, feed, "https://example.com/feed").dek == _dek_of_whole_summary(heavy)


def test_titles_are_one_line_without_control_characters() -> None:
    hostile = "Breaking:\r\nBcc: x@example.com\x00\x1b[31m\u2028red\x85 \u00a0news\x9f\t end "
    assert plain_text(hostile) == "Breaking: Bcc: x@example.com [31m red news end"
    assert plain_text("<b>Bold</b>&amp;<br>next\nline") == "Bold& next line"


def test_only_absolute_web_links_from_a_feed_reach_the_email() -> None:
    parsed = parse_feed(HOSTILE_LINKS, name="hostile")
    script, relative, forged = (
        clean_entry(e, parsed, "https://hostile.example/feed.xml") for e in parsed.entries
    )
    assert script.url == "https://hostile.example/"  # the feed's own link instead
    # "Open the original source" never opens the feed's home page: no usable link, no link.
    assert script.source_url == ""
    assert relative.url == "https://hostile.example/posts/2"
    assert relative.source_url == "https://outlet.example/feed"
    assert forged.url.startswith("https://hostile.example/c?who=")


def test_a_link_wrapped_across_lines_in_the_feed_is_kept_whole() -> None:
    assert web_url("https://site.example/a-long-\narticle") == "https://site.example/a-long-article"
    assert web_url("/a-long-\narticle", "https://site.example/") == (
        "https://site.example/a-long-article"
    )


def test_a_feed_moved_in_config_during_a_fetch_keeps_its_new_address(project: Project) -> None:
    samples = project.folder / "samples"
    shutil.copy(samples / "briefings.xml", samples / "second.xml")
    data = project.config()
    data["feeds"].append({"name": "Second", "url": "samples/second.xml"})
    project.write_config(data)
    settings = load_settings(project.config_path)
    moved: list[str] = []

    def move_the_other_feed(report: FeedReport) -> None:
        # An editor moves a feed while the fetch runs, and any command syncs the database.
        if moved:
            return
        data = project.config()
        other = next(feed for feed in data["feeds"] if feed["name"] != report.name)
        new_path = other["url"].replace(".xml", "-moved.xml")
        shutil.copy(project.folder / other["url"], project.folder / new_path)
        other["url"] = new_path
        project.write_config(data)
        with Newsletter(load_settings(project.config_path)) as command:
            command.database  # noqa: B018 (opening it syncs config.toml, as every command does)
        moved.append(other["name"])

    with Newsletter(settings) as app:
        app.feeds.fetch(on_feed=move_the_other_feed)
    database = Database(load_settings(project.config_path))
    with database.session() as session:
        feed = session.exec(select(Feed).where(Feed.name == moved[0])).one()
    database.dispose()
    assert feed.url == feed.config_url
    assert feed.url.endswith("-moved.xml")


def test_a_web_page_is_not_a_feed() -> None:
    page = b"<!doctype html><html><head><title>Home</title></head><body><p>Hi</p></body></html>"
    with pytest.raises(FeedError, match="could not be read as RSS or Atom"):
        parse_feed(page, name="homepage")
    empty_but_valid = b'<rss version="2.0"><channel><title>Quiet</title></channel></rss>'
    assert parse_feed(empty_but_valid, name="quiet").entries == []
