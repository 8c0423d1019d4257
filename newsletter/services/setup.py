"""Starting a publication from an empty folder: the starter config.toml and, for editing, a
copy of the bundled templates. Neither ever replaces a file that is already there."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from newsletter.files import write_new
from newsletter.resources import starter_config, templates_folder


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
