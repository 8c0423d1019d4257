"""Filling the templates in templates/ from a DigestView."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import jinja2

from newsletter.config import Settings
from newsletter.digest.builder import DigestView
from newsletter.personalize import Markers
from newsletter.render.mjml import TemplateError, compile_mjml
from newsletter.render.text import wrap

TEMPLATES = Path(__file__).resolve().parents[2] / "templates"
HTML_TEMPLATE = "digest.mjml.j2"
TEXT_TEMPLATE = "digest.txt.j2"
GMAIL_CLIP_BYTES = 102 * 1024


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


@functools.lru_cache(maxsize=8)
def _environment(folder: Path, *, html: bool) -> jinja2.Environment:
    """One environment per folder: templates compile once and reload when their file changes."""
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(folder),
        autoescape=html,  # noqa: S701 (the text part is plain text, never shown as HTML)
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters["wrap"] = wrap
    env.filters["longdate"] = _long_date
    return env


def _long_date(value: datetime) -> str:
    return f"{value.day} {value:%B %Y}"


def archive_url(settings: Settings, digest_id: int) -> str:
    return f"{settings.publication.base_url}/archive/{digest_id}"


def render_digest(
    view: DigestView, settings: Settings, folder: Path | None = None
) -> RenderedDigest:
    source, text = fill_templates(view, settings, folder)
    return RenderedDigest(
        subject=view.subject,
        preheader=view.preheader,
        html=compile_mjml(source, template_name=HTML_TEMPLATE),
        text=text,
    )


def fill_templates(
    view: DigestView, settings: Settings, folder: Path | None = None
) -> tuple[str, str]:
    """The MJML source and the plain text of a digest, placeholders left in.

    Templates come from `folder`, else from `[digest] templates` beside config.toml, else from
    the ones bundled with the package.
    """
    folder = folder or settings.templates_folder or TEMPLATES
    publication = settings.publication
    context = {
        "digest": view,
        "publication": publication,
        "standards_note": publication.standards_note.format(publication=publication.name),
        "view_url": archive_url(settings, view.id),
        "recipient": Markers(view.nonce).context,
    }
    try:
        source = _environment(folder, html=True).get_template(HTML_TEMPLATE).render(context)
        text = _environment(folder, html=False).get_template(TEXT_TEMPLATE).render(context)
    except jinja2.TemplateNotFound as exc:
        raise TemplateError(f"{folder / (exc.name or HTML_TEMPLATE)}: template not found") from None
    except jinja2.TemplateError as exc:
        raise TemplateError(f"{folder}: template error: {exc}") from None
    return source, text


@dataclass(frozen=True)
class RenderedMail:
    subject: str
    html: str
    text: str


def render_confirmation(
    settings: Settings, *, list_name: str, email: str, confirm_url: str, folder: Path | None = None
) -> RenderedMail:
    """The double opt-in mail (templates/confirm.mjml.j2 and confirm.txt.j2)."""
    folder = folder or settings.templates_folder or TEMPLATES
    if not (folder / "confirm.mjml.j2").exists():
        folder = TEMPLATES
    context = {
        "publication": settings.publication,
        "list_name": list_name,
        "email": email,
        "confirm_url": confirm_url,
        "days": settings.security.confirm_link_days,
    }
    try:
        source = _environment(folder, html=True).get_template("confirm.mjml.j2").render(context)
        text = _environment(folder, html=False).get_template("confirm.txt.j2").render(context)
    except jinja2.TemplateError as exc:
        raise TemplateError(f"{folder}: confirmation template error: {exc}") from None
    return RenderedMail(
        subject=f"Confirm your subscription to {list_name}",
        html=compile_mjml(source, template_name="confirm.mjml.j2"),
        text=text,
    )


def render_page(settings: Settings, name: str, **context: object) -> str:
    """A web page from templates/web/ (the editor's copy beside config.toml when it has one)."""
    folder = settings.templates_folder
    if folder is None or not (folder / "web" / name).exists():
        folder = TEMPLATES
    try:
        template = _environment(folder, html=True).get_template(f"web/{name}")
        return template.render(publication=settings.publication, **context)
    except jinja2.TemplateError as exc:
        raise TemplateError(f"{folder / 'web' / name}: template error: {exc}") from None
