"""Publish a themed weekly digest of briefings from RSS/Atom feeds to email subscribers.

The public surface is small: `Newsletter` (the app object: `Newsletter.from_config()`, then
its services, e.g. `app.feeds.fetch()`), `Settings` and `load_settings` (config.toml), and
`NewsletterError` (every error a user can see). They are imported on first use, so that the
feed parser processes, which import this package, stay light.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"
PRODUCT_URL = "https://signaldesk.example/newsletter"
USER_AGENT = f"newsletter/{__version__} (+{PRODUCT_URL})"

__all__ = ["Newsletter", "NewsletterError", "Settings", "__version__", "load_settings"]

if TYPE_CHECKING:
    from newsletter.app import Newsletter as Newsletter
    from newsletter.config import Settings as Settings
    from newsletter.config import load_settings as load_settings
    from newsletter.errors import NewsletterError as NewsletterError

_LAZY = {
    "Newsletter": "newsletter.app",
    "Settings": "newsletter.config",
    "load_settings": "newsletter.config",
    "NewsletterError": "newsletter.errors",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'newsletter' has no attribute {name!r}")
