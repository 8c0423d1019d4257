"""What a preflight finds: one line each, about one story or about the issue as a whole."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

Level = Literal["error", "warning", "note"]
ISSUE = "the issue"  # what a finding is about when no one story is


@dataclass(frozen=True)
class Finding:
    level: Level
    story: str  # `b12 “Title”`, or ISSUE
    text: str

    @property
    def line(self) -> str:
        # Padded to the longest level, so a list of findings reads as columns.
        return f"{self.level:<7} {self.story}: {self.text}"


def error(text: str, story: str = ISSUE) -> Finding:
    return Finding("error", story, text)


def warning(text: str, story: str = ISSUE) -> Finding:
    return Finding("warning", story, text)


def note(text: str, story: str = ISSUE) -> Finding:
    return Finding("note", story, text)


def count(findings: Iterable[Finding], level: Level) -> int:
    return sum(1 for finding in findings if finding.level == level)
