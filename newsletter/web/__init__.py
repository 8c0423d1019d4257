"""The web side: one-click unsubscribe (RFC 8058), confirmation links and the public archive."""
