"""Plain-text helpers: wrapping at 78 columns without ever breaking a URL."""

from __future__ import annotations

import re
import textwrap
import unicodedata

WIDTH = 78


def wrap(text: str, width: int = WIDTH, indent: str = "", first_indent: str | None = None) -> str:
    """Wrap one paragraph; a word longer than the width (a URL) stands alone on its line."""
    return textwrap.fill(
        " ".join(text.split()),
        width=width,
        initial_indent=indent if first_indent is None else first_indent,
        subsequent_indent=indent,
        break_long_words=False,
        break_on_hyphens=False,
    )


def wrap_paragraphs(text: str, width: int = WIDTH) -> str:
    """Wrap each paragraph (blank lines between them) on its own; a Markdown list item
    ("- ", "* ", "1. ") starts its own line, its continuation indented under its text."""
    blocks = []
    for paragraph in re.split(r"\n\s*\n", text.strip()):
        lines: list[str] = []
        for item in re.split(r"\n(?=\s*(?:[-*+]|\d+[.)])\s)", paragraph):
            marker = re.match(r"\s*((?:[-*+]|\d+[.)])\s+)", item)
            if marker:
                lead = marker.group(1)
                body = item[marker.end() :]
                lines.append(wrap(body, width, " " * len(lead), lead))
            else:
                lines.append(wrap(item, width))
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks)


# What never ends a shortened text: half of a letter or of an emoji.
_CONTINUES = frozenset({"Mn", "Mc", "Me", "Sk"})


def shorten(text: str, limit: int) -> str:
    """`text`, or its start up to a word boundary and an ellipsis, in at most `limit`
    characters."""
    if len(text) <= limit:
        return text
    end = limit - 1  # room for the ellipsis
    space = text.rfind(" ", 0, end + 1)
    if space > limit // 2:  # a word boundary not too far back; else (CJK) cut between letters
        end = space
    while end > 0 and (
        unicodedata.category(text[end]) in _CONTINUES or text[end] in "\u200d\ufe0f"
    ):
        end -= 1
    return text[:end].rstrip(" \u200d,;:-\u2013\u2014") + "\u2026"
