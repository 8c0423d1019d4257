"""How the digest looks, in headless Chromium (Debian's, driven by Playwright): half the height
of the layout it replaced for the same stories, no sideways scrolling on a phone, dark mode
that really turns dark, and pictures that hold their place while a client blocks them.

Screenshots of each case are kept in test-artifacts/ to be looked at, not only asserted.
"""

from __future__ import annotations

import dataclasses
from html import escape
from typing import Any

import pytest

from newsletter.digest.view import DigestView, Picture, Source
from newsletter.render.templating import render_digest
from tests.conftest import ROOT
from tests.test_digest import SETTINGS, sample_briefings, view_of
from tests.test_front_door_browser import ARTIFACTS

OLD_LAYOUT = ROOT / "tests" / "data" / "layout-2026-12"  # the templates of 1 December 2026
PICTURE = "https://images.example/lead.jpg"


def open_mail(
    browser: Any, html: str, width: int, scheme: str = "light", images: bool = True
) -> Any:
    """The mail in a page `width` px wide; pictures are a real PNG served by the browser's
    router, or refused as a client that blocks images does."""
    page = browser.new_page(viewport={"width": width, "height": 900}, color_scheme=scheme)

    def picture(route: Any) -> None:
        if images:
            route.fulfill(
                body=(ROOT / "tests" / "data" / "lead-picture.png").read_bytes(),
                content_type="image/png",
            )
        else:
            route.abort()

    page.route("https://images.example/**", picture)
    page.set_content(html, wait_until="load")
    return page


def measure(page: Any) -> dict[str, float]:
    return page.evaluate(
        """() => ({
            height: document.documentElement.scrollHeight,
            width: document.documentElement.scrollWidth,
        })"""
    )


def thirty_stories() -> DigestView:
    """The sample's 15 stories twice over (new ids): a full issue at [digest] max_briefings."""
    briefings = sample_briefings()
    again = [dataclasses.replace(b, id=b.id + 100, title=b.title + " (II)") for b in briefings]
    return view_of(briefings + again)


def sample_view(*, picture: bool = False) -> DigestView:
    briefings = sample_briefings()
    if picture:
        image = Picture(PICTURE, 1200, 675, "Cranes at the Port of Valdera")
        briefings[0] = dataclasses.replace(briefings[0], image=image)
    return view_of(briefings)


@pytest.mark.parametrize("stories", [15, 30])
def test_the_sample_digest_is_at_most_half_the_height_of_the_old_layout(
    browser: Any, stories: int
) -> None:
    view = sample_view() if stories == 15 else thirty_stories()
    old = render_digest(view, SETTINGS, OLD_LAYOUT).html
    new = render_digest(view, SETTINGS).html
    heights = {}
    for name, html in (("old", old), ("new", new)):
        page = open_mail(browser, html, 600)
        heights[name] = measure(page)["height"]
        page.close()
    ratio = heights["new"] / heights["old"]
    print(
        f"{stories} stories at 600 px: {heights['old']} px before, {heights['new']} px now "
        f"({ratio:.2f}x)"
    )
    assert ratio <= 0.5, heights
    # The same stories: every headline of the old layout is in the new one.
    for briefing in view.briefings:
        assert f">{escape(briefing.title, quote=False)}</a>" in new


@pytest.mark.parametrize("scheme", ["light", "dark"])
@pytest.mark.parametrize("width", [375, 600])
def test_screenshots_show_no_sideways_scroll_and_dark_mode_turns_dark(
    browser: Any, width: int, scheme: str
) -> None:
    html = render_digest(sample_view(picture=True), SETTINGS).html
    page = open_mail(browser, html, width, scheme)
    assert measure(page)["width"] <= width
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"digest-{width}-{scheme}.png"), full_page=True)
    paper, ink = page.evaluate(
        """() => {
            const headline = document.querySelector("h3 a");
            const card = headline.closest("td");
            return [getComputedStyle(card).backgroundColor, getComputedStyle(headline).color];
        }"""
    )
    dark_paper = paper == "rgb(22, 25, 29)"
    assert dark_paper == (scheme == "dark"), (paper, ink)
    assert (ink == "rgb(232, 234, 237)") == (scheme == "dark"), ink
    picture = page.locator(f'img[src="{PICTURE}"]')
    box = picture.bounding_box()
    assert box is not None
    assert box["width"] <= width
    page.close()


@pytest.mark.parametrize("width", [375, 600])
def test_blocked_pictures_keep_the_layout(browser: Any, width: int) -> None:
    """Most clients block pictures until the reader allows them: the page must not jump."""
    html = render_digest(sample_view(picture=True), SETTINGS).html
    places = []
    for images in (True, False):
        page = open_mail(browser, html, width, images=images)
        places.append(
            page.evaluate(
                """() => [...document.querySelectorAll("h2, h3")].map(
                    (heading) => Math.round(heading.getBoundingClientRect().top))"""
            )
        )
        if not images:
            page.screenshot(
                path=str(ARTIFACTS / f"digest-{width}-images-blocked.png"), full_page=True
            )
        page.close()
    shown, blocked = places
    # Within a pixel or two: the attributes' ratio is the picture's, rounded to whole pixels.
    assert len(shown) == len(blocked)
    assert all(abs(a - b) <= 2 for a, b in zip(shown, blocked, strict=True)), (shown, blocked)


def test_the_picture_is_never_wider_than_the_column_nor_enlarged() -> None:
    small = Picture(PICTURE, 320, 200, "A small picture")
    large = Picture(PICTURE, 2400, 1350, "A large picture")
    assert small.fitted(552) == (320, 200)
    assert large.fitted(552) == (552, 310)
    square = Picture(PICTURE, 540, 540, "A square picture")
    assert square.fitted(552) == (330, 330)  # not a screenful on a phone


def test_a_picture_of_a_story_without_a_link_is_not_a_link_to_nowhere() -> None:
    view = sample_view(picture=True)
    lead = dataclasses.replace(view.lead, url="", sources=(Source(view.lead.source_name, ""),))
    html = render_digest(dataclasses.replace(view, lead=lead), SETTINGS).html
    assert f'<img src="{PICTURE}"' in html
    assert 'href=""' not in html
