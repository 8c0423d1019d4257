"""Publish a themed weekly digest of briefings from RSS/Atom feeds to email subscribers."""

__version__ = "0.1.0"
PRODUCT_URL = "https://signaldesk.example/newsletter"
USER_AGENT = f"newsletter/{__version__} (+{PRODUCT_URL})"
