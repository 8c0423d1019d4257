"""Schema migrations: they build exactly the models' schema, and upgrades keep every row."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Engine
from sqlmodel import SQLModel, create_engine

from newsletter.db import SCHEMA_HEAD, _scripts, create_schema, upgrade
from tests.conftest import Project, sqlite_only


def test_migrations_build_exactly_the_models(tmp_path: Path) -> None:
    """A model changed without a migration fails here: add one under newsletter/migrations."""
    engine = create_engine(f"sqlite:///{tmp_path / 'migrated.db'}")
    with engine.begin() as connection:
        upgrade(connection, None)
    _assert_schema_is_the_models_at_head(engine)


def test_a_new_database_is_the_models_marked_at_the_newest_migration(tmp_path: Path) -> None:
    assert _scripts().get_current_head() == SCHEMA_HEAD, "set newsletter.db.SCHEMA_HEAD"
    engine = create_engine(f"sqlite:///{tmp_path / 'new.db'}")
    create_schema(engine)
    _assert_schema_is_the_models_at_head(engine)
    create_schema(engine)  # opening it again changes nothing


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
    database = sqlite3.connect(project.folder / "newsletter.db")
    database.execute("DROP TABLE alembic_version")  # as create_all left it, before migrations
    database.commit()
    database.close()
    assert "Nothing new" in project.cli("send", "--list", "weekly", "--yes").output
    status = project.cli("status").output
    assert "sent 6" in status
    database = sqlite3.connect(project.folder / "newsletter.db")
    (revision,) = database.execute("SELECT version_num FROM alembic_version").fetchone()
    database.close()
    assert revision == _scripts().get_current_head()
