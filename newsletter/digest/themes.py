"""Assigning themes to a briefing from config: by feed category, then by whole keywords."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from newsletter.config_sections import Theme


@dataclass(frozen=True)
class _CompiledTheme:
    name: str
    tags: frozenset[str]
    keywords: re.Pattern[str] | None


class ThemeMatcher:
    """Themes in config order; a briefing may have several, the first is its primary theme."""

    def __init__(self, themes: Sequence[Theme], fallback: str) -> None:
        self.fallback = fallback
        self._themes = [
            _CompiledTheme(
                name=theme.name,
                tags=frozenset(tag.casefold().strip() for tag in theme.tags),
                keywords=_whole_words(theme.keywords),
            )
            for theme in themes
        ]

    @property
    def names(self) -> list[str]:
        """Every theme a digest can show, in config order, the fallback last."""
        return [theme.name for theme in self._themes] + [self.fallback]

    def match(self, tags: Iterable[str], text: str) -> list[str]:
        folded_tags = {tag.casefold().strip() for tag in tags}
        matched = [
            theme.name
            for theme in self._themes
            if theme.tags & folded_tags or (theme.keywords and theme.keywords.search(text))
        ]
        return matched or [self.fallback]


def _whole_words(keywords: Iterable[str]) -> re.Pattern[str] | None:
    words = [re.escape(word.strip()) for word in keywords if word.strip()]
    if not words:
        return None
    # \b fails next to non-word characters such as "C++", so look for non-word neighbours instead.
    return re.compile(r"(?<!\w)(?:" + "|".join(words) + r")(?!\w)", re.IGNORECASE)
