"""The digest e-mail measured by outside tools (tests/mailquality.py): caniemail.com's data
against a plain MJML layout of the same content, axe-core in Chromium light and dark, and
SpamAssassin on a message as `newsletter send` puts it on the wire.

These are targets for templates/digest.mjml.j2. Each test prints its figures (`pytest -rP
tests/test_mail_quality.py` shows them when they pass). Tools missing: skipped, or failed with
NEWSLETTER_REQUIRE_BROWSER=1 as in CI.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from html import escape
from pathlib import Path
from typing import Any

import pytest

from newsletter.personalize import Markers, Recipient
from newsletter.render.templating import render_digest
from tests.conftest import ROOT, Project, SmtpServer
from tests.mailquality import (
    axe_violations,
    from_markup,
    node_modules,
    spam_report,
    spamassassin,
    unsupported_pairs,
)
from tests.test_digest import GOLDEN_NONCE, SETTINGS, sample_briefings, view_of

PLAIN_MJML = ROOT / "tests" / "data" / "plain-mjml"
READER = Recipient(
    1,
    "reader@example.com",
    "Reader",
    "https://signaldesk.example/unsubscribe/token",
    "https://signaldesk.example/preferences/token",
)
WIDTH = 600  # the digest's column, what a desktop client shows


def reader_html(folder: Path | None = None) -> str:
    """The sample digest as a reader's client gets it: placeholders filled as the sender does."""
    rendered = render_digest(view_of(sample_briefings(), more=1), SETTINGS, folder=folder)
    return Markers(GOLDEN_NONCE).fill(rendered.html, READER, escape)


def by_feature(pairs: set[tuple[str, str]]) -> str:
    clients: dict[str, list[str]] = {}
    for feature, client in sorted(pairs):
        clients.setdefault(feature, []).append(client)
    return "\n".join(f"  {feature}: {', '.join(names)}" for feature, names in clients.items())


def test_caniemail_no_more_unsupported_pairs_than_a_plain_mjml_layout() -> None:
    ours = unsupported_pairs(reader_html())
    plain = unsupported_pairs(reader_html(PLAIN_MJML))
    only_ours = ours - plain
    print(f"caniemail unsupported (feature, client) pairs: digest {len(ours)}, plain {len(plain)}")
    print(f"only the digest's ({len(only_ours)}):\n{by_feature(only_ours) or '  none'}")
    print(f"only plain MJML's ({len(plain - ours)}):\n{by_feature(plain - ours) or '  none'}")
    assert len(ours) <= len(plain), (
        f"{len(ours)} unsupported pairs in the digest, {len(plain)} in plain MJML "
        f"(tests/data/plain-mjml); only the digest's:\n{by_feature(only_ours)}"
    )


@pytest.fixture(autouse=True)
def axe_installed(request: pytest.FixtureRequest) -> None:
    """axe-core's tests skip (or fail) before a browser starts for nothing."""
    if "browser" in request.fixturenames:
        node_modules()


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_axe_finds_nothing_serious_at_600_px(browser: Any, scheme: str) -> None:
    page = browser.new_page(viewport={"width": WIDTH, "height": 900}, color_scheme=scheme)
    try:
        # Offline, as a client that blocks remote content: the same result on every machine,
        # and a picture that failed to load must still leave the text readable.
        page.route(re.compile(r"^https?://"), lambda route: route.abort())
        page.set_content(reader_html(), wait_until="load")
        dark = page.evaluate("matchMedia('(prefers-color-scheme: dark)').matches")
        assert dark == (scheme == "dark"), "the browser did not take the colour scheme"
        found = axe_violations(page, incomplete=True)
    finally:
        page.close()
    violations = [rule for rule in found if not rule["incomplete"]]
    undecided = [rule for rule in found if rule["incomplete"]]
    print(f"axe, {scheme}, {WIDTH} px: {len(violations)} violations, {len(undecided)} undecided")
    for rule in found:
        kind = "undecided" if rule["incomplete"] else "violation"
        print(f"  {kind} {rule['id']} ({rule['impact']}, {rule['nodes']} nodes): {rule['help']}")
    serious = [
        f"{rule['id']} ({rule['impact']}, {rule['nodes']} nodes: {'; '.join(rule['targets'])})"
        for rule in violations
        if rule["impact"] in ("serious", "critical")
    ]
    assert not serious, f"axe in {scheme} mode: " + ", ".join(serious)


def test_spamassassin_scores_a_sent_digest_at_most_zero_with_nothing_from_the_markup(
    smtp_project: Project, smtp_server: SmtpServer
) -> None:
    spamassassin()  # skip (or fail) before fetching and sending for nothing
    smtp_project.cli("fetch")
    smtp_project.cli("subscribers", "import", "subscribers/weekly.csv", "--list", "weekly")
    smtp_project.cli("send", "--list", "weekly", "--yes")
    # The bytes the relay was handed, as a receiving server would scan them.
    score, rules = spam_report(smtp_server.received[0].data)
    markup = sorted(rule for rule in rules if from_markup(rule))
    print(f"SpamAssassin (local tests): {score} points")
    for rule, points in sorted(rules.items()):
        print(f"  {points:+.3f} {rule}{'  (markup)' if rule in markup else ''}")
    summary = f"SpamAssassin: {score} points, from the markup: {markup or 'nothing'}; {rules}"
    assert score <= 0.0, summary
    assert not markup, summary


@pytest.fixture
def served(project: Project) -> Iterator[str]:
    from tests.test_front_door_browser import serve

    project.cli("fetch")
    project.cli("subscribers", "add", "reader@example.com", "--list", "weekly")
    project.cli("send", "--list", "weekly", "--yes")
    yield from serve(project)


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_axe_finds_nothing_serious_on_the_web_pages(
    browser: Any, served: str, project: Project, scheme: str
) -> None:
    (mail,) = project.outbox()
    text = mail.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    preferences = re.search(r"https?://\S+/preferences/\S+", text)
    assert preferences
    paths = ["/", "/subscribe", "/archive", "/archive/1", "/standards", "/nowhere"]
    # The pages' own policy forbids inline scripts: axe is let in, as a browser extension is.
    page = browser.new_page(
        viewport={"width": 375, "height": 812}, color_scheme=scheme, bypass_csp=True
    )
    serious: list[str] = []
    try:
        own = preferences.group(0).replace("https://signaldesk.example", served)  # sent before
        for url in [served + path for path in paths] + [own]:
            page.goto(url)
            found = axe_violations(page)
            print(
                f"axe, {scheme}, 375 px, {url.removeprefix(served)[:40]}: {len(found)} violations"
            )
            for rule in found:
                print(f"  {rule['id']} ({rule['impact']}, {rule['nodes']} nodes): {rule['help']}")
                print(f"    {'; '.join(rule['targets'])}")
            serious += [
                f"{url}: {rule['id']} ({'; '.join(rule['targets'])})"
                for rule in found
                if rule["impact"] in ("serious", "critical")
            ]
    finally:
        page.close()
    assert not serious, "\n".join(serious)
