"""Filling the templates in templates/ from a DigestView."""

from __future__ import annotations

import functools
import re
import traceback
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import jinja2

from newsletter.brand import brand_of
from newsletter.config import Settings
from newsletter.digest.view import DigestView
from newsletter.errors import TemplateError
from newsletter.personalize import Markers
from newsletter.render.mjml import compile_mjml
from newsletter.render.text import shorten, wrap, wrap_paragraphs
from newsletter.resources import templates_folder

TEMPLATES = templates_folder()  # the bundled ones; an editor's folder overrides file by file
HTML_TEMPLATE = "digest.mjml.j2"
TEXT_TEMPLATE = "digest.txt.j2"
GMAIL_CLIP_BYTES = 102 * 1024
COLUMN_WIDTH = 552  # the e-mail's 600 px less its 24 px margins: pictures are never wider


@dataclass(frozen=True)
class RenderedDigest:
    subject: str
    preheader: str
    html: str
    text: str

    @property
    def html_bytes(self) -> int:
        return len(self.html.encode("utf-8"))

    @property
    def clipped_by_gmail(self) -> bool:
        return self.html_bytes > GMAIL_CLIP_BYTES


def search_path(settings: Settings, folder: Path | None = None) -> tuple[Path, ...]:
    """Where templates are looked up, first match wins: `folder` when given (benches, tests),
    else the editor's `[digest] templates` folder beside config.toml, then the bundled ones,
    so an editor's copy of one file overrides just that file."""
    if folder is not None:
        return (folder,)
    editor = settings.templates_folder
    return (editor, TEMPLATES) if editor is not None and editor != TEMPLATES else (TEMPLATES,)


@functools.lru_cache(maxsize=8)
def _environment(folders: tuple[Path, ...], *, html: bool) -> jinja2.Environment:
    """One environment per search path: templates compile once and reload when their file
    changes."""
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(folders),
        autoescape=html,  # noqa: S701 (the text part is plain text, never shown as HTML)
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters["wrap"] = wrap
    env.filters["wrap_paragraphs"] = wrap_paragraphs
    env.filters["longdate"] = _long_date
    env.filters["shorten"] = shorten
    return env


def _long_date(value: datetime) -> str:
    return f"{value.day} {value:%B %Y}"


def archive_url(settings: Settings, digest_id: int) -> str:
    return f"{settings.publication.base_url}/archive/{digest_id}"


def render_digest(
    view: DigestView, settings: Settings, folder: Path | None = None, *, web: bool = False
) -> RenderedDigest:
    """The digest as mailed, or (`web`) as the archive shows it to anyone: no reader's
    footer, a way to subscribe instead."""
    source, text = fill_templates(view, settings, folder, web=web)
    return RenderedDigest(
        subject=view.subject,
        preheader=view.preheader,
        html=compile_mjml(source, template_name=HTML_TEMPLATE),
        text=text,
    )


def fill_templates(
    view: DigestView, settings: Settings, folder: Path | None = None, *, web: bool = False
) -> tuple[str, str]:
    """The MJML source and the plain text of a digest, placeholders left in.

    Each template comes from the first folder of `search_path` that has it.
    """
    folders = search_path(settings, folder)
    publication = settings.publication
    context = {
        "digest": view,
        "publication": publication,
        "brand": brand_of(settings),
        "images": settings.digest.images,
        "cards_per_theme": settings.digest.cards_per_theme,
        "column": COLUMN_WIDTH,
        "web_edition": web,
        "standards_note": publication.standards_note.format(publication=publication.name),
        "view_url": archive_url(settings, view.id),
        "recipient": Markers(view.nonce).context,
    }
    html, text = _digest_templates(folders)
    try:
        return html.render(context), text.render(context)
    except jinja2.TemplateError as exc:
        raise TemplateError(f"{_where(folders, exc)}: template error: {_message(exc)}") from None


def compile_templates(settings: Settings) -> None:
    """Compile the digest's templates now: the first time in a process takes tens of
    milliseconds, which a send should not spend holding SQLite's write lock (a reader's
    unsubscribe waits for it)."""
    _digest_templates(search_path(settings))


def _digest_templates(folders: tuple[Path, ...]) -> tuple[jinja2.Template, jinja2.Template]:
    try:
        return (
            _environment(folders, html=True).get_template(HTML_TEMPLATE),
            _environment(folders, html=False).get_template(TEXT_TEMPLATE),
        )
    except jinja2.TemplateNotFound as exc:
        raise _not_found(folders, exc) from None
    except jinja2.TemplateError as exc:
        raise TemplateError(f"{_where(folders, exc)}: template error: {_message(exc)}") from None


def _where(folders: tuple[Path, ...], exc: jinja2.TemplateError) -> str:
    """FILE:LINE of a template error: Jinja says so for a syntax error, and a runtime error's
    traceback runs through the template's own lines. Else the first folder searched."""
    filename, line = getattr(exc, "filename", None), getattr(exc, "lineno", None)
    if not filename:
        template_frames = [
            frame
            for frame in traceback.extract_tb(exc.__traceback__)
            if frame.filename.endswith(".j2")
        ]
        if template_frames:
            filename, line = template_frames[-1].filename, template_frames[-1].lineno
    if not filename:
        return str(folders[0])
    return f"{filename}:{line}" if line else str(filename)


def _message(exc: jinja2.TemplateError) -> str:
    """Jinja's message, with Python's names for our objects put as the template names them."""
    return re.sub(r"'[\w.]+\.(\w+) object'", r"'\1'", str(exc.message or exc))


def _not_found(folders: tuple[Path, ...], exc: jinja2.TemplateNotFound) -> TemplateError:
    searched = " or ".join(str(folder) for folder in folders)
    return TemplateError(
        f"template {exc.name!r} not found in {searched}",
        hint="`newsletter init --templates` copies the bundled templates beside config.toml",
    )


@dataclass(frozen=True)
class RenderedMail:
    subject: str
    html: str
    text: str


def render_confirmation(
    settings: Settings, *, list_name: str, email: str, confirm_url: str, folder: Path | None = None
) -> RenderedMail:
    """The double opt-in mail (templates/confirm.mjml.j2 and confirm.txt.j2)."""
    context: dict[str, object] = {
        "list_name": list_name,
        "email": email,
        "confirm_url": confirm_url,
        "days": settings.security.confirm_link_days,
    }
    return _one_off_mail(
        settings, "confirm", f"Confirm your subscription to {list_name}", context, folder
    )


def render_already_subscribed(
    settings: Settings, *, list_name: str, email: str, preferences_url: str
) -> RenderedMail:
    """The answer to a signup for an address that is subscribed already
    (templates/already.mjml.j2 and already.txt.j2): their preference centre's link."""
    context: dict[str, object] = {
        "list_name": list_name,
        "email": email,
        "preferences_url": preferences_url,
    }
    return _one_off_mail(settings, "already", f"You are subscribed to {list_name}", context)


def _one_off_mail(
    settings: Settings,
    name: str,
    subject: str,
    context: dict[str, object],
    folder: Path | None = None,
) -> RenderedMail:
    folders = search_path(settings, folder)
    context = {"publication": settings.publication, "brand": brand_of(settings), **context}
    try:
        source = _environment(folders, html=True).get_template(f"{name}.mjml.j2").render(context)
        text = _environment(folders, html=False).get_template(f"{name}.txt.j2").render(context)
    except jinja2.TemplateNotFound as exc:
        raise _not_found(folders, exc) from None
    except jinja2.TemplateError as exc:
        raise TemplateError(f"{_where(folders, exc)}: template error: {_message(exc)}") from None
    return RenderedMail(
        subject=subject,
        html=compile_mjml(source, template_name=f"{name}.mjml.j2"),
        text=text,
    )


def render_page(settings: Settings, name: str, **context: object) -> str:
    """A web page from templates/web/ (the editor's copy beside config.toml when it has one)."""
    folders = search_path(settings)
    try:
        template = _environment(folders, html=True).get_template(f"web/{name}")
        return template.render(
            publication=settings.publication, brand=brand_of(settings), **context
        )
    except jinja2.TemplateNotFound as exc:
        raise _not_found(folders, exc) from None
    except jinja2.TemplateError as exc:
        raise TemplateError(f"{_where(folders, exc)}: template error: {_message(exc)}") from None
