"""The archive as an Atom feed."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Protocol
from xml.sax.saxutils import escape as xml_escape

from newsletter.config_sections import Publication
from newsletter.models import utcnow


class Edition(Protocol):
    @property
    def id(self) -> int: ...
    @property
    def subject(self) -> str: ...
    @property
    def preheader(self) -> str: ...
    @property
    def sent_at(self) -> datetime: ...
    @property
    def url(self) -> str: ...


def archive_feed(publication: Publication, entries: Sequence[Edition]) -> str:
    """Every sent issue, newest first, as an Atom document."""
    updated = max((entry.sent_at for entry in entries), default=utcnow())
    items = "".join(
        f"<entry><id>tag:{publication.domain},{entry.sent_at:%Y-%m-%d}:digest-{entry.id}</id>"
        f"<title>{xml_escape(entry.subject)}</title>"
        f'<link rel="alternate" type="text/html" href="{xml_escape(entry.url)}"/>'
        f"<updated>{entry.sent_at:%Y-%m-%dT%H:%M:%SZ}</updated>"
        f"<summary>{xml_escape(entry.preheader)}</summary></entry>"
        for entry in entries
    )
    base = publication.base_url
    return (
        '<?xml version="1.0" encoding="utf-8"?>'
        '<feed xmlns="http://www.w3.org/2005/Atom">'
        f"<id>{xml_escape(base)}/archive</id><title>{xml_escape(publication.name)}</title>"
        f'<link rel="self" href="{xml_escape(base)}/archive.xml"/>'
        f'<link rel="alternate" type="text/html" href="{xml_escape(base)}/archive"/>'
        f"<updated>{updated:%Y-%m-%dT%H:%M:%SZ}</updated>"
        f"<author><name>{xml_escape(publication.name)}</name></author>{items}</feed>"
    )
