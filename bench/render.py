"""Render benchmark: MJML compile time and HTML size of the digest for 10, 30 and 50 briefings,
beside a plain layout (one mj-section per article, as MJML's examples do) in the same run.

    .venv/bin/python bench/render.py
"""

from __future__ import annotations

import sys
import time
from html import escape
from itertools import cycle, islice
from pathlib import Path

from mjml import mjml2html  # noqa: TID251 - the reference compiles plain MJML directly

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from newsletter.render.mjml import compile_mjml  # noqa: E402
from newsletter.render.templating import fill_templates, render_digest  # noqa: E402
from tests.test_digest import SETTINGS, sample_briefings, view_of  # noqa: E402

GMAIL_CLIP = 102 * 1024


def best_of(function, rounds: int = 20) -> float:  # type: ignore[no-untyped-def]
    timings = []
    for _ in range(rounds):
        started = time.perf_counter()
        function()
        timings.append(time.perf_counter() - started)
    return min(timings)


def plain_layout(count: int) -> str:
    """One section per article with its own title, text, list and button, MJML-example style."""
    articles = []
    for briefing in islice(cycle(sample_briefings()), count):
        points = "".join(f"<li>{escape(p)}</li>" for p in briefing.key_points)
        articles.append(
            "<mj-section><mj-column>"
            f'<mj-text font-size="20px" font-weight="bold">{escape(briefing.title)}</mj-text>'
            f"<mj-text>{escape(briefing.dek)}</mj-text><mj-text><ul>{points}</ul></mj-text>"
            f'<mj-text font-size="13px">Source: {escape(briefing.source_name)}</mj-text>'
            f'<mj-button href="{briefing.source_url}">Open the original source</mj-button>'
            f'<mj-divider border-width="1px" /></mj-column></mj-section>'
        )
    return f"<mjml><mj-body>{''.join(articles)}</mj-body></mjml>"


def main() -> None:
    print(
        "| briefings | ours: Jinja + MJML | ours: MJML compile | HTML size | plain layout: "
        "MJML compile | HTML size | size ratio |"
    )
    print("|---|---|---|---|---|---|---|")
    for count in (10, 30, 50):
        view = view_of(list(islice(cycle(sample_briefings()), count)))
        ours = render_digest(view, SETTINGS)
        ours_time = best_of(lambda view=view: render_digest(view, SETTINGS))
        source, _text = fill_templates(view, SETTINGS)
        compile_time = best_of(lambda source=source: compile_mjml(source, template_name="bench"))
        plain_source = plain_layout(count)
        plain_html = mjml2html(plain_source)
        plain_time = best_of(lambda source=plain_source: mjml2html(source))
        plain_bytes = len(plain_html.encode())
        clip = " (clipped)" if ours.html_bytes > GMAIL_CLIP else ""
        plain_clip = " (clipped)" if plain_bytes > GMAIL_CLIP else ""
        print(
            f"| {count} | {ours_time * 1000:.1f} ms | {compile_time * 1000:.1f} ms | "
            f"{ours.html_bytes / 1024:.1f} KB{clip} | "
            f"{plain_time * 1000:.1f} ms | {plain_bytes / 1024:.1f} KB{plain_clip} | "
            f"{ours.html_bytes / plain_bytes:.2f} |"
        )


if __name__ == "__main__":
    main()
