"""Editions: a digest as it reaches the readers who chose some of its themes.

An edition is a view of the digest's stored plan, not a new plan: only the stories whose
primary theme the readers chose (with the duplicates merged into them), the editor's pin
leading every edition, otherwise the first story of their first theme in config order; the
caps counted again over what is left, and its own subject and preheader from the same
`[digest]` templates. The digest's own rendering is the full edition, for whoever chose no
themes (or all of them).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import replace

from sqlmodel import Session

from newsletter.config import Settings
from newsletter.digest.builder import Placed, assemble_view, headlines, planned
from newsletter.digest.plan import in_email
from newsletter.digest.themes import ThemeMatcher
from newsletter.digest.view import DigestView
from newsletter.models import Digest


def theme_names(settings: Settings) -> list[str]:
    """Every theme a digest can show, in config order, the fallback last."""
    return ThemeMatcher(settings.themes, settings.digest.fallback_theme).names


def chosen_themes(chosen: Iterable[str] | None, names: Sequence[str]) -> tuple[str, ...] | None:
    """The themes of `names` a reader's choice keeps, in config order; None for the full
    edition.

    None when they never chose, when they chose every theme, and when none of the themes they
    chose is one the digest can show any more (the editor renamed or removed it): a reader must
    never silently get nothing, week after week, because the config changed under their
    choice. A choice that still names some theme keeps just those.
    """
    if chosen is None:
        return None
    wanted = set(chosen)
    kept = tuple(dict.fromkeys(name for name in names if name in wanted))
    if not kept or len(kept) == len(set(names)):
        return None
    return kept


def themes_key(themes: Iterable[str]) -> str:
    """How `DigestEdition.themes_key` names a set: sorted, one name a line."""
    return "\n".join(sorted(themes))


def lead_pinned(items: Sequence[Placed], names: Sequence[str], pin: int | None = None) -> bool:
    """Whether the digest's lead is the editor's pin (which then leads every edition).

    `pin` is the briefing the list's pin named when the digest was built (read before
    building: the builder uses the pin up). Without it, a lead that is not the story that leads
    without a pin (the newest of the first theme) can only be a pin; a pin on that very story
    is then taken as no pin.
    """
    lead = items[0]
    if pin is not None and pin in {lead.id, *(i.id for i in items if i.merged_into == lead.id)}:
        return True
    order = {name: position for position, name in enumerate(names)}
    natural = min(
        (item for item in items if item.merged_into is None),
        key=lambda i: (order.get(i.theme, len(order)), -i.briefing.published_at.timestamp(), i.id),
    )
    return natural is not lead


def edition_items(
    items: Sequence[Placed],
    themes: Iterable[str],
    *,
    pinned: bool,
    max_per_theme: int,
    max_briefings: int,
) -> list[Placed]:
    """The part of a digest's plan (`items`, in digest order, lead first) that the edition of
    `themes` shows, in its own order: its lead first, then the digest's order. Empty: nothing
    in those themes."""
    chosen = set(themes)
    stories = [
        item
        for item in items
        if item.merged_into is None and (item.theme in chosen or (pinned and item.lead))
    ]
    if not stories:
        return []
    # Unpinned, the digest's lead is the first story of the first theme, so the first story
    # left, in the digest's order, is the first of the reader's first theme.
    shown = in_email(
        [item.theme for item in stories], max_per_theme=max_per_theme, max_briefings=max_briefings
    )
    kept = {item.id for item in stories}
    return [
        *(
            replace(item, lead=position == 0, in_email=email)
            for position, (item, email) in enumerate(zip(stories, shown, strict=True))
        ),
        *(item for item in items if item.merged_into in kept),
    ]


class Editions:
    """The editions of one digest, from its plan read once."""

    def __init__(
        self, session: Session, settings: Settings, digest: Digest, pin: int | None = None
    ) -> None:
        self.session = session
        self.settings = settings
        self.digest = digest
        self.names = theme_names(settings)
        self.items = planned(session, digest)
        self.pinned = bool(self.items) and lead_pinned(self.items, self.names, pin)

    def chosen(self, themes: Iterable[str] | None) -> tuple[str, ...] | None:
        return chosen_themes(themes, self.names)

    def view(self, themes: Iterable[str]) -> DigestView | None:
        """The edition of `themes` (as `chosen` returns them); None when nothing is in them."""
        options = self.settings.digest
        shown = edition_items(
            self.items,
            themes,
            pinned=self.pinned,
            max_per_theme=options.max_per_theme,
            max_briefings=options.max_briefings,
        )
        if not shown:
            return None
        stories = [item for item in shown if item.merged_into is None]
        subject, preheader = headlines(
            self.settings,
            lead=stories[0].briefing.title,
            count=len(stories),
            themes=list(dict.fromkeys(item.theme for item in stories if item.in_email)),
            when=self.digest.window_end,
        )
        return assemble_view(self.session, self.digest, shown, subject, preheader)
