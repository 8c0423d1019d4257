"""config.toml -> frozen, validated settings. Secrets come only from the environment."""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from pydantic import Field, ValidationError, model_validator

from newsletter.config_problems import describe_problems
from newsletter.config_sections import (
    Bounces,
    Database,
    Delivery,
    DigestSettings,
    Dkim,
    FeedSource,
    Fetch,
    MailingList,
    Publication,
    Security,
    Signup,
    Smtp,
    Theme,
    _Section,
)
from newsletter.errors import ConfigError
from newsletter.resources import bundled

CONFIG_ENV = "NEWSLETTER_CONFIG"
SMTP_PASSWORD_ENV = "NEWSLETTER_SMTP_PASSWORD"  # noqa: S105 (a variable name, not a secret)
SECRET_KEY_ENV = "NEWSLETTER_SECRET_KEY"  # noqa: S105 (a variable name, not a secret)
IMAP_PASSWORD_ENV = "NEWSLETTER_IMAP_PASSWORD"  # noqa: S105 (a variable name, not a secret)
DEFAULT_CONFIG = Path("config.toml")


class Settings(_Section):
    """Everything config.toml says, with relative paths already resolved against its folder."""

    publication: Publication
    database: Database = Database()
    delivery: Delivery = Delivery()
    smtp: Smtp = Smtp()
    fetch: Fetch = Fetch()
    feeds: tuple[FeedSource, ...] = ()
    themes: tuple[Theme, ...] = ()
    lists: tuple[MailingList, ...] = Field(min_length=1)
    digest: DigestSettings = DigestSettings()
    security: Security = Security()
    signup: Signup = Signup()
    bounces: Bounces = Bounces()
    dkim: Dkim | None = None
    path: Path = Field(default=Path("config.toml"), exclude=True)

    @model_validator(mode="after")
    def _unique_names(self) -> Settings:
        for label, noun, names in (
            ("lists", "slugs", [mailing_list.slug for mailing_list in self.lists]),
            ("feeds", "names", [feed.name for feed in self.feeds]),
            ("themes", "names", [theme.name for theme in self.themes]),
        ):
            duplicates = sorted({name for name in names if names.count(name) > 1})
            if duplicates:
                raise ValueError(
                    f"[[{label}]] {noun} must be unique; repeated: {', '.join(duplicates)}"
                )
        return self

    @property
    def folder(self) -> Path:
        return self.path.parent

    @property
    def database_url(self) -> str:
        """The database URL with a relative SQLite path resolved against config.toml's folder."""
        prefix = "sqlite:///"
        url = self.database.url
        if url.startswith(prefix) and not url.startswith(prefix + "/"):
            rest = url[len(prefix) :]
            if rest and rest != ":memory:":
                return prefix + str((self.folder / rest).resolve())
        return url

    @property
    def templates_folder(self) -> Path | None:
        """The editor's templates folder, if it exists (else the bundled templates are used)."""
        folder = (self.folder / self.digest.templates).resolve()
        return folder if folder.is_dir() else None

    @property
    def standards_page_path(self) -> Path:
        return (self.folder / self.publication.standards_page).resolve()

    @property
    def public_lists(self) -> tuple[MailingList, ...]:
        return tuple(mailing_list for mailing_list in self.lists if mailing_list.public)

    @property
    def dkim_key_file(self) -> Path | None:
        return (self.folder / self.dkim.key_file).resolve() if self.dkim else None

    @property
    def smtp_ca_file(self) -> Path | None:
        return (self.folder / self.smtp.ca_file).resolve() if self.smtp.ca_file else None

    @property
    def maildir_path(self) -> Path:
        return (self.folder / self.delivery.maildir).resolve()

    def feed_location(self, feed: FeedSource) -> str:
        """An http(s) or file URL for the feed. A bare path is relative to config.toml's folder;
        where no such file is there but the package bundles one (the starter's
        samples/briefings.xml), the bundled file."""
        scheme = urlsplit(feed.url).scheme.lower()
        if scheme in ("http", "https", "file"):
            return feed.url
        relative = Path(feed.url)
        path = (self.folder / relative).resolve()
        if not path.exists() and not relative.is_absolute() and ".." not in relative.parts:
            shipped = bundled(*relative.parts)
            if shipped.is_file():
                return shipped.as_uri()
        return path.as_uri()

    def mailing_list(self, slug: str) -> MailingList:
        for mailing_list in self.lists:
            if mailing_list.slug == slug:
                return mailing_list
        from newsletter.errors import UnknownListError

        known = ", ".join(m.slug for m in self.lists)
        raise UnknownListError(
            f"no list {slug!r} in {self.path}", hint=f"lists declared there: {known}"
        )


def smtp_password() -> str:
    return os.environ.get(SMTP_PASSWORD_ENV, "")


def resolve_config_path(path: Path | None) -> Path:
    """The config file: the one given, else $NEWSLETTER_CONFIG, else ./config.toml; a folder
    means the config.toml in it."""
    if path is None:
        from_env = os.environ.get(CONFIG_ENV)
        path = Path(from_env) if from_env else DEFAULT_CONFIG
    return path / DEFAULT_CONFIG if path.is_dir() else path


def load_settings(path: Path | None = None) -> Settings:
    """Read and validate config.toml; any problem becomes one ConfigError naming file and key."""
    config_path = resolve_config_path(path)
    try:
        raw = config_path.read_bytes()
    except FileNotFoundError:
        chosen = path is not None or CONFIG_ENV in os.environ
        elsewhere = "" if chosen else ", run from the publication's folder, or pass --config PATH"
        raise ConfigError(
            f"{config_path}: no such config file",
            hint=f"`newsletter init` writes a starter one there{elsewhere}",
        ) from None
    except OSError as exc:
        raise ConfigError(f"{config_path}: cannot read: {exc.strerror}") from None
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise ConfigError(f"{config_path}: not UTF-8 text", hint="save the file as UTF-8") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{config_path}: not valid TOML: {exc}") from None
    return settings_from_mapping(data, config_path)


def settings_from_mapping(data: Mapping[str, Any], path: Path) -> Settings:
    """Validate a config; every problem in it is named at once, one line each, so an editor
    fixes them in one go, not one per run."""
    try:
        return Settings.model_validate({**data, "path": path.resolve()})
    except ValidationError as exc:
        raise ConfigError(describe_problems(exc.errors(), path, Settings.model_fields)) from None
