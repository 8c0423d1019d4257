"""A briefing's shape from real feeds: dek, key points and attribution as readers see them.

The seed briefing opens with its dek, then its key points, and ends with the outlet it came
from and a link to the original; feeds put navigation, widgets and live-blog times where a
careless reading takes those from.
"""

from __future__ import annotations

import re
import time
from dataclasses import replace
from pathlib import Path

import pytest
from sqlmodel import select

from newsletter.app import Newsletter
from newsletter.config import load_settings
from newsletter.db import DriverConnection
from newsletter.feeds.clean import CleanEntry, clean_entry, prepare_entries
from newsletter.feeds.ingest import store_entries
from newsletter.feeds.parse import ParsedEntry, ParsedFeed, parse_feed
from newsletter.feeds.sanitize import clean_html, plain_text, web_url
from newsletter.feeds.shape import first_paragraph, is_bare_time, key_points
from newsletter.models import Briefing, Feed
from tests.conftest import CORPUS, ROOT, Project
from tests.feedserver import FeedServer
from tests.test_fetch_http import configure

REAL = CORPUS / "feeds" / "real"
REAL_FEEDS = sorted(p for p in REAL.iterdir() if p.suffix in (".xml", ".rss", ".atom", ".rdf"))
# Written apart from the code under test: what a reader would call a menu or a tab.
MENU_WORDS = {"home", "news", "video", "share", "tweet", "email", "print", "more", "next", "menu"}
TIME_ONLY = re.compile(
    r"\W*(?:\d{1,2}(?:[.:]\d{2})?\s*(?:[ap]\.?m\.?)?\s*(?:GMT|BST|UTC|[ECMP][SD]?T)?"
    r"|\d{4}-\d{2}-\d{2}(?:[T ][\d:.]+(?:Z|[+-]\d{2}:?\d{2})?)?"
    r"|(?:\w{3},?\s+)?\d{1,2}\s+\w+\s+\d{4}(?:\s+[\d:.]+)?(?:\s+\w{3})?)\W*",
    re.IGNORECASE,
)
TOO_OLD = "older than 7 days: [digest] window_days keeps them out of digests"


def configured_name(path: Path) -> str:
    return f"Configured {path.stem}"


def cleaned(path: Path) -> list[tuple[ParsedEntry, ParsedFeed, CleanEntry]]:
    """A corpus feed as the fetch's parser processes clean it, beside what the feed says."""
    content = path.read_bytes()
    parsed = parse_feed(content, name=path.name)
    clean = prepare_entries(content, {}, configured_name(path), path.as_uri())
    assert len(clean) == len(parsed.entries)
    return [
        (entry, parsed, briefing) for entry, briefing in zip(parsed.entries, clean, strict=True)
    ]


def is_menu_label(point: str) -> bool:
    return len(point.split()) < 3 and (point.isupper() or point.casefold() in MENU_WORDS)


@pytest.mark.parametrize("path", REAL_FEEDS, ids=lambda p: p.name)
def test_real_feeds_give_no_widget_key_points_and_no_time_only_deks(path: Path) -> None:
    for _entry, _feed, briefing in cleaned(path):
        assert not [point for point in briefing.key_points if is_menu_label(point)], briefing.title
        assert not (briefing.dek and TIME_ONLY.fullmatch(briefing.dek)), briefing.dek
        assert not is_bare_time(briefing.dek)


@pytest.mark.parametrize("path", REAL_FEEDS, ids=lambda p: p.name)
def test_real_feeds_attribute_the_outlet_and_link_the_article(path: Path) -> None:
    for entry, feed, briefing in cleaned(path):
        home = web_url(feed.link, path.as_uri())
        link = web_url(entry.link, home or path.as_uri())
        assert briefing.source_name == (plain_text(entry.source_name) or configured_name(path))
        if link:
            assert briefing.source_url in (web_url(entry.source_url, link), link)
            assert briefing.source_url
            if link != home:
                assert briefing.source_url != home, briefing.title
        else:
            assert briefing.source_url != home or not home


def test_the_issues_feeds_read_as_the_issue_wants() -> None:
    techcrunch = cleaned(REAL / "techcrunch-2011.rss")
    assert not [b.key_points for _, _, b in techcrunch if b.key_points]  # no widget tabs
    assert all(b.source_url.startswith("http://feedproxy.google.com/") for _, _, b in techcrunch)
    guardian = {b.url: b for _, _, b in cleaned(REAL / "guardian-uk.rss")}
    live = guardian[
        "https://www.theguardian.com/football/live/2018/jan/31/"
        "tottenham-hotspur-v-manchester-united-premier-league-live"
    ]
    assert live.dek.startswith("13 min: ")  # past "8.13pm GMT"
    assert live.source_url == live.url != "https://www.theguardian.com/us"
    train = next(b for b in guardian.values() if "train-carrying" in b.url)
    # The Guardian's standfirst bullets open the item, right before its first paragraph.
    assert train.key_points == [
        "One person who was not aboard the train was killed",
        "Two crew members and two passengers were taken to a local hospital with minor injuries",
    ]
    science = cleaned(REAL / "science-twis-rdf.rdf")
    assert {b.source_name for _, _, b in science} == {"Configured science-twis-rdf"}
    wapo = cleaned(REAL / "washingtonpost-wellness-2012.rss")
    named = [b for e, _, b in wapo if e.source_name]
    assert named
    assert all(b.source_name == "The Washington Post" for b in named)
    assert all(b.source_url == b.url for b in named)  # <source> without url: the item's link


def test_the_sample_feed_keeps_its_key_points_and_deks() -> None:
    path = ROOT / "samples" / "briefings.xml"
    entries = prepare_entries(path.read_bytes(), {}, "SignalDesk briefings", path.as_uri())
    assert len(entries) == 15
    for entry in entries:
        assert len(entry.key_points) == 3
        assert entry.dek
        assert entry.dek == first_paragraph(entry.body_html)
        assert entry.source_url.startswith("https://")
        assert "signaldesk.example" not in entry.source_url


DEK = "<p>Nordvale Bank will block outside coding assistants from next quarter.</p>"
POINTS = (
    "<ul><li>Assistants blocked next quarter</li><li>Engineers move to an in-house tool</li></ul>"
)
SECTIONS = "<h3>What happened</h3><p>An internal memo says so.</p>"


def points_of(fragment: str) -> list[str]:
    return key_points(clean_html(fragment, base_url="https://outlet.example/a"))


def test_key_points_right_after_the_dek() -> None:
    expected = ["Assistants blocked next quarter", "Engineers move to an in-house tool"]
    assert points_of(DEK + POINTS + SECTIONS) == expected
    picture = '<p><img src="/chart.png" alt=""></p>'
    assert points_of(picture + DEK + "\n<br>\n" + POINTS + SECTIONS) == expected
    # The same list later in the body is part of the story, not its key points.
    assert points_of(DEK + SECTIONS + POINTS) == []


def test_key_points_under_a_key_points_heading() -> None:
    for heading in (
        "<h2>Key points</h2>",
        "<p><strong>Key takeaways:</strong></p>",
        "<h4>What to know</h4>",
    ):
        assert points_of(DEK + SECTIONS + heading + POINTS) == [
            "Assistants blocked next quarter",
            "Engineers move to an in-house tool",
        ]
    assert points_of(DEK + SECTIONS + "<h2>Changelog</h2>" + POINTS) == []


def test_navigation_widgets_and_tabs_are_never_key_points() -> None:
    nav = '<ul><li><a href="/">Home</a></li><li><a href="/world">World</a></li></ul>'
    assert points_of(nav + DEK + SECTIONS) == []
    assert points_of(DEK + nav + SECTIONS) == []
    tabs = "<ul><li>NEWS</li><li>VIDEO</li><li>Share</li></ul>"
    assert points_of(DEK + tabs + SECTIONS) == []
    widget = '<h2><a href="http://crunchbase.com">Crunchbase</a></h2><ul><li><a>RIM</a></li></ul>'
    assert points_of(DEK + widget) == []
    related = '<ul><li><a href="/b">Trump promised unity but emphasized discord</a></li></ul>'
    assert points_of(DEK + related) == []
    # A list that goes on with the first paragraph's sentence, and show notes with sub-lists.
    assert points_of("<p>The new app includes the following:</p>" + POINTS) == []
    outline = "<ul><li>Follow-up:<ul><li>One</li><li>Two</li></ul></li><li>Three</li></ul>"
    assert points_of(DEK + outline) == []


def test_a_dek_is_never_a_bare_time_or_date() -> None:
    body = "<p>8.13pm GMT</p><p></p><p>13 min: Lingard bursts down the left.</p>"
    assert first_paragraph(body) == "13 min: Lingard bursts down the left."
    assert first_paragraph("<p>Updated 31 January 2018 20.13 GMT</p>") == ""
    for bare in ("8.13pm GMT", "20:13", "2018-01-31T20:13:00Z", "Wed, 31 Jan 2018 20:13 EST"):
        assert is_bare_time(bare), bare
    for text in ("8 killed in Kabul", "2018 was a long year", "Tuesday's vote", ""):
        assert not is_bare_time(text), text
    started = time.perf_counter()
    assert not is_bare_time("1" * 5000 + "x")  # no backtracking blow-up on a run of digits
    assert time.perf_counter() - started < 0.5
    entry = ParsedEntry(
        "g", "https://outlet.example/live", "Live", "<p>8.13pm GMT</p>",
        "<p>8.13pm GMT</p><p>Kick-off at Wembley.</p>", (), None, "", "",
    )  # fmt: skip
    feed = ParsedFeed("Outlet", "https://outlet.example/")
    assert clean_entry(entry, feed, "https://outlet.example/feed", "Outlet").dek == (
        "Kick-off at Wembley."
    )


SOURCED = b"""<?xml version="1.0"?><rss version="2.0"><channel>
<title>sci twis</title><link>https://aggregator.example/</link>
<item><title>Sourced</title><guid>a</guid><link>https://aggregator.example/items/1</link>
<source url="https://outlet.example/2024/story">Outlet Daily</source></item>
<item><title>Named only</title><guid>b</guid><link>https://aggregator.example/items/2</link>
<source>Named Outlet</source></item>
<item><title>Own</title><guid>c</guid><link>/items/3</link></item>
</channel></rss>"""


def test_the_outlet_and_the_link_come_from_source_else_the_config_and_the_item() -> None:
    sourced, named, own = prepare_entries(SOURCED, {}, "Aggregator", "https://aggregator.example/f")
    assert (sourced.source_name, sourced.source_url) == (
        "Outlet Daily",
        "https://outlet.example/2024/story",
    )
    assert (named.source_name, named.source_url) == (
        "Named Outlet",
        "https://aggregator.example/items/2",
    )
    assert (own.source_name, own.source_url) == ("Aggregator", "https://aggregator.example/items/3")


def test_briefings_stored_the_old_way_are_corrected_at_the_next_fetch(project: Project) -> None:
    database = Newsletter(load_settings(project.config_path)).database  # feeds synced
    path = REAL / "techcrunch-2011.rss"
    entries = prepare_entries(path.read_bytes(), {}, "TechCrunch", path.as_uri())
    # What the rule before this one stored: widget tabs as key points, the feed's home page.
    old = [
        replace(e, key_points=["RESEARCH IN MOTION"], source_url="http://techcrunch.com")
        for e in entries
    ]
    with database.session() as session:
        feed_id = session.exec(select(Feed.id)).one()
    assert feed_id is not None
    with DriverConnection(database.engine) as connection:
        assert store_entries(connection, feed_id, old).new == 20
        again = store_entries(connection, feed_id, entries)
    assert (again.new, again.updated) == (0, 20)
    with database.session() as session:
        stored = session.exec(select(Briefing)).all()
    database.dispose()
    assert {tuple(b.key_points) for b in stored} == {()}
    assert not [b for b in stored if b.source_url == "http://techcrunch.com"]


def test_fetch_says_how_many_new_briefings_are_too_old_for_a_digest(
    project: Project, feed_server: FeedServer
) -> None:
    configure(
        project,
        {
            "Craigslist 2017": feed_server.url("real/craigslist-sfbay-2017.rdf"),
            "SignalDesk briefings": str(project.folder / "samples" / "briefings.xml"),
        },
    )
    output = project.cli("fetch").output
    assert f"feed 'Craigslist 2017': 25 new (25 {TOO_OLD})" in output
    assert "feed 'SignalDesk briefings':" not in output  # undated: first seen now, in the window
    assert f"2 feed(s): 40 new (25 {TOO_OLD}), 0 updated, 0 failed." in output
    # Nothing new, nothing to explain; a narrower window is named as it is.
    assert "2 feed(s): 0 new, 0 updated, 0 failed." in project.cli("fetch").output
    project.update("database", url="sqlite:///narrower.db")  # all new again
    project.update("digest", window_days=1)
    output = project.cli("fetch").output
    assert "25 new (25 older than 1 day: [digest] window_days keeps them out of digests)" in output
