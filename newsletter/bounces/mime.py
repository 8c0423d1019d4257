"""Getting at what a returned message holds, however its sender built it.

Text parts in their charsets, header values (RFC 2047 or raw 8-bit), the field groups of
delivery-status and feedback-report parts, the headers of the original a report quotes, and
the bare addresses those name.

Every message is parsed by `parse_bytes`, which refuses parts nested more than `MAX_DEPTH`
deep: the email package's parser recurses once per level, so a message nested a thousand deep
would otherwise end in RecursionError, and every walk over the parts recurses too.
"""

from __future__ import annotations

import re
from email import policy
from email.message import Message
from email.parser import BytesParser

# Returned mail nests a handful of levels (report, quoted original, its alternatives); no
# sender needs fifty.
MAX_DEPTH = 50

_LOCAL = r"[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]"
# A match may start only where a run of local-part characters starts: without the lookbehind
# every position of a long run is tried again to its end, quadratic in a hostile body.
_ADDRESS = rf"(?<!{_LOCAL}){_LOCAL}+@[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?"
ADDRESS_RE = re.compile(_ADDRESS)


class TooDeep(ValueError):
    """A message with parts nested more than MAX_DEPTH deep."""


class _Bounded(Message):
    """A message that counts its depth as the parser attaches each part to its parent, which
    the parser does before it parses that part: a level too deep is refused before the parser
    recurses into it."""

    depth = 0

    def attach(self, payload: Message | str) -> None:
        if isinstance(payload, _Bounded):
            payload.depth = self.depth + 1
            if payload.depth > MAX_DEPTH:
                raise TooDeep(f"parts nested more than {MAX_DEPTH} deep")
        super().attach(payload)


def parse_bytes(data: bytes, *, headers_only: bool = False) -> Message:
    """A message from its bytes, nested at most MAX_DEPTH deep (TooDeep otherwise)."""
    parser = BytesParser(_Bounded, policy=policy.compat32)
    return parser.parsebytes(data, headersonly=headers_only)


def leaf_parts(message: Message) -> list[Message]:
    """The parts of `message` that hold content rather than other parts."""
    return [part for part in message.walk() if not part.is_multipart()]


def part_text(part: Message) -> str:
    """A part's body as text, in its declared charset when Python knows that charset."""
    payload = part.get_payload(decode=True)
    if not isinstance(payload, bytes):
        return str(part.get_payload())
    charset = part.get_content_charset() or "utf-8"
    try:
        return payload.decode(charset, "replace")
    except LookupError:
        return payload.decode("utf-8", "replace")


def quoted_original(message: Message) -> Message | None:
    """The headers of our message as a report quotes it, when it does."""
    original = next(
        (
            part
            for part in message.walk()
            if part.get_content_type() in ("message/rfc822", "text/rfc822-headers")
        ),
        None,
    )
    return None if original is None else _headers_of(original)


def status_blocks(part: Message) -> list[list[tuple[str, str]]]:
    """The field groups of a message/delivery-status part, however the parser stored them."""
    payload = part.get_payload()
    if isinstance(payload, list):
        return [fields_of(block) for block in payload if isinstance(block, Message)]
    text = payload if isinstance(payload, str) else part_text(part)
    blocks = []
    for chunk in re.split(r"\n\s*\n", text.strip()):
        blocks.append(fields_of(parse_bytes(chunk.encode("utf-8", "replace"))))
    return blocks


def fields_of(part: Message) -> list[tuple[str, str]]:
    """(lowercased name, value on one line) for each field of a part or of the block it holds."""
    source = part
    if not part.keys() and isinstance(part.get_payload(), str):
        source = parse_bytes(str(part.get_payload()).encode("utf-8", "replace"))
    elif part.get_content_type() == "message/feedback-report":
        body = part.get_payload()
        if isinstance(body, list) and body and isinstance(body[0], Message):
            source = body[0]
        elif isinstance(body, str):
            source = parse_bytes(body.encode("utf-8", "replace"))
    return [(name.lower(), " ".join(str(value).split())) for name, value in source.items()]


def _headers_of(part: Message) -> Message:
    payload = part.get_payload()
    if isinstance(payload, list) and payload:
        inner = payload[0]
        assert isinstance(inner, Message)
        return inner
    # Only the headers are wanted: whatever body the quoted text carries is never parsed.
    return parse_bytes(str(payload).encode("utf-8", "replace"), headers_only=True)


def bare_address(value: str) -> str:
    """'rfc822; <Ada@Example.com>' -> 'ada@example.com'."""
    value = value.split(";", 1)[-1].strip().strip("<>").strip()
    match = ADDRESS_RE.search(value)
    return match.group(0).lower() if match else value.lower()


def header_text(message: Message, name: str) -> str:
    """A header as text, whether RFC 2047-encoded or raw 8-bit (as some Japanese servers send)."""
    for key, value in message.raw_items():
        if key.lower() == name.lower():
            raw = str(value).encode("utf-8", "surrogateescape")
            try:
                return _decoded(raw.decode("utf-8"))
            except UnicodeDecodeError:
                return raw.decode("latin-1")
    return ""


def _decoded(value: str) -> str:
    from email.header import decode_header, make_header

    try:
        return str(make_header(decode_header(value)))
    except (ValueError, LookupError, UnicodeDecodeError):
        return value
