"""Which briefings a digest shows, and how: pure decisions, no database.

Order: the lead first (a pinned briefing, else the newest of the first theme), then themes in
config order, newest first. The same story from several sources (near-identical titles) is one
item that names every source. Caps per theme and per digest move the rest to the web edition.
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from difflib import SequenceMatcher
from functools import cache
from itertools import pairwise

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
# Only the start of a title is compared: SequenceMatcher is quadratic in the worst case, and a
# feed's title can be a megabyte long. No real headline comes near this.
_COMPARED = 500


def same_story(a: str, b: str, threshold: float) -> bool:
    """Near-identical titles: the same story as told by two outlets."""
    return _Title(a).alike(_Title(b), threshold)


# Blocking. Comparing every title with every story is quadratic (4,000 titles took 17 s,
# a 50,000-entry feed minutes), so a title is only compared with the stories whose first title
# shares enough of its *distinctive* words: words found in at most _COMMON titles, accents and
# case aside (a feed that drops accents still tells the same story), a letter off allowed (a
# typo), a number never (see `alike`). Titles that `same_story` calls alike share most of their
# words, so on real headlines this merges exactly what comparing every pair did; titles that are
# alike letter by letter but share no such word (several typos in a short title) stay apart.
_COMMON = 100
# Scripts written without spaces: their words are taken two characters at a time.
_UNSPACED = re.compile(r"[\u0e00-\u0e7f\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
_MARKS = re.compile(r"[\u0300-\u036f\u1ab0-\u1aff\u1dc0-\u1dff\u20d0-\u20ff\ufe20-\ufe2f]")
_JOINED = re.compile(r"\w+(?:[-'\u2019]\w+)+")
_TYPO_FROM = 5  # letters: one letter off in a shorter word is often another word


class _Title:
    """A title as the merging compares it (`text`) and finds it (`words`)."""

    __slots__ = ("_typos", "distinctive", "numbers", "pairs", "text", "words")

    def __init__(self, title: str) -> None:
        # Room for what normalizing removes (accents, punctuation) before the compared part.
        folded = unicodedata.normalize("NFKD", title[: _COMPARED * 4]).casefold()
        self.text = " ".join(_NOT_WORD.sub(" ", folded).split())[:_COMPARED]
        self.numbers = tuple(_NUMBER.findall(self.text))
        unmarked = _MARKS.sub("", folded)
        words = _NOT_WORD.sub(" ", unmarked).split()
        self.words = set(words)
        # "e-mail" is also "email", as another outlet may write it.
        self.words.update(_NOT_WORD.sub("", joined) for joined in _JOINED.findall(unmarked))
        if _UNSPACED.search(self.text):
            self.words = set()
            for word in words:
                if len(word) > 1 and _UNSPACED.search(word):
                    self.words.update(word[i : i + 2] for i in range(len(word) - 1))
                else:
                    self.words.add(word)
        # A title of common words only is found by its pairs of words (a lorem-ipsum feed).
        self.pairs = {f"{first} {second}" for first, second in pairwise(words)}
        self.distinctive: frozenset[str] = frozenset()
        self._typos: frozenset[str] | None = None

    @property
    def typos(self) -> frozenset[str]:
        """Every `_near` spelling of the distinctive words (only a few titles need them)."""
        if self._typos is None:
            self._typos = frozenset(key for word in self.distinctive for key in _near(word))
        return self._typos

    def alike(self, other: _Title, threshold: float) -> bool:
        """`same_story`: the titles are near-identical and carry the same numbers."""
        if not self.text or not other.text:
            return False
        if self.numbers != other.numbers:
            return False  # "Q3 results" and "Q4 results" are two stories however alike
        matcher = SequenceMatcher(None, self.text, other.text, autojunk=False)
        return matcher.quick_ratio() >= threshold and matcher.ratio() >= threshold


def _near(word: str) -> tuple[str, ...]:
    """The word and, if long enough, every spelling of it with one letter left out: two words
    a typo apart share one of them."""
    if len(word) < _TYPO_FROM:
        return (word,)
    return (word, *{word[:i] + word[i + 1 :] for i in range(len(word))})


class _Stories:
    """The stories so far among titles with the same numbers, indexed by distinctive word."""

    def __init__(self, frequency: Counter[str]) -> None:
        self.frequency = frequency  # in how many of these titles each word (or pair) is
        self.first: list[tuple[int, _Title]] = []  # (story, its first title)
        self.lengths: list[int] = []  # of the text of each in `first`
        self.index: dict[str, list[int]] = defaultdict(list)  # key -> positions in `first`

    def keys(self, title: _Title) -> list[str]:
        """Sets `title.distinctive` and returns the keys it is found by: the rarer half of its
        distinctive words (two titles sharing half of them share one of those), with typos."""
        frequency = self.frequency
        words = [w for w in title.words if frequency[w] <= _COMMON] or [
            pair for pair in title.pairs if frequency[pair] <= _COMMON
        ]
        title.distinctive = frozenset(words)
        if not words:
            return []
        words.sort(key=lambda word: (frequency[word], word))
        # Typos only in the rarest word: enough for short titles (in a longer one the other
        # words are shared as they are), and a typo's keys are many.
        return [*_near(words[0]), *words[1 : len(words) // 2 + 1]]

    def find(self, title: _Title, keys: list[str], threshold: float) -> int | None:
        """The first story whose first title is `title`'s story, if any."""
        index = self.index
        found: set[int] = set()
        for key in keys:
            if key in index:
                found.update(index[key])
        if not found:
            return None
        shortest, longest = _lengths(len(title.text), threshold)
        lengths = self.lengths
        matcher: SequenceMatcher[str] | None = None
        for position in sorted(found):
            if not shortest <= lengths[position] <= longest:
                continue
            story, first = self.first[position]
            if not _shares_half(title, first):
                continue
            if matcher is None:
                # b is the candidate, as same_story(primary, candidate) has it; set once.
                matcher = SequenceMatcher(None, first.text, title.text, autojunk=False)
            else:
                matcher.set_seq1(first.text)
            if matcher.quick_ratio() >= threshold and matcher.ratio() >= threshold:
                return story
        return None

    def add(self, story: int, title: _Title, keys: list[str]) -> None:
        position = len(self.first)
        self.first.append((story, title))
        self.lengths.append(len(title.text))
        for key in keys:
            self.index[key].append(position)


@cache
def _lengths(length: int, threshold: float) -> tuple[int, int]:
    """The lengths of text that can be alike one of `length`: where real_quick_ratio, 2 * the
    shorter / both, reaches the threshold (computed as it does, so no pair is lost to
    rounding)."""

    def reaches(other: int) -> bool:
        return 2.0 * min(length, other) / (length + other) >= threshold

    shortest = length
    while shortest > 1 and reaches(shortest - 1):
        shortest -= 1
    longest = length
    while longest < _COMPARED and reaches(longest + 1):
        longest += 1
    return shortest, longest


def _shares_half(title: _Title, first: _Title) -> bool:
    """At least half of the longer list of distinctive words in common, one a typo apart."""
    mine, theirs = title.distinctive, first.distinctive
    missing = (max(len(mine), len(theirs)) + 1) // 2 - len(mine & theirs)
    if missing <= 0:
        return True
    if missing > 1:
        return False
    typos = first.typos
    return any(not typos.isdisjoint(_near(word)) for word in mine - theirs)


def merge_same_stories(
    candidates: Sequence[Candidate], threshold: float
) -> list[tuple[Candidate, list[Candidate]]]:
    """Newest first; each later candidate joins the first earlier story it matches."""
    # Newest first; equal times (undated items) keep their feed order.
    ordered = sorted(candidates, key=lambda c: (-c.published_at.timestamp(), c.id))
    titles = [_Title(candidate.title) for candidate in ordered]
    frequency: dict[tuple[str, ...], Counter[str]] = defaultdict(Counter)
    for title in titles:
        counts = frequency[title.numbers]
        counts.update(title.words)
        counts.update(title.pairs)
    groups = {numbers: _Stories(counts) for numbers, counts in frequency.items()}
    stories: list[tuple[Candidate, list[Candidate]]] = []
    # The same text always finds the same story, so it is looked for once.
    story_of: dict[str, int] = {}
    for candidate, title in zip(ordered, titles, strict=True):
        story = story_of.get(title.text) if title.text else None
        if story is None and title.text:
            group = groups[title.numbers]
            keys = group.keys(title)
            story = group.find(title, keys, threshold)
            if story is None:
                group.add(len(stories), title, keys)
        if story is None:
            story_of[title.text] = len(stories)
            stories.append((candidate, []))
        else:
            story_of[title.text] = story
            stories[story][1].append(candidate)
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
    shown = in_email(
        [item.theme for item in items], max_per_theme=max_per_theme, max_briefings=max_briefings
    )
    for item, email in zip(items, shown, strict=True):
        item.in_email = email
    return Plan(items)


def in_email(themes: Sequence[str], *, max_per_theme: int, max_briefings: int) -> list[bool]:
    """For stories in digest order, lead first (by their themes): which the e-mail shows.

    The lead always; the rest while their theme and the whole e-mail are under the caps. The
    lead counts towards the e-mail's cap, not its theme's: a section still has its own stories.
    """
    shown_per_theme: dict[str, int] = {}
    flags = [True] * len(themes)
    total = 1
    for position, theme in enumerate(themes[1:], start=1):
        count = shown_per_theme.get(theme, 0)
        flags[position] = count < max_per_theme and total < max_briefings
        if flags[position]:
            shown_per_theme[theme] = count + 1
            total += 1
    return flags
