"""Plain-text helpers: wrapping at 78 columns without ever breaking a URL."""

from __future__ import annotations

import textwrap

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
