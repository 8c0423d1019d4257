"""Sending: MIME, transports (Maildir, SMTP) and the delivery ledger."""
