"""The checks that need no network: the rendered HTML and text, and the message as it is sent.

Everything here is pure: it reads what the digest became (for one sample reader) and the
settings, and returns findings. `send` runs it before a new digest leaves draft.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from email.utils import parseaddr
from html.parser import HTMLParser
from urllib.parse import urlsplit

from newsletter.brand import PAPER, brand_of, contrast
from newsletter.check.findings import ISSUE, Finding, error, note, warning
from newsletter.config import Settings
from newsletter.errors import NewsletterError
from newsletter.render.templating import GMAIL_CLIP_BYTES
from newsletter.send.dkim import DkimSigner

# Inbox lists cut a subject at 40 to 90 characters depending on the client; past 150 the
# subject is a paragraph, most likely a template or a feed gone wrong.
SUBJECT_WARN = 90
SUBJECT_ERROR = 150
# Close to the clip a small edit (a long note, one more story) tips it over.
SIZE_WARN = int(GMAIL_CLIP_BYTES * 0.9)
LOCAL_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})
ONE_CLICK = "List-Unsubscribe=One-Click"
# Link words that do not say where the link goes (WCAG 2.4.4): a screen reader's list of
# links, or a reader skimming, learns nothing from them.
VAGUE_LINK_TEXT = frozenset(
    {
        "click",
        "click here",
        "continue",
        "continue reading",
        "details",
        "go",
        "here",
        "info",
        "learn more",
        "link",
        "more",
        "more info",
        "read more",
        "read on",
        "see more",
        "this",
        "this link",
    }
)
_BARE_URL = re.compile(r"(?:https?://|www\.)\S+")


@dataclass(frozen=True)
class Issue:
    """A digest as one sample reader gets it."""

    subject: str
    preheader: str
    html: str  # the HTML part, the sample reader's values filled in
    message: bytes  # the whole message to the sample reader, unsigned
    stories: Mapping[str, str] = field(default_factory=dict)  # URL -> the story it is in


@dataclass(frozen=True)
class Link:
    href: str
    text: str
    image_alt: str | None  # the alt text of an image inside the link, if any


@dataclass(frozen=True)
class Image:
    src: str
    alt: str | None
    in_link: str | None  # the href of the link around it


class _Scan(HTMLParser):
    """What the checks need from the HTML, in one pass."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.lang: str | None = None
        self.ids: set[str] = set()
        self.links: list[Link] = []
        self.images: list[Image] = []
        self.text: list[str] = []
        self._open: list[tuple[str, list[str], list[str]]] = []  # href, words, image alts

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        for name in ("id", "name"):
            if values.get(name):
                self.ids.add(str(values[name]))
        if tag == "html" and self.lang is None:
            self.lang = (values.get("lang") or "").strip()
        elif tag == "a":
            self._open.append(((values.get("href") or "").strip(), [], []))
        elif tag == "img":
            alt = values.get("alt")
            around = self._open[-1][0] if self._open else None
            self.images.append(Image(values.get("src") or "", alt, around))
            if self._open and alt:
                self._open[-1][2].append(alt)

    def handle_endtag(self, tag: str) -> None:
        if tag == "a" and self._open:
            href, words, alts = self._open.pop()
            self.links.append(Link(href, " ".join("".join(words).split()), " ".join(alts) or None))

    def handle_data(self, data: str) -> None:
        self.text.append(data)
        for _, words, _ in self._open:
            words.append(data)


def scan(html: str) -> _Scan:
    scanner = _Scan()
    scanner.feed(html)
    scanner.close()
    return scanner


def links_of(html: str) -> list[str]:
    """The distinct http(s) URLs the HTML links to, in order, without their fragments."""
    found: dict[str, None] = {}
    for link in scan(html).links:
        if urlsplit(link.href).scheme.lower() in ("http", "https"):
            found[link.href.partition("#")[0]] = None
    return list(found)


def check_offline(issue: Issue, settings: Settings) -> list[Finding]:
    message = message_from_bytes(issue.message, policy=policy.default)
    assert isinstance(message, EmailMessage)
    html = scan(issue.html)
    return [
        *_content(issue, message, html),
        *_accessibility(issue, html),
        *_list_unsubscribe(message, settings),
        *_dkim(issue.message, message, settings),
        *_base_url(settings.publication.base_url),
        *_brand(settings),
    ]


def _brand(settings: Settings) -> Iterator[Finding]:
    brand = brand_of(settings)
    for problem in brand.problems:
        yield warning(problem)
    if brand.link != brand.accent:
        yield note(
            f"[publication] accent_color {brand.accent} has a contrast of "
            f"{contrast(brand.accent, PAPER):.1f}:1 on white, under the 4.5:1 text needs: "
            f"links and labels use {brand.link} ({contrast(brand.link, PAPER):.1f}:1), "
            "rules and bars the accent itself"
        )


def _content(issue: Issue, message: EmailMessage, html: _Scan) -> Iterator[Finding]:
    size = len(issue.html.encode("utf-8"))
    kb = f"{size / 1024:.1f} KB"
    if size > GMAIL_CLIP_BYTES:
        yield error(
            f"the HTML is {kb}: Gmail clips a message over 102 KB and hides the rest, "
            "the unsubscribe link with it; lower [digest] max_briefings"
        )
    elif size > SIZE_WARN:
        yield warning(f"the HTML is {kb}, close to the 102 KB at which Gmail clips a message")
    length = len(issue.subject)
    if not issue.subject.strip():
        yield error("the subject is empty")
    elif length > SUBJECT_ERROR:
        yield error(
            f"the subject is {length} characters, over {SUBJECT_ERROR}: check [digest] subject"
        )
    elif length > SUBJECT_WARN:
        yield warning(
            f"the subject is {length} characters; inboxes show the first 40 to {SUBJECT_WARN}"
        )
    preheader = " ".join(issue.preheader.split())
    if not preheader:
        yield warning("no preheader: inboxes show the first words of the body beside the subject")
    elif preheader not in " ".join("".join(html.text).split()):
        yield warning("the preheader is not in the HTML: check the template's <mj-preview>")
    plain = message.get_body(preferencelist=("plain",))
    if not isinstance(plain, EmailMessage) or not str(plain.get_content()).strip():
        yield error("no text part: spam filters and text-only readers expect one")


def _accessibility(issue: Issue, html: _Scan) -> Iterator[Finding]:
    if not html.lang:
        yield warning("<html> has no lang: screen readers guess the language and may guess wrong")
    for image in html.images:
        story = issue.stories.get(image.in_link or "", ISSUE)
        where = image.src or "an inline image"
        if image.alt is None:
            yield warning(f"an image without alt text: {where}", story)
        elif not image.alt.strip() and image.in_link is not None:
            yield warning(f"an image link with empty alt text says nothing: {where}", story)
    for link in html.links:
        story = issue.stories.get(link.href.partition("#")[0], ISSUE)
        if link.href.startswith("#") and len(link.href) > 1 and link.href[1:] not in html.ids:
            yield warning(f"the link to {link.href} leads nowhere in the HTML", story)
        words = link.text or link.image_alt or ""
        said = words.casefold().strip(" .:!?»›→…")
        if not words:
            yield warning(f"a link with no text: {link.href or '(no href)'}", story)
        elif said in VAGUE_LINK_TEXT:
            yield warning(f"the link text “{words}” does not say where it goes: {link.href}", story)
        elif _BARE_URL.fullmatch(words):
            yield warning(f"a bare URL as link text: {words}", story)


def _list_unsubscribe(message: EmailMessage, settings: Settings) -> Iterator[Finding]:
    value = message.get("List-Unsubscribe")
    if not value:
        yield error("no List-Unsubscribe header: Gmail and Yahoo require one of bulk senders")
        return
    targets = re.findall(r"<([^>]*)>", str(value))
    schemes = {urlsplit(target).scheme.lower() for target in targets}
    if "https" not in schemes:
        host = urlsplit(settings.publication.base_url).hostname or ""
        if "http" not in schemes:
            yield error(f"List-Unsubscribe has no https URL: {value}")
        elif not _local(host):  # on this machine, the base_url's note says it once
            yield error(f"List-Unsubscribe is http, one-click unsubscribe needs https: {value}")
    if settings.publication.unsubscribe_mailto and "mailto" not in schemes:
        yield error(
            "List-Unsubscribe has no mailto: though [publication] unsubscribe_mailto is set"
        )
    if str(message.get("List-Unsubscribe-Post", "")).strip() != ONE_CLICK:
        yield error(f"no List-Unsubscribe-Post: {ONE_CLICK}: one-click unsubscribe (RFC 8058)")


def _dkim(raw: bytes, message: EmailMessage, settings: Settings) -> Iterator[Finding]:
    if settings.dkim is None or settings.dkim_key_file is None:
        return
    try:
        signer = DkimSigner(settings.dkim.domain, settings.dkim.selector, settings.dkim_key_file)
        signed = signer.sign(raw)
    except NewsletterError as exc:
        yield error(f"[dkim]: {exc.message}")
        return
    except Exception as exc:  # an OpenSSL refusal, or anything else the key brings
        yield error(f"[dkim]: {settings.dkim_key_file} does not sign: {exc}")
        return
    tags = signature_tags(signed[: len(signed) - len(raw)])
    covered = {name.strip().casefold() for name in tags.get("h", "").split(":")}
    missing = [
        n for n in ("List-Unsubscribe", "List-Unsubscribe-Post") if n.casefold() not in covered
    ]
    if missing:
        yield error(
            f"the DKIM signature does not cover {' and '.join(missing)} (h={tags.get('h')})"
        )
    signing = tags.get("d", "").casefold().rstrip(".")
    sender = parseaddr(str(message.get("From", "")))[1].rpartition("@")[2].casefold()
    if sender == signing:
        return
    if sender.endswith("." + signing) or signing.endswith("." + sender):
        yield note(
            f"From's domain {sender} and the DKIM domain d={signing} align only under relaxed "
            "alignment (DMARC's default)"
        )
    else:
        yield error(
            f"From's domain {sender} does not align with the DKIM domain d={signing}: DMARC "
            "fails; set [dkim] domain to the From address's domain"
        )


def signature_tags(header: bytes) -> dict[str, str]:
    """The tags of a DKIM-Signature header (`d`, `h`, ...), folding and spaces removed."""
    value = header.decode("ascii", "replace").partition(":")[2]
    tags: dict[str, str] = {}
    for part in value.split(";"):
        name, _, tag_value = part.partition("=")
        if name.strip():
            tags[name.strip()] = re.sub(r"\s+", "", tag_value)
    return tags


def _base_url(base_url: str) -> Iterator[Finding]:
    parts = urlsplit(base_url)
    if parts.scheme == "https":
        return
    if _local(parts.hostname or ""):
        yield note(
            f"[publication] base_url {base_url} is http on this machine: fine for a try, "
            "but readers' links and List-Unsubscribe need https"
        )
    else:
        yield warning(
            f"[publication] base_url {base_url} is http: every link in the mail, "
            "unsubscribe too, should be https"
        )


def _local(host: str) -> bool:
    host = host.casefold()
    return host in LOCAL_HOSTS or host.endswith(".localhost")
