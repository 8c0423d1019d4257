"""Real feeds from the corpus (Guardian, TechCrunch, Google Cloud, the Washington Post, Science,
a blog), re-dated into this week, through fetch, `digest show` and send: every count the mail
states is the stories it holds, in HTML and text, and no section is empty."""

from __future__ import annotations

import re
import shutil
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

from tests.conftest import ROOT, Project

REAL = ROOT / "tests" / "data" / "corpus" / "feeds" / "real"
FEEDS = {
    "The Guardian": "guardian-uk.rss",
    "TechCrunch": "techcrunch-2011.rss",
    "Google Cloud": "google-cloud-blog.rss",
    "The Washington Post": "washingtonpost-wellness-2012.rss",
    "Science": "science-twis-rdf.rdf",
    "Scripting News": "scriptingnews.rss",
}
THEMES = [
    {"name": "World & Politics", "keywords": ["election", "government", "war", "minister"]},
    {"name": "Tech", "keywords": ["google", "cloud", "app", "startup", "apple"]},
    {"name": "Health & Science", "keywords": ["health", "study", "science", "cells"]},
    {"name": "Culture & Sport", "keywords": ["film", "music", "football", "cricket"]},
]


def redated(text: str) -> str:
    """Every date in the feed moved into the last days, newest first as they came."""
    now = datetime.now(UTC) - timedelta(hours=1)
    counter = iter(range(10_000))

    def rfc822(_match: re.Match[str]) -> str:
        return f"<pubDate>{format_datetime(now - timedelta(minutes=7 * next(counter)))}</pubDate>"

    def iso(match: re.Match[str]) -> str:
        when = now - timedelta(minutes=7 * next(counter))
        return f"<{match.group(1)}>{when:%Y-%m-%dT%H:%M:%SZ}</{match.group(1)}>"

    text = re.sub(r"<pubDate>[^<]*</pubDate>", rfc822, text)
    return re.sub(r"<(dc:date|updated|published)>[^<]*</\1>", iso, text)


def publish_real_feeds(project: Project) -> None:
    folder = project.folder / "real"
    folder.mkdir()
    for name in FEEDS.values():
        raw = (REAL / name).read_bytes()
        try:
            (folder / name).write_text(redated(raw.decode("utf-8")), encoding="utf-8")
        except UnicodeDecodeError:
            shutil.copy(REAL / name, folder / name)
    data = project.config()
    data["feeds"] = [{"name": name, "url": f"real/{file}"} for name, file in FEEDS.items()]
    data["themes"] = THEMES
    data["digest"]["window_days"] = 7
    project.write_config(data)


def test_real_feeds_give_a_mail_whose_counts_are_its_stories(project: Project) -> None:
    publish_real_feeds(project)
    fetched = project.cli("fetch").output
    assert "failed" in fetched  # the summary line
    project.cli("subscribers", "add", "editor@example.com", "--list", "weekly")
    plan = project.cli("digest", "show", "--list", "weekly").output
    counts = re.search(r"(\d+) stories in the e-mail, (\d+) on the web only", plan)
    assert counts
    in_email, web_only = int(counts.group(1)), int(counts.group(2))
    assert in_email >= 12
    assert web_only > 0  # the caps bite, so "and N more" could lie
    project.cli("send", "--list", "weekly", "--yes")
    (message,) = project.outbox()
    html = message.get_body(("html",)).get_content()  # type: ignore[union-attr]
    text = message.get_body(("plain",)).get_content().replace("\r\n", "\n")  # type: ignore[union-attr]
    assert len(re.findall(r"<h3[ >]", html)) == in_email
    assert str(message["Subject"]).endswith(f" and {in_email - 1} more")
    contents = re.search(r"In this issue: (.+?)\n\n", text, re.S)
    assert contents
    assert sum(int(n) for n in re.findall(r"\((\d+)\)", contents.group(1))) + 1 == in_email
    html_contents = re.search(r"In this issue:</span> (.+?)</p>", html)
    assert html_contents
    assert sum(int(n) for n in re.findall(r"\((\d+)\)", html_contents.group(1))) + 1 == in_email
    for heading, body in re.findall(r"\n== ([^=\n]+) ==\n(.*?)(?=\n== |\n-- )", text, re.S):
        assert body.strip(), f"the section {heading} is empty"
    for section in re.findall(r"<h2 id=\"theme-[^\"]+\">.*?(?=<h2|Read our standards)", html):
        assert "<h3 " in section, "a theme heading with no story under it"
    assert f"{web_only} more on the web" in contents.group(1)
