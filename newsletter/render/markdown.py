"""Markdown an editor writes (the standards page, the note atop a digest), to HTML and text.

The only markdown_it import. Raw HTML in the source is shown as text; a note's HTML is also
cleaned like a feed's, since it goes into mail.
"""

from __future__ import annotations

import re

from markdown_it import MarkdownIt

from newsletter.feeds.sanitize import clean_html

_LINK = re.compile(r"\[([^\]]+)\]\((\S+?)\)")
_EMPHASIS = re.compile(r"(\*\*|__|\*|_)(\S(?:.*?\S)?)\1")


def _parser() -> MarkdownIt:
    return MarkdownIt("commonmark", {"html": False, "typographer": True}).enable("table")


def markdown_html(source: str) -> str:
    """A page's Markdown as HTML (headings, paragraphs, links, emphasis, lists, tables); raw
    HTML is escaped and javascript: links refused by markdown-it itself."""
    rendered: str = _parser().render(source)
    return rendered


def render_note(source: str) -> tuple[str, str]:
    """The editor's note as (HTML, text); ("", "") for none. The text keeps the Markdown's own
    shape (paragraphs, list items) with links written out, as a plain-text reader reads it."""
    if not source.strip():
        return "", ""
    html = clean_html(_parser().render(source))
    text = _LINK.sub(lambda m: f"{m.group(1)} ({m.group(2)})", source.strip())
    text = _EMPHASIS.sub(lambda m: m.group(2), text)
    return html, re.sub(r"\n{3,}", "\n\n", text)
