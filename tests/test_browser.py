"""How the e-mail looks: headless Chromium (Debian's) at phone and desktop widths.

.ci/run installs chromium; elsewhere the test is skipped unless NEWSLETTER_REQUIRE_BROWSER=1,
which CI sets so that a missing browser fails instead of passing silently.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from html import escape
from pathlib import Path

import pytest

from newsletter.personalize import Markers, Recipient
from newsletter.render.templating import render_digest
from tests.conftest import ROOT
from tests.test_digest import GOLDEN_NONCE, SETTINGS, sample_briefings, view_of

ARTIFACTS = ROOT / "test-artifacts"
# Headless Chromium will not make a window narrower than 500 px, so the e-mail is shown in an
# iframe of the width under test, as a phone would give it; it reports its own measurements.
MEASURE = """<script>
window.addEventListener("load", () => {
  parent.postMessage(document.documentElement.scrollWidth + "x" + window.innerWidth, "*");
});
</script>"""
HOST = """<!doctype html><html><body style="margin:0">
<iframe src="digest.html" width="{width}" height="{height}" style="border:0;display:block"></iframe>
<script>
window.addEventListener("message", (event) => {{
  document.body.setAttribute("data-measure", event.data);
}});
</script></body></html>"""


def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found:
        return found
    if os.environ.get("NEWSLETTER_REQUIRE_BROWSER"):
        pytest.fail("chromium is not installed; .ci/run installs it with apt-get")
    pytest.skip("chromium is not installed (apt-get install chromium)")


def run_chromium(*args: str, profile: Path) -> str:
    command = [
        chromium(),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--hide-scrollbars",
        f"--user-data-dir={profile}",
        *args,
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=90, check=False)
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


@pytest.mark.parametrize("width", [375, 600])
def test_no_horizontal_overflow_and_a_screenshot(width: int, tmp_path: Path) -> None:
    rendered = render_digest(view_of(sample_briefings(), more=1), SETTINGS)
    reader = Recipient(
        1, "reader@example.com", "Reader", "https://signaldesk.example/unsubscribe/token"
    )
    html = Markers(GOLDEN_NONCE).fill(rendered.html, reader, escape)
    page, host = tmp_path / "digest.html", tmp_path / "host.html"
    page.write_text(html.replace("</body>", MEASURE + "</body>"), encoding="utf-8")
    host.write_text(HOST.format(width=width, height=2400), encoding="utf-8")
    dom = run_chromium(
        "--window-size=800,1200",
        "--virtual-time-budget=5000",
        "--allow-file-access-from-files",
        "--dump-dom",
        host.as_uri(),
        profile=tmp_path / "profile-dom",
    )
    measured = re.search(r'data-measure="(\d+)x(\d+)"', dom)
    assert measured, "the page did not load"
    scroll_width, viewport = map(int, measured.groups())
    assert viewport == width
    assert scroll_width <= viewport, f"{scroll_width}px of content in a {viewport}px window"

    ARTIFACTS.mkdir(exist_ok=True)
    screenshot = ARTIFACTS / f"digest-{width}.png"
    screenshot.unlink(missing_ok=True)
    page.write_text(html, encoding="utf-8")
    run_chromium(
        f"--window-size={max(width, 500)},2400",
        f"--screenshot={screenshot}",
        "--allow-file-access-from-files",
        host.as_uri(),
        profile=tmp_path / "profile-shot",
    )
    assert screenshot.stat().st_size > 10_000
