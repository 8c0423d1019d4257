"""Schema migrations: they build exactly the models' schema, and upgrades keep every row."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config as AlembicConfig
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Engine, inspect
from sqlmodel import SQLModel, create_engine

from newsletter.schema import MIGRATIONS, SCHEMA_HEAD, _scripts, create_schema, upgrade
from tests.conftest import Project, sqlite_only


def test_migrations_build_exactly_the_models(tmp_path: Path) -> None:
    """A model changed without a migration fails here: add one under newsletter/migrations."""
    engine = create_engine(f"sqlite:///{tmp_path / 'migrated.db'}")
    with engine.begin() as connection:
        upgrade(connection, None)
    _assert_schema_is_the_models_at_head(engine)


def test_a_new_database_is_the_migrated_schema_marked_at_the_newest_migration(
    tmp_path: Path,
) -> None:
    assert _scripts().get_current_head() == SCHEMA_HEAD, "set newsletter.schema.SCHEMA_HEAD"
    new = create_engine(f"sqlite:///{tmp_path / 'new.db'}")
    create_schema(new)
    migrated = create_engine(f"sqlite:///{tmp_path / 'migrated.db'}")
    with migrated.begin() as connection:
        upgrade(connection, None)
    assert _schema(new) == _schema(migrated)
    _assert_schema_is_the_models_at_head(new)
    migrated.dispose()
    create_schema(new)  # opening it again changes nothing


def _schema(engine: Engine) -> dict[str, Any]:
    inspector = inspect(engine)
    return {
        table: (
            [(c["name"], str(c["type"]), c["nullable"]) for c in inspector.get_columns(table)],
            inspector.get_pk_constraint(table)["constrained_columns"],
            sorted(
                (i["name"], tuple(i["column_names"]), i["unique"])
                for i in inspector.get_indexes(table)
            ),
            sorted(tuple(u["column_names"]) for u in inspector.get_unique_constraints(table)),
            sorted(
                (tuple(f["constrained_columns"]), f["referred_table"])
                for f in inspector.get_foreign_keys(table)
            ),
        )
        for table in inspector.get_table_names()
    }


def _assert_schema_is_the_models_at_head(engine: Engine) -> None:
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        assert context.get_current_revision() == _scripts().get_current_head()
        assert compare_metadata(context, SQLModel.metadata) == []
    engine.dispose()


@sqlite_only
def test_a_database_made_before_migrations_is_adopted_with_its_data(project: Project) -> None:
    project.cli("fetch")
    project.cli("subscribers", "import", "subscribers/weekly.csv", "--list", "weekly")
    project.cli("send", "--list", "weekly", "--yes")
    engine = create_engine(f"sqlite:///{project.folder / 'newsletter.db'}")
    with engine.begin() as connection:  # back to the schema of the first release...
        config = AlembicConfig()
        config.set_main_option("script_location", str(MIGRATIONS))
        config.attributes["connection"] = connection
        command.downgrade(config, "0001")
        connection.exec_driver_sql("DROP TABLE alembic_version")  # ...made before migrations
    engine.dispose()
    assert "Nothing new" in project.cli("send", "--list", "weekly", "--yes").output
    status = project.cli("status").output
    assert "sent 6" in status
    database = sqlite3.connect(project.folder / "newsletter.db")
    (revision,) = database.execute("SELECT version_num FROM alembic_version").fetchone()
    database.close()
    assert revision == _scripts().get_current_head()
