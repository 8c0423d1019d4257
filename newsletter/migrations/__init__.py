"""Schema migrations (Alembic). `newsletter init` and every command upgrade a database to head."""
