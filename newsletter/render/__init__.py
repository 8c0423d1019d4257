"""Digest value -> HTML (Jinja2 + MJML) and plain text, with recipient placeholders left in."""
