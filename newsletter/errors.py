"""The errors a user can see. Each carries one line saying what went wrong and what to do."""

from __future__ import annotations


class NewsletterError(Exception):
    """Base for every error the CLI turns into a one-line message instead of a traceback."""

    exit_code = 1

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message}; {self.hint}" if self.hint else self.message

    def __reduce__(self) -> tuple[type[NewsletterError], tuple[str, str]]:
        # Keeps the hint when the error crosses a process boundary (feeds parse in workers).
        return (type(self), (self.message, self.hint))


class ConfigError(NewsletterError):
    """config.toml is missing, unreadable, or has a missing or wrong key."""

    exit_code = 2


class FeedError(NewsletterError):
    """One feed could not be fetched or parsed; the others go on."""


class ImportFileError(NewsletterError):
    """A subscriber file could not be read or has bad rows."""


class UnknownListError(NewsletterError):
    """A --list slug that config.toml does not declare."""


class TransportError(NewsletterError):
    """The mail transport could not be reached or refused us as a whole."""


class DeliveryRefused(NewsletterError):
    """The mail server refused one message.

    ``permanent`` is true for a 5xx reply (do not retry) and false for a 4xx reply or a
    dropped connection (retry later).
    """

    def __init__(self, message: str, *, code: int | None, permanent: bool) -> None:
        super().__init__(message)
        self.code = code
        self.permanent = permanent


class DatabaseError(NewsletterError):
    """The database cannot be opened or used."""


class AddressError(NewsletterError):
    """An e-mail address that cannot be used."""


class BadToken(NewsletterError):
    """A link token that was tampered with, truncated, expired or made with another key."""


class ReaderGone(BadToken):
    """A well-signed link of a reader we no longer have: they asked to be forgotten."""


class MissingKey(NewsletterError):
    """No NEWSLETTER_SECRET_KEY, and config.toml does not allow a development key."""


class TemplateError(NewsletterError):
    """A template could not be found or rendered."""


class ImapError(NewsletterError):
    """The IMAP server could not be reached or refused us."""
