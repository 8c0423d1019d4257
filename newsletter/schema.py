"""The schema: a new database gets the models' tables marked at the newest migration, an older
one is upgraded through Alembic, and one at SCHEMA_HEAD reads no migration scripts."""

from __future__ import annotations

import functools

from alembic import command
from alembic.config import Config as AlembicConfig
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import (
    Column,
    Connection,
    Engine,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    inspect,
)
from sqlalchemy.exc import OperationalError
from sqlmodel import SQLModel

from newsletter import models  # noqa: F401 (the tables SQLModel.metadata creates)
from newsletter.errors import DatabaseError
from newsletter.resources import package_folder

MIGRATIONS = package_folder("migrations")


@functools.cache
def _scripts() -> ScriptDirectory:
    return ScriptDirectory(str(MIGRATIONS))


def create_schema(engine: Engine) -> None:
    """Create the schema, or upgrade it to the newest migration; data is always kept."""
    try:
        with engine.begin() as connection:
            _migrate(connection)
    except OperationalError as exc:
        raise DatabaseError(
            f"cannot create or upgrade the database schema at {engine.url!r}: {exc.orig}",
            hint="check [database] url in config.toml and that its folder is writable",
        ) from None


# The newest migration, named here so that opening an up-to-date database (every command does)
# reads no migration scripts; tests/test_migrations.py holds it to newsletter/migrations.
SCHEMA_HEAD = "0006"


def _migrate(connection: Connection) -> None:
    current = MigrationContext.configure(connection).get_current_revision()
    if current == SCHEMA_HEAD:
        return
    if current is None and not inspect(connection).get_table_names():
        # A new database: the models' tables at once, marked as the newest migration. Running
        # every migration from the first would build the same tables, slower.
        SQLModel.metadata.create_all(connection)
        _ALEMBIC_VERSION.create(connection)
        connection.execute(_ALEMBIC_VERSION.insert().values(version_num=SCHEMA_HEAD))
        return
    upgrade(connection, current)


# Alembic's own table of the revision a database is at, as Alembic creates it.
_ALEMBIC_VERSION = Table(
    "alembic_version",
    MetaData(),
    Column("version_num", String(32), nullable=False),
    PrimaryKeyConstraint("version_num", name="alembic_version_pkc"),
)


def upgrade(connection: Connection, current: str | None) -> None:
    """Run the migrations from the revision the database is at up to the newest."""
    config = AlembicConfig()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    if current is None and inspect(connection).has_table("delivery"):
        # Made before migrations existed: take it as the baseline if it matches the models.
        missing = [c for c in _missing_columns(connection) if c not in _ADDED_AFTER_BASELINE]
        if missing:
            raise DatabaseError(
                f"the database at {connection.engine.url!r} was made by an unreleased version "
                f"of newsletter (it lacks {', '.join(missing[:3])})",
                hint="keep a copy of the file and start a new database",
            )
        command.stamp(config, "0001")
    command.upgrade(config, "head")


# Columns that later migrations add to the baseline's tables: a database from before migrations
# lacks them, and the migrations add them.
_ADDED_AFTER_BASELINE = frozenset(
    {
        "subscriber.themes",
        "subscription.confirmation_sent_at",
        "delivery.edition_id",
        "digest.note",
        "briefing.image_url",
        "briefing.image_width",
        "briefing.image_height",
        "briefing.image_alt",
        "briefing.why_it_matters",
    }
)


def _missing_columns(connection: Connection) -> list[str]:
    inspector = inspect(connection)
    missing = []
    for table in SQLModel.metadata.sorted_tables:
        if not inspector.has_table(table.name):
            continue
        present = {column["name"] for column in inspector.get_columns(table.name)}
        missing += [f"{table.name}.{c.name}" for c in table.columns if c.name not in present]
    return missing
