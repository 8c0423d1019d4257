"""Starting a publication from an empty folder: the starter config.toml and, for editing, a
copy of the bundled templates. Neither ever replaces a file that is already there."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from newsletter.config import Settings
from newsletter.files import write_new
from newsletter.resources import bundled, starter_config, templates_folder


@dataclass(frozen=True)
class StarterReport:
    config_path: Path
    written: bool  # False: a config was already there and is left as it is


@dataclass
class TemplatesReport:
    folder: Path
    copied: list[Path] = field(default_factory=list)
    kept: list[Path] = field(default_factory=list)  # already there: the editor's own


def write_starter_config(path: Path) -> StarterReport:
    """The commented starter config (SQLite, a Maildir outbox, the bundled sample feed, one
    list `weekly`) at `path`, unless a file is there."""
    return StarterReport(path, write_new(path, starter_config()))


def copy_templates(folder: Path) -> TemplatesReport:
    """Every bundled template into `folder` (same names, same subfolders), for the editor to
    change; a file that exists there is kept."""
    report = TemplatesReport(folder)
    source = templates_folder()
    for template in sorted(source.rglob("*")):
        if not template.is_file() or template.name.startswith("."):
            continue
        target = folder / template.relative_to(source)
        if write_new(target, template.read_bytes()):
            report.copied.append(target)
        else:
            report.kept.append(target)
    return report


def write_standards_page(settings: Settings) -> Path | None:
    """The starter standards page (Markdown, in the publication's name) where
    `[publication] standards_page` says, unless a file is there; None when one was, or when
    standards_url is another site's page (then it is not ours to serve)."""
    publication = settings.publication
    if not publication.standards_url.startswith(publication.base_url + "/"):
        return None
    path = settings.standards_page_path
    starter = bundled("samples", "standards.md").read_text(encoding="utf-8")
    text = starter.replace("{publication}", settings.publication.name)
    return path if write_new(path, text.encode("utf-8")) else None
