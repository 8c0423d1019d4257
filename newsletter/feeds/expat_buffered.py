"""A SAX driver for feedparser: Python's own expat reader with character data buffered.

Unbuffered, expat hands over text in pieces (at every line break and entity), and feedparser
does Python work for each piece: a fifth of its parse time on real feeds. Buffered, each text
node arrives whole, so the parse is the same and about 15% cheaper.
"""

from __future__ import annotations

from typing import Any
from xml.parsers.expat import XMLParserType
from xml.sax.expatreader import ExpatParser


class BufferedExpatParser(ExpatParser):
    _parser: XMLParserType  # made by ExpatParser.reset; typeshed leaves it out

    def reset(self) -> None:
        super().reset()
        self._parser.buffer_text = True
        self._parser.buffer_size = 1 << 16


def create_parser(*args: Any, **kwargs: Any) -> BufferedExpatParser:
    """The hook `xml.sax.make_parser` calls for a driver module named in its list."""
    return BufferedExpatParser(*args, **kwargs)
