"""A digest as the templates see it: plain frozen values, no database."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime

WORDS_A_MINUTE = 230  # an adult's silent reading of news prose
TALLEST_PICTURE = 330  # px: a 16:9 picture across the column is 310


@dataclass(frozen=True)
class Picture:
    url: str
    width: int  # the file's own size, in pixels
    height: int
    alt: str

    def fitted(self, column: int, tallest: int = TALLEST_PICTURE) -> tuple[int, int]:
        """Its size in a column `column` pixels wide: never wider than the column nor taller
        than `tallest` (a square or portrait picture would fill a phone's screen), never
        enlarged, proportions kept (fixed attributes hold the layout while images are blocked)."""
        width = min(self.width, column, self.width * tallest // self.height)
        return max(1, width), max(1, round(self.height * width / self.width))


@dataclass(frozen=True)
class Source:
    name: str
    url: str


@dataclass(frozen=True)
class DigestBriefing:
    id: int
    title: str
    url: str
    dek: str
    key_points: tuple[str, ...]
    sources: tuple[Source, ...]  # the outlet it began from, then any merged duplicates
    theme: str
    published_at: datetime
    image: Picture | None = None
    why: str = ""  # the first sentence of its "Why it matters"

    @property
    def source_name(self) -> str:
        return self.sources[0].name

    @property
    def source_url(self) -> str:
        return self.sources[0].url


@dataclass(frozen=True)
class DigestSection:
    theme: str
    anchor: str
    briefings: tuple[DigestBriefing, ...]  # the ones the e-mail shows
    more: int = 0  # over the caps: on the web edition only


@dataclass(frozen=True)
class DigestView:
    """Everything a digest says, with no database objects inside."""

    id: int
    nonce: str
    list_slug: str
    list_name: str
    subject: str
    preheader: str
    window_start: datetime
    window_end: datetime
    lead: DigestBriefing
    sections: tuple[DigestSection, ...]  # without the lead; each shows at least one story
    # Themes whose stories are all over the caps: a line each under "More on the web".
    web_only_sections: tuple[DigestSection, ...] = ()
    note_html: str = ""  # the editor's note atop the digest, cleaned like feed HTML
    note_text: str = ""
    issue_number: int = 1  # of its list, counting this one

    @property
    def reading_minutes(self) -> int:
        words = sum(
            len(f"{b.title} {b.dek} {b.why} {' '.join(b.key_points)}".split())
            for b in self.briefings
        )
        return max(1, round(words / WORDS_A_MINUTE))

    @property
    def briefings(self) -> list[DigestBriefing]:
        """Every story the e-mail shows, lead first."""
        return [self.lead, *(b for section in self.sections for b in section.briefings)]

    @property
    def web_only(self) -> int:
        return sum(section.more for section in (*self.sections, *self.web_only_sections))


def anchor(theme: str) -> str:
    return "theme-" + ("-".join(re.findall(r"[a-z0-9]+", theme.casefold())) or "more")
