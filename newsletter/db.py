"""Engine and sessions; SQLite by default, PostgreSQL through the same URL setting. The
schema and its migrations are newsletter/schema.py."""

from __future__ import annotations

import contextlib
import functools
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import (
    Engine,
    event,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.exc import ArgumentError, NoSuchModuleError, SQLAlchemyError
from sqlmodel import Session, create_engine, select

from newsletter import models
from newsletter.config import Settings
from newsletter.errors import DatabaseError
from newsletter.schema import create_schema

SUPPORTED = ("sqlite", "postgresql")


def database_failure(exc: SQLAlchemyError) -> DatabaseError:
    """What went wrong with the database, in one line without the SQL or its parameters (which
    hold readers' addresses), and what to do."""
    reason = str(getattr(exc, "orig", None) or exc).splitlines()[0]
    lowered = reason.lower()
    if "readonly" in lowered or "read-only" in lowered or "permission denied" in lowered:
        hint = "make the database file and its folder writable by this user; nothing was changed"
    elif ("disk" in lowered and "full" in lowered) or "no space" in lowered:
        hint = "free some disk space and run the same command again; what was done is kept whole"
    elif "locked" in lowered:
        hint = "another command holds the database; run this one again when it is done"
    else:
        hint = "check [database] url in config.toml and that the database is reachable"
    return DatabaseError(f"the database failed: {reason}", hint=hint)


def make_engine(url: str) -> Engine:
    if url.partition(":")[0].partition("+")[0] not in SUPPORTED:
        raise DatabaseError(
            f"[database] url {url!r}: only SQLite and PostgreSQL are supported",
            hint="use sqlite:///newsletter.db (a path beside config.toml) or "
            "postgresql+psycopg://user@host/dbname",
        )
    try:
        return _make_engine(url)
    except (ArgumentError, NoSuchModuleError) as exc:
        raise DatabaseError(
            f"[database] url {url!r} is not a database URL SQLAlchemy can open: {exc}",
            hint="use sqlite:///newsletter.db (a path beside config.toml) or "
            "postgresql+psycopg://user@host/dbname",
        ) from None
    except ModuleNotFoundError as exc:
        raise DatabaseError(
            f"[database] url {url!r} needs the Python package {exc.name!r}",
            hint=f"install it into the project's environment: pip install {exc.name}",
        ) from None


def _make_engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        path = url.removeprefix("sqlite:///")
        if path and path != url and not path.startswith(":memory:"):
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            _create_private(Path(path))
        engine = create_engine(url, connect_args={"timeout": 30})
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    engine = create_engine(url, pool_pre_ping=True)
    event.listen(engine, "connect", _postgres_session)
    return engine


def _postgres_session(dbapi_connection: Any, _record: Any) -> None:
    """A backend whose client died (a killed `send`) stops its statement within seconds; by
    default PostgreSQL runs it to the end, minutes for a big UPDATE. The setting is PostgreSQL
    14's; an older server keeps its default."""
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("SET client_connection_check_interval = '2s'")
    except Exception:  # an older server does not know it: nothing to do
        dbapi_connection.rollback()
    else:
        dbapi_connection.commit()
    finally:
        cursor.close()


def _create_private(path: Path) -> None:
    """A new database file readable by its owner only: it holds every reader's address. SQLite
    gives its -wal and -shm files the same mode. An existing file keeps the mode it has."""
    # There already, or the folder is not writable: SQLite says so in turn.
    with contextlib.suppress(OSError):
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    # WAL lets readers (preview, status) run while a send writes; foreign keys are off by default.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    # Deleted rows are overwritten, so a forgotten address does not linger in free pages.
    cursor.execute("PRAGMA secure_delete=ON")
    cursor.close()


def _no_autocheckpoint(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA wal_autocheckpoint=0")
    cursor.close()


def bulk_insert(
    session: Session, table: str, columns: Sequence[str], rows: Iterable[Sequence[Any]]
) -> None:
    """Many rows through the driver's own executemany: for imports of 100,000 rows.

    Values must already be in database form (JSON as text), times UTC.
    """
    connection = session.connection()
    dialect = connection.dialect
    sql = f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})"
    connection.exec_driver_sql(
        driver_sql(dialect, sql), [driver_values(dialect, row) for row in rows]
    )


class DriverConnection:
    """A connection used through its driver (DB-API), with SQL written with ? for parameters:
    for statements run so often that SQLAlchemy's handling of each cost more than the
    database's work (storing a feed's entries, one commit each)."""

    def __init__(self, engine: Engine) -> None:
        self.dialect = engine.dialect
        self._connection = engine.raw_connection()
        self._cursor = self._connection.cursor()

    def execute(self, sql: str, parameters: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """Run one statement; the rows it returns, if any."""
        self._cursor.execute(driver_sql(self.dialect, sql), driver_values(self.dialect, parameters))
        return list(self._cursor.fetchall()) if self._cursor.description else []

    def commit(self) -> None:
        self._connection.commit()

    def rollback(self) -> None:
        self._connection.rollback()

    def close(self) -> None:
        self._connection.close()  # back to the engine's pool, rolled back

    def __enter__(self) -> DriverConnection:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()


@functools.lru_cache(maxsize=64)
def _format_sql(sql: str) -> str:
    return sql.replace("%", "%%").replace("?", "%s")


def driver_sql(dialect: Dialect, sql: str) -> str:
    """SQL written with ? for its parameters, in the parameter style of the dialect's driver."""
    return sql if dialect.paramstyle == "qmark" else _format_sql(sql)


def driver_values(dialect: Dialect, values: Iterable[Any]) -> tuple[Any, ...]:
    """Values as SQLAlchemy would hand them to the driver: times naive UTC, and on SQLite the
    text it stores."""
    if dialect.name == "sqlite":
        return tuple(
            _sqlite_time_text(_naive_utc(v)) if isinstance(v, datetime) else v for v in values
        )
    return tuple(_naive_utc(v) if isinstance(v, datetime) else v for v in values)


def _naive_utc(value: datetime) -> datetime:
    return value if value.tzinfo is None else value.astimezone(UTC).replace(tzinfo=None)


@functools.lru_cache(maxsize=64)
def _sqlite_time_text(value: datetime) -> str:
    # SQLAlchemy's format for SQLite (YYYY-MM-DD HH:MM:SS.ffffff); isoformat writes it many
    # times faster than strftime. Cached: an import stamps its 100,000 rows with one time.
    return value.isoformat(sep=" ", timespec="microseconds")


def probe_write(engine: Engine) -> None:
    """Commit a write that changes nothing anyone reads, or raise: SQLite skips an UPDATE that
    sets a value to itself, so there the header's user_version (unused by us) is flipped; on
    PostgreSQL such an UPDATE is a real write."""
    with engine.begin() as connection:
        if engine.dialect.name == "sqlite":
            version = connection.exec_driver_sql("PRAGMA user_version").scalar() or 0
            connection.exec_driver_sql(f"PRAGMA user_version = {int(version) ^ 1}")
        else:
            connection.exec_driver_sql(
                "UPDATE mailing_list SET name = name WHERE id = (SELECT min(id) FROM mailing_list)"
            )


def refresh_statistics(session: Session, *tables: str) -> None:
    """After a bulk change (an import, a send's audience), let PostgreSQL see the tables' new
    size: a plan made from the statistics of an empty table once took 160 s for an UPDATE that
    runs in 42 ms with them. SQLite plans without such statistics."""
    if session.get_bind().dialect.name != "postgresql":
        return
    connection = session.connection()
    for table in tables:
        if table not in _ANALYZABLE:
            raise ValueError(f"not a table of ours: {table!r}")
        connection.exec_driver_sql(f"ANALYZE {table}")
    session.commit()


_ANALYZABLE = frozenset({"subscriber", "subscription", "delivery", "briefing"})


def compact_after_erasure(engine: Engine) -> None:
    """Fold the write-ahead log into the file and empty it: old page images go with it."""
    if engine.dialect.name != "sqlite":
        return
    for _ in range(50):  # a reader in another process (newsletter serve) may hold it a moment
        with engine.connect() as connection:
            busy = connection.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)").scalar()
        if not busy:
            return
        time.sleep(0.1)
    raise DatabaseError(
        "the erased data is gone from the database but still in its write-ahead log, which "
        "another process keeps open",
        hint="stop `newsletter serve` a moment and run the same forget again to finish",
    )


class Database:
    """One engine per process, opened from the settings; the schema is created when missing."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.engine = make_engine(settings.database_url)
        create_schema(self.engine)

    @contextmanager
    def session(self) -> Iterator[Session]:
        with Session(self.engine, expire_on_commit=False) as session:
            yield session

    def checkpoint_apart(self, every: float = 1.0) -> Callable[[], None]:
        """SQLite: fold the write-ahead log back into the file from a thread of its own, every
        `every` seconds, instead of in whichever commit finds the log over 1,000 pages. For
        `newsletter serve`: beside a send that log fills fast, and a reader's unsubscribe that
        drew the checkpoint waited for its fsync (up to a second). Returns what stops it."""
        engine = self.engine
        if engine.dialect.name != "sqlite":
            return lambda: None
        if not event.contains(engine, "connect", _no_autocheckpoint):
            event.listen(engine, "connect", _no_autocheckpoint)
        engine.dispose()  # the pooled connections were opened without it
        stop = threading.Event()

        def run() -> None:
            while not stop.wait(every):
                # PASSIVE: it neither waits for nor blocks a writer; what it cannot fold yet
                # waits for the next round.
                with contextlib.suppress(SQLAlchemyError), engine.connect() as connection:
                    connection.exec_driver_sql("PRAGMA wal_checkpoint(PASSIVE)")

        thread = threading.Thread(target=run, name="wal-checkpoint", daemon=True)
        thread.start()

        def stop_checkpoints() -> None:
            stop.set()
            thread.join()

        return stop_checkpoints

    def dispose(self) -> None:
        self.engine.dispose()


def sync_config(database: Database) -> None:
    """Make the feed and list rows match config.toml (add and rename; never delete)."""
    settings = database.settings
    configured = {source.name for source in settings.feeds}
    with database.session() as session:
        # One read per table, not one per feed: every command opens the database this way.
        feeds = session.exec(select(models.Feed)).all()
        by_name = {feed.name: feed for feed in feeds}
        for source in settings.feeds:
            feed = by_name.get(source.name)
            location = settings.feed_location(source)
            if feed is None:
                # A feed renamed in config.toml keeps its row (and so its briefings' identity).
                feed = next(
                    (f for f in feeds if f.config_url == location and f.name not in configured),
                    None,
                )
                if feed is not None:
                    feed.name = source.name
                    continue
                session.add(models.Feed(name=source.name, config_url=location, url=location))
            elif feed.config_url != location:
                feed.config_url = feed.url = location
                feed.etag = feed.last_modified = None
                feed.disabled = False
        lists = {row.slug: row for row in session.exec(select(models.MailingList)).all()}
        for declared in settings.lists:
            row = lists.get(declared.slug)
            if row is None:
                session.add(models.MailingList(slug=declared.slug, name=declared.name))
            elif row.name != declared.name:
                row.name = declared.name
        session.commit()


def list_row(session: Session, settings: Settings, slug: str) -> models.MailingList:
    """The database row of a list declared in config.toml (UnknownListError otherwise)."""
    settings.mailing_list(slug)
    row = session.exec(select(models.MailingList).where(models.MailingList.slug == slug)).first()
    if row is None:
        row = models.MailingList(slug=slug, name=settings.mailing_list(slug).name)
        session.add(row)
        session.flush()
    return row
