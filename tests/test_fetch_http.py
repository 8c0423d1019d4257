"""Fetching over real HTTP on 127.0.0.1: corpus, conditional GET, redirects, 410, gzip, timeouts."""

from __future__ import annotations

import csv
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlmodel import select

from newsletter.__main__ import _fetching
from newsletter.app import Newsletter
from newsletter.config import Settings, load_settings
from newsletter.db import Database
from newsletter.models import Briefing, Feed
from newsletter.services.feeds import FeedReport
from tests.conftest import CORPUS, Project
from tests.feedserver import FeedServer
from tests.test_feeds import ACTIVE_CONTENT

FEEDS = CORPUS / "feeds"


def configure(project: Project, feeds: dict[str, str], **fetch: float) -> Settings:
    data = project.config()
    data["feeds"] = [{"name": name, "url": url} for name, url in feeds.items()]
    data["fetch"] = {"timeout": 5, **fetch}
    project.write_config(data)
    return load_settings(project.config_path)


def fetch_feeds(settings: Settings) -> list[FeedReport]:
    with Newsletter(settings) as app:
        return app.feeds.fetch()


def by_name(reports: list[FeedReport]) -> dict[str, FeedReport]:
    return {report.name: report for report in reports}


def stored(settings: Settings) -> tuple[dict[str, Feed], list[Briefing]]:
    database = Database(settings)
    with database.session() as session:
        feeds = {feed.name: feed for feed in session.exec(select(Feed)).all()}
        briefings = list(session.exec(select(Briefing)).all())
    database.dispose()
    return feeds, briefings


def expected_entries() -> dict[str, int]:
    with (FEEDS / "real" / "FEEDPARSER_RESULTS.tsv").open(newline="") as handle:
        return {row["file"]: int(row["entries"]) for row in csv.DictReader(handle, delimiter="\t")}


def test_every_real_feed_ingests_over_http_and_a_refetch_is_all_not_modified(
    project: Project, feed_server: FeedServer
) -> None:
    expected = expected_entries()
    settings = configure(project, {name: feed_server.url(f"real/{name}") for name in expected})
    reports = by_name(fetch_feeds(settings))
    assert {name: r.status for name, r in reports.items()} == dict.fromkeys(expected, "ok")
    # A feed may repeat a guid (an entry and its edit): those become one briefing, updated.
    assert {
        name: r.counts.new + r.counts.updated + r.counts.unchanged for name, r in reports.items()
    } == expected
    _, briefings = stored(settings)
    assert all(briefing.title.strip() for briefing in briefings)
    assert len(briefings) == sum(r.counts.new for r in reports.values())

    again = fetch_feeds(settings)
    assert {r.status for r in again} == {"not modified"}
    conditional = [headers for path, headers in feed_server.requests[len(expected) :]]
    assert all("If-None-Match" in headers for headers in conditional)


def test_gzip_permanent_and_temporary_redirects(project: Project, feed_server: FeedServer) -> None:
    settings = configure(
        project,
        {
            "gzip": feed_server.url("gzip/real/daringfireball.atom"),
            "moved": feed_server.url("moved/real/scriptingnews.rss"),
            "temporary": feed_server.url("temporary/real/macworld.rss"),
        },
    )
    reports = by_name(fetch_feeds(settings))
    assert all(report.status == "ok" and report.counts.new > 0 for report in reports.values())
    feeds, _ = stored(settings)
    assert feeds["moved"].url == feed_server.url("real/scriptingnews.rss")
    assert feeds["temporary"].url == feed_server.url("temporary/real/macworld.rss")
    fetch_feeds(settings)
    assert feed_server.count("moved/real/scriptingnews.rss") == 1  # the new URL is used now


def test_gone_disables_the_feed_and_errors_do_not_stop_the_rest(
    project: Project, feed_server: FeedServer
) -> None:
    settings = configure(
        project,
        {
            "gone": feed_server.url("gone"),
            "broken": feed_server.url("error"),
            "missing": feed_server.url("real/nope.xml"),
            "good": feed_server.url("real/guardian-uk.rss"),
        },
    )
    reports = by_name(fetch_feeds(settings))
    assert reports["gone"].status == "gone"
    assert reports["broken"].status == "error"
    assert "HTTP 500" in reports["broken"].error
    assert "HTTP 404" in reports["missing"].error
    assert reports["good"].status == "ok"
    feeds, _ = stored(settings)
    assert feeds["gone"].disabled
    assert feeds["broken"].last_error
    fetch_feeds(settings)
    assert feed_server.count("gone") == 1


def test_slow_and_hanging_servers_time_out(project: Project, feed_server: FeedServer) -> None:
    feed_server.slow_seconds = 3
    settings = configure(
        project,
        {
            "slow": feed_server.url("slow"),
            "hang": feed_server.url("hang"),
            "good": feed_server.url("real/bbc-urdu.rss"),
        },
        timeout=1,
    )
    started = time.monotonic()
    reports = by_name(fetch_feeds(settings))
    assert time.monotonic() - started < 10
    assert "did not answer in time" in reports["slow"].error
    assert "did not answer in time" in reports["hang"].error
    assert reports["good"].status == "ok"


def test_fetch_command_exit_codes_and_table(project: Project, feed_server: FeedServer) -> None:
    configure(
        project, {"good": feed_server.url("real/bbc-urdu.rss"), "bad": feed_server.url("error")}
    )
    result = project.cli("fetch")
    assert "feed 'bad': http://127.0.0.1" in result.output
    assert "1 failed" in result.output
    project.cli("fetch", "--strict", expect=1)
    configure(project, {"bad": feed_server.url("error")})
    project.cli("fetch", expect=1)


def _corpus(folder: str) -> list[Path]:
    return sorted(p for p in (FEEDS / folder).iterdir() if p.suffix not in (".md", ".tsv"))


def test_illformed_encoded_and_hostile_feeds_over_http(
    project: Project, feed_server: FeedServer
) -> None:
    files = [
        f"{folder}/{p.name}"
        for folder in ("illformed", "encoding", "sanitize")
        for p in _corpus(folder)
    ]
    settings = configure(project, {name: feed_server.url(name) for name in files})
    reports = fetch_feeds(settings)
    assert len(reports) == len(files)
    assert sum(report.status == "ok" for report in reports) > len(files) * 0.8
    assert all(report.error.startswith("feed ") for report in reports if report.error)
    _, briefings = stored(settings)
    for briefing in briefings:
        assert not ACTIVE_CONTENT.search(briefing.body_html), briefing.body_html
        assert "\n" not in briefing.title


def test_feeds_command_lists_last_fetch_errors_and_counts(
    project: Project, feed_server: FeedServer
) -> None:
    configure(
        project, {"good": feed_server.url("real/bbc-urdu.rss"), "gone": feed_server.url("gone")}
    )
    assert "last fetched never" in project.cli("feeds").output
    project.cli("fetch")
    output = project.cli("feeds").output
    assert f"good: {expected_entries()['bbc-urdu.rss']} briefing(s), last fetched 20" in output
    assert "gone (disabled): 0 briefing(s)" in output
    assert "last error: the server says the feed is gone (HTTP 410)" in output


def test_the_installed_command_fetches_several_feeds_in_its_parser_processes(
    project: Project, feed_server: FeedServer
) -> None:
    # The console script, not the in-process runner: the parser processes start from a fork
    # server that re-imports the script the program was started from.
    configure(
        project,
        {
            "fireball": feed_server.url("real/daringfireball.atom"),
            "scripting": feed_server.url("real/scriptingnews.rss"),
        },
        processes=2,
    )
    command = [str(Path(sys.executable).parent / "newsletter"), "fetch"]
    result = subprocess.run(
        command, cwd=project.folder, capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stderr
    expected = expected_entries()
    total = expected["daringfireball.atom"] + expected["scriptingnews.rss"]
    # Both feeds are from 2017: the new count says how many are older than the digest window.
    summary = re.search(
        r"2 feed\(s\): (\d+) new \((\d+) older than 7 days: \[digest\] window_days keeps them "
        r"out of digests\), (\d+) updated, 0 failed\.",
        result.stdout,
    )
    assert summary, result.stdout
    # A feed that repeats a guid (an entry and its edit) updates the briefing it just added.
    assert int(summary.group(1)) + int(summary.group(3)) == total
    assert int(summary.group(2)) == int(summary.group(1))


@pytest.mark.parametrize(
    ("arguments", "fetching"),
    [
        (["fetch"], True),
        (["--config", "fetch", "fetch", "--strict"], True),
        (["-c", "other.toml", "fetch"], True),
        (["fetch", "--help"], False),
        (["feeds"], False),
        (["subscribers", "import", "fetch"], False),
        (["--config", "fetch"], False),
        ([], False),
    ],
)
def test_only_the_fetch_command_starts_the_parser_server_early(
    arguments: list[str], fetching: bool
) -> None:
    assert _fetching(arguments) is fetching
