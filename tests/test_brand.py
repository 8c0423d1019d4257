"""The publication's brand from `[publication]`: a logo file served at a stable URL and shown
in mail and pages, an accent colour kept readable, the language and its direction, and the
archive's issues framed by the site."""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from typing import Any

import pytest
from starlette.testclient import TestClient

from newsletter.app import Newsletter
from newsletter.brand import PAPER, PAPER_DARK, brand_of, contrast, readable
from newsletter.config import load_settings
from newsletter.web.app import create_app
from tests.conftest import ROOT, Project
from tests.test_feed_images import png

LOGO = ROOT / "tests" / "data" / "lead-picture.png"  # 1200 x 675


@pytest.fixture
def branded(project: Project) -> Project:
    shutil.copy(LOGO, project.folder / "logo.png")
    project.update(
        "publication", logo="logo.png", accent_color="#0f766e", tagline="Five minutes, Fridays"
    )
    return project


@pytest.fixture
def client(branded: Project) -> Iterator[TestClient]:
    with TestClient(create_app(Newsletter(load_settings(branded.config_path)))) as test_client:
        yield test_client


@pytest.mark.parametrize("accent", ["#f5c400", "#7dd3fc", "#1d4ed8", "#000000", "#ffffff"])
def test_any_accent_gives_links_readable_on_light_and_dark_paper(accent: str) -> None:
    for paper in (PAPER, PAPER_DARK):
        shade = readable(accent, paper)
        assert contrast(shade, paper) >= 4.5, (accent, paper, shade)
    # A colour that already reads well is left as the editor chose it.
    assert readable("#1d4ed8", PAPER) == "#1d4ed8"


def test_a_pale_accent_is_darkened_for_text_and_check_says_so(project: Project) -> None:
    project.update("publication", accent_color="#f5c400")
    settings = load_settings(project.config_path)
    brand = brand_of(settings)
    assert brand.accent == "#f5c400"  # bars and rules keep it
    assert brand.link != brand.accent
    project.cli("fetch")
    project.cli("subscribers", "add", "editor@example.com", "--list", "weekly")
    found = project.cli("check", "--list", "weekly", "--offline", expect=None).output
    assert "accent_color #f5c400 has a contrast of 1.6:1 on white" in found
    assert f"links and labels use {brand.link}" in found


def test_the_logo_file_is_in_the_mail_and_served_at_a_stable_url(
    branded: Project, client: TestClient
) -> None:
    branded.cli("fetch")
    # The preview shows the file itself, copied beside it: base_url is not served yet.
    branded.cli("preview", "--list", "weekly", "--out", "p")
    preview = (branded.folder / "p" / "digest.html").read_text()
    assert '<img class="logo-light" src="logo.png"' in preview
    assert (branded.folder / "p" / "logo.png").read_bytes() == LOGO.read_bytes()
    branded.cli("subscribers", "add", "reader@example.com", "--list", "weekly")
    branded.cli("send", "--list", "weekly", "--yes")
    (mail,) = branded.outbox()
    html = mail.get_body(("html",)).get_content()  # type: ignore[union-attr]
    logo = re.search(
        r'<img class="logo-light" src="([^"]+)" width="(\d+)" height="(\d+)" alt="([^"]+)"', html
    )
    assert logo, "no logo in the masthead"
    url, width, height, alt = logo.groups()
    assert alt == "SignalDesk Weekly"
    assert (int(width), int(height)) == (100, 56)  # 1200 x 675 within 240 x 56
    assert re.fullmatch(r"https://signaldesk\.example/brand/logo\.png\?v=[0-9a-f]{10}", url)
    assert "Five minutes, Fridays" in html
    assert "color: #0f766e" in html  # links in the accent (it reads well on white)
    served = client.get(url.removeprefix("https://signaldesk.example"))
    assert served.status_code == 200
    assert served.headers["content-type"] == "image/png"
    assert served.content == LOGO.read_bytes()
    assert client.get("/brand/config.toml").status_code == 404
    assert client.get("/brand/..%2Fconfig.toml").status_code == 404
    home = client.get("/").text
    assert re.search(r'<img class="logo-light" src="/brand/logo\.png\?v=[0-9a-f]{10}"', home)
    assert "--accent: #0f766e" in home


def test_a_missing_logo_file_leaves_the_name_and_says_why(project: Project) -> None:
    project.update("publication", logo="missing.png")
    project.cli("fetch")
    project.cli("preview", "--list", "weekly", "--out", "p")
    html = (project.folder / "p" / "digest.html").read_text()
    assert "<img" not in html.split("</h1>")[0].split("<h1")[1]
    assert ">SignalDesk Weekly</a></h1>" in html
    project.cli("subscribers", "add", "editor@example.com", "--list", "weekly")
    found = project.cli("check", "--list", "weekly", "--offline", expect=None).output
    assert "[publication] logo: cannot read" in found


def test_a_logo_url_needs_its_size(project: Project) -> None:
    project.update("publication", logo="https://cdn.example/logo.png")
    refused = project.cli("preview", "--list", "weekly", "--out", "p", expect=None)
    assert refused.exit_code != 0
    assert "give logo_width and logo_height" in refused.output
    project.update("publication", logo_width=480, logo_height=96)
    project.cli("fetch")
    project.cli("preview", "--list", "weekly", "--out", "p")
    html = (project.folder / "p" / "digest.html").read_text()
    assert 'src="https://cdn.example/logo.png" width="240" height="48"' in html


def test_a_right_to_left_language_sets_the_direction(project: Project) -> None:
    project.update("publication", language="ar")
    project.cli("fetch")
    project.cli("preview", "--list", "weekly", "--out", "p")
    html = (project.folder / "p" / "digest.html").read_text()
    assert '<html lang="ar" dir="rtl"' in html
    assert "direction:rtl" in html
    project.update("publication", language="not a language")
    assert "language" in project.cli("preview", "--list", "weekly", expect=None).output


def test_an_issue_in_the_archive_is_framed_by_the_site(branded: Project) -> None:
    branded.cli("fetch")
    branded.cli("subscribers", "add", "reader@example.com", "--list", "weekly")
    branded.cli("send", "--list", "weekly", "--yes")
    with TestClient(create_app(Newsletter(load_settings(branded.config_path)))) as client:
        page = client.get("/archive/1").text
    bar = re.search(
        r"<body[^>]*>.*?<div class=\"site-bar\" role=\"navigation\"(.*?)</div>", page, re.S
    )
    assert bar, "no site bar above the issue"
    assert 'href="/archive"' in bar.group(1)
    assert 'href="/subscribe"' in bar.group(1)
    assert 'id="top-story"' in page  # the contents' links land on their sections
    # Anyone may read it: no reader's footer, a way to subscribe instead.
    assert "because you subscribed" not in page
    assert "View in your browser" not in page
    assert re.search(
        r'sends The Weekly Briefing by e-mail\. <a href="[^"]+/subscribe">Subscribe</a>', page
    )


def logos_shown(browser: Any, html: str, where: str) -> dict[str, list[str]]:
    """The classes of the logos under `where` a reader sees, light and dark, images blocked."""
    shown = {}
    for scheme in ("light", "dark"):
        page = browser.new_page(viewport={"width": 375, "height": 800}, color_scheme=scheme)
        page.route(re.compile(r"^https?://"), lambda route: route.abort())
        page.set_content(html)
        shown[scheme] = page.evaluate(
            """(where) => [...document.querySelectorAll(where + " img")]
                .filter((logo) => getComputedStyle(logo).display !== "none")
                .map((logo) => logo.className)""",
            where,
        )
        page.close()
    return shown


def test_the_dark_logo_shows_only_in_dark_mode(project: Project, browser: Any) -> None:
    shutil.copy(LOGO, project.folder / "logo.png")
    (project.folder / "logo-white.png").write_bytes(png(480, 120))
    project.update("publication", logo="logo.png", logo_dark="logo-white.png")
    project.cli("fetch")
    project.cli("preview", "--list", "weekly", "--out", "p")
    html = (project.folder / "p" / "digest.html").read_text()
    assert logos_shown(browser, html, "h1") == {"light": ["logo-light"], "dark": ["logo-dark"]}
    # A client without style sheets shows the light one alone: the dark one is hidden inline.
    assert re.search(r'<img class="logo-dark"[^>]*style="display:none;mso-hide:all;', html)


def test_the_web_pages_show_one_logo_per_colour_scheme(branded: Project, browser: Any) -> None:
    (branded.folder / "logo-white.png").write_bytes(png(480, 120))
    branded.update("publication", logo_dark="logo-white.png")
    with TestClient(create_app(Newsletter(load_settings(branded.config_path)))) as client:
        home = client.get("/").text
    assert logos_shown(browser, home, "header") == {
        "light": ["logo-light"],
        "dark": ["logo-dark"],
    }


def test_a_logo_too_wide_to_read_is_named_by_preview(project: Project) -> None:
    (project.folder / "wordmark.png").write_bytes(png(2000, 100))
    project.update("publication", logo="wordmark.png")
    project.cli("fetch")
    output = project.cli("preview", "--list", "weekly", "--out", "p").output
    assert "shown at 240x12 px, too thin to read" in output
