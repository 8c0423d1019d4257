"""The digest: what it picks, how it orders and merges, and what the e-mail looks like."""

from __future__ import annotations

import os
import re
from datetime import UTC, datetime, timedelta
from itertools import cycle, islice
from pathlib import Path

import pytest

from newsletter.config import load_settings
from newsletter.digest.plan import Candidate, plan_digest, same_story
from newsletter.digest.themes import ThemeMatcher
from newsletter.digest.view import DigestBriefing, DigestSection, DigestView, Source, anchor
from newsletter.feeds.clean import prepare_entries
from newsletter.render.templating import render_digest
from tests.conftest import ROOT, Project

GOLDEN = Path(__file__).parent / "golden"
SETTINGS = load_settings(ROOT / "config.toml")
MATCHER = ThemeMatcher(SETTINGS.themes, SETTINGS.digest.fallback_theme)
NOW = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)
GOLDEN_NONCE = "g0lden"


def candidate(id_: int, title: str, theme: str, hours_ago: int) -> Candidate:
    return Candidate(id_, title, (theme,), NOW - timedelta(hours=hours_ago))


def plan(candidates: list[Candidate], **options: int) -> list[tuple[int, str, bool, bool]]:
    result = plan_digest(
        candidates,
        MATCHER,
        max_per_theme=options.get("per_theme", 6),
        max_briefings=options.get("total", 30),
        merge_similarity=0.85,
        pinned=options.get("pinned"),
    )
    assert result is not None
    return [(i.candidate.id, i.theme, i.lead, i.in_email) for i in result.items]


def test_themes_in_config_order_newest_first_lead_from_the_first_theme() -> None:
    items = plan(
        [
            candidate(1, "Grid", "Energy", 1),
            candidate(2, "Old AI", "AI & Software", 9),
            candidate(3, "New AI", "AI & Software", 2),
            candidate(4, "Law", "Policy", 0),
            candidate(5, "Misc", "Nowhere", 3),
        ]
    )
    assert items == [
        (3, "AI & Software", True, True),
        (2, "AI & Software", False, True),
        (1, "Energy", False, True),
        (4, "Policy", False, True),
        (5, "More briefings", False, True),
    ]


def test_a_pinned_briefing_leads() -> None:
    items = plan(
        [candidate(1, "Grid", "Energy", 1), candidate(3, "New AI", "AI & Software", 2)], pinned=1
    )
    assert items[0] == (1, "Energy", True, True)


def test_caps_move_the_rest_to_the_web() -> None:
    security = [
        candidate(i, f"Breach number {i} at a different firm", "Security", i) for i in range(1, 6)
    ]
    items = plan([*security, candidate(9, "Grid", "Energy", 0)], per_theme=2, total=4)
    shown = [(id_, in_email) for id_, _, _, in_email in items]
    assert shown == [(1, True), (2, True), (3, True), (4, False), (5, False), (9, True)]


def test_the_same_story_from_two_outlets_is_one_item() -> None:
    assert same_story(
        "Port of Valdera reopens after crane strike",
        "Port of Valdera reopens after crane strike ends",
        0.85,
    )
    assert not same_story("Port of Valdera reopens", "Port of Lisgarde closes", 0.85)
    assert not same_story("Acme reports Q3 results", "Acme reports Q4 results", 0.85)
    result = plan_digest(
        [
            candidate(1, "Port of Valdera reopens after crane strike", "Logistics", 3),
            candidate(2, "Port of Valdera reopens after crane strike ends", "Logistics", 1),
        ],
        MATCHER,
        max_per_theme=6,
        max_briefings=30,
        merge_similarity=0.85,
    )
    assert result is not None
    assert [(i.candidate.id, [m.id for m in i.merged]) for i in result.items] == [(2, [1])]


def sample_briefings() -> list[DigestBriefing]:
    path = ROOT / "samples" / "briefings.xml"
    entries = prepare_entries(path.read_bytes(), {}, "sample", path.as_uri())
    return [
        DigestBriefing(
            id=number,
            title=e.title,
            url=e.url,
            dek=e.dek,
            key_points=tuple(e.key_points),
            sources=(Source(e.source_name, e.source_url),),
            theme=MATCHER.match(e.tags, e.title)[0],
            published_at=NOW - timedelta(hours=number),
            why=e.why_it_matters,
        )
        for number, e in enumerate(entries, start=1)
    ]


def view_of(briefings: list[DigestBriefing], *, more: int = 0) -> DigestView:
    lead, *rest = briefings
    themes: dict[str, list[DigestBriefing]] = {}
    for briefing in rest:
        themes.setdefault(briefing.theme, []).append(briefing)
    sections = tuple(
        DigestSection(theme, anchor(theme), tuple(items), more) for theme, items in themes.items()
    )
    return DigestView(
        id=7,
        nonce=GOLDEN_NONCE,
        list_slug="weekly",
        list_name="The Weekly Briefing",
        subject="SignalDesk Weekly: golden",
        preheader="This week: golden",
        window_start=NOW - timedelta(days=7),
        window_end=NOW,
        lead=lead,
        sections=sections,
    )


def test_golden_html_and_text() -> None:
    """A change to the e-mail is a reviewed diff: UPDATE_GOLDEN=1 rewrites the files."""
    rendered = render_digest(view_of(sample_briefings(), more=1), SETTINGS)
    for name, actual in (("digest.html", rendered.html), ("digest.txt", rendered.text)):
        path = GOLDEN / name
        if os.environ.get("UPDATE_GOLDEN"):
            path.write_text(actual, encoding="utf-8")
        assert actual == path.read_text(encoding="utf-8"), f"{name} changed; review the diff"


def test_every_element_a_reader_needs_is_there_and_every_link_is_absolute() -> None:
    briefings = sample_briefings()
    rendered = render_digest(view_of(briefings, more=2), SETTINGS)
    html = rendered.html
    for briefing in briefings:
        assert f'href="{briefing.url}"' in html
        assert f'href="{briefing.source_url}"' in html
    # Every story names its outside source in the publication's words, the outlet linked.
    assert html.count("Source assisted · <a href=") == len(briefings)
    for needle in (
        "Read our standards</a>",
        ">Unsubscribe</a>",
        ">View in your browser</a>",
        "1 Example Street, Springfield",
        "2 more on Logistics on the web</a>",
        "Top story",
        '<html lang="en"',
        "prefers-color-scheme: dark",
        f"[[nl-{GOLDEN_NONCE}:unsubscribe_url]]",
    ):
        assert needle in html, needle
    links = re.findall(r'href="([^"]*)"', html)
    assert links
    assert all(link.startswith(("https://", "http://", "#", "[[nl-")) for link in links), links
    assert all(
        link.startswith("https://") or link.startswith(("#", "[[nl-"))
        for link in links
        if "example" in link
    )


@pytest.mark.parametrize("count", [30])
def test_thirty_briefings_stay_well_under_gmail_clipping(count: int) -> None:
    briefings = list(islice(cycle(sample_briefings()), count))
    rendered = render_digest(view_of(briefings), SETTINGS)
    assert rendered.html_bytes < 90 * 1024, rendered.html_bytes
    assert not rendered.clipped_by_gmail
    assert rendered.html.count("Source assisted · <a href=") == count


def test_text_part_wraps_at_78_columns_except_lone_urls() -> None:
    rendered = render_digest(view_of(sample_briefings()), SETTINGS)
    for line in rendered.text.splitlines():
        url = line.lstrip()  # a URL under a brief is indented with it
        assert len(line) <= 78 or (url.startswith(("https://", "http://")) and " " not in url)


def test_pinning_and_caps_through_the_cli(project: Project) -> None:
    project.update("digest", max_per_theme=2)
    project.cli("fetch")
    pinned = project.cli(
        "digest", "pin", "signaldesk-briefing-westbrook-library-sunday-hours", "--list", "weekly"
    )
    assert "leads with “Westbrook" in pinned.output
    output = project.cli("preview", "--list", "weekly", "--out", "p").output
    assert "(+3 on the web only)" in output  # AI & Software 3 -> 2, Logistics 4 -> 2
    text = (project.folder / "p" / "digest.txt").read_text()
    assert text.index("== TOP STORY · MORE BRIEFINGS ==") < text.index("Westbrook")
    assert re.search(r"\n2 more on [^\n]+ on the web:\n", text)
    unknown = project.cli("digest", "pin", "nope", "--list", "weekly", expect=1)
    assert "no briefing 'nope'" in unknown.output

    project.cli("subscribers", "import", "subscribers/weekly.csv", "--list", "weekly")
    project.cli("send", "--list", "weekly", "--yes")
    again = project.cli(
        "digest",
        "pin",
        "signaldesk-briefing-westbrook-library-sunday-hours",
        "--list",
        "weekly",
        expect=1,
    )
    assert "“Westbrook library network extends Sunday hours" in again.output
    assert re.search(r"was already in digest \d+ of weekly", again.output)


def test_a_theme_added_to_the_config_applies_to_briefings_already_fetched(
    project: Project,
) -> None:
    project.cli("fetch")
    data = project.config()
    data["themes"].insert(0, {"name": "Libraries", "keywords": ["library"]})
    project.write_config(data)
    project.cli("preview", "--list", "weekly", "--out", "p")
    text = (project.folder / "p" / "digest.txt").read_text()
    assert "== TOP STORY · LIBRARIES ==" in text


def test_undated_briefings_keep_the_feed_order(project: Project) -> None:
    project.cli("fetch")
    project.cli("preview", "--list", "weekly", "--out", "p")
    text = (project.folder / "p" / "digest.txt").read_text()
    # The sample feed has no dates; its first item is the first of the first theme.
    lead = text.split("== TOP STORY · AI & SOFTWARE ==", 1)[1].strip().splitlines()[0]
    assert lead.startswith("Nordvale Bank restricts")
