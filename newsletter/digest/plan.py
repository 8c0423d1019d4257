"""Which briefings a digest shows, and how: pure decisions, no database.

Order: the lead first (a pinned briefing, else the newest of the first theme), then themes in
config order, newest first. The same story from several sources (near-identical titles) is one
item that names every source. Caps per theme and per digest move the rest to the web edition.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from difflib import SequenceMatcher

from newsletter.digest.themes import ThemeMatcher


@dataclass(frozen=True)
class Candidate:
    id: int
    title: str
    themes: tuple[str, ...]
    published_at: datetime


@dataclass
class PlannedItem:
    candidate: Candidate
    theme: str
    lead: bool = False
    in_email: bool = True
    merged: list[Candidate] = field(default_factory=list)


@dataclass(frozen=True)
class Plan:
    items: list[PlannedItem]  # in digest order, lead first

    @property
    def lead(self) -> PlannedItem:
        return self.items[0]

    @property
    def themes(self) -> list[str]:
        return list(dict.fromkeys(item.theme for item in self.items if item.in_email))


_NOT_WORD = re.compile(r"[\W_]+")
_NUMBER = re.compile(r"\d+")


def _comparable(title: str) -> str:
    folded = unicodedata.normalize("NFKD", title).casefold()
    return " ".join(_NOT_WORD.sub(" ", folded).split())


def same_story(a: str, b: str, threshold: float) -> bool:
    """Near-identical titles: the same story as told by two outlets."""
    first, second = _comparable(a), _comparable(b)
    if not first or not second:
        return False
    if _NUMBER.findall(first) != _NUMBER.findall(second):
        return False  # "Q3 results" and "Q4 results" are two stories however alike
    matcher = SequenceMatcher(None, first, second, autojunk=False)
    return matcher.quick_ratio() >= threshold and matcher.ratio() >= threshold


def merge_same_stories(
    candidates: Sequence[Candidate], threshold: float
) -> list[tuple[Candidate, list[Candidate]]]:
    """Newest first; each later candidate joins the first earlier story it matches."""
    stories: list[tuple[Candidate, list[Candidate]]] = []
    # Newest first; equal times (undated items) keep their feed order.
    for candidate in sorted(candidates, key=lambda c: (-c.published_at.timestamp(), c.id)):
        for primary, others in stories:
            if same_story(primary.title, candidate.title, threshold):
                others.append(candidate)
                break
        else:
            stories.append((candidate, []))
    return stories


def plan_digest(
    candidates: Sequence[Candidate],
    matcher: ThemeMatcher,
    *,
    max_per_theme: int,
    max_briefings: int,
    merge_similarity: float,
    pinned: int | None = None,
) -> Plan | None:
    if not candidates:
        return None
    known = set(matcher.names)
    by_theme: dict[str, list[PlannedItem]] = {name: [] for name in matcher.names}
    for primary, merged in merge_same_stories(candidates, merge_similarity):
        theme = (
            primary.themes[0] if primary.themes and primary.themes[0] in known else matcher.fallback
        )
        by_theme[theme].append(PlannedItem(primary, theme, merged=merged))
    ordered = [item for name in matcher.names for item in by_theme[name]]
    lead = next(
        (
            item
            for item in ordered
            if pinned is not None and pinned in (item.candidate.id, *(m.id for m in item.merged))
        ),
        ordered[0],
    )
    lead.lead = True
    items = [lead, *(item for item in ordered if item is not lead)]
    shown_per_theme: dict[str, int] = {}
    shown = 0
    for item in items:
        if item.lead:
            shown += 1
            continue
        count = shown_per_theme.get(item.theme, 0)
        item.in_email = count < max_per_theme and shown < max_briefings
        if item.in_email:
            shown_per_theme[item.theme] = count + 1
            shown += 1
    return Plan(items)
