"""PostgreSQL after bulk changes: a plan made from an empty table's statistics once held the
first send after an import of 20,000 readers for 156 s in one UPDATE (0.4 s with them)."""

from __future__ import annotations

import subprocess
import sys
import threading
import time

import pytest
import sqlalchemy

from newsletter.app import Newsletter
from newsletter.config import load_settings
from tests.conftest import Project, on_postgres

pytestmark = pytest.mark.skipif(not on_postgres(), reason="about PostgreSQL's planner")


def test_the_first_send_after_a_big_import_is_not_held_by_stale_statistics(
    project: Project,
) -> None:
    rows = "\n".join(f"reader{n}@example.com,Reader {n}" for n in range(20_000))
    (project.folder / "readers.csv").write_text(f"email,name\n{rows}\n")
    with Newsletter(load_settings(project.config_path)) as app:
        app.feeds.fetch()
        app.subscribers.import_csv(project.folder / "readers.csv", "weekly")
        queued_only = threading.Event()
        queued_only.set()  # build the digest, queue the audience, prepare the run; send nothing
        started = time.perf_counter()
        report = app.sending.send("weekly", stop=queued_only)
        elapsed = time.perf_counter() - started
    assert report.audience == 20_000
    assert elapsed < 20, f"{elapsed:.1f} s to queue 20,000 deliveries and prepare the send"


def test_a_killed_command_does_not_leave_its_statement_running(project: Project) -> None:
    """SIGKILL a process in the middle of a long statement on our engine: its backend stops
    within seconds instead of running the statement to its end."""
    url = project.config()["database"]["url"]
    program = (
        "import sys; from newsletter.db import make_engine; "
        "engine = make_engine(sys.argv[1]); connection = engine.connect(); "
        "connection.exec_driver_sql(\"SELECT 'nl-killed-probe', pg_sleep(120)\")"
    )
    child = subprocess.Popen([sys.executable, "-c", program, url])
    watcher = sqlalchemy.create_engine(url)
    try:
        assert _wait_for(watcher, running=True), "the probe statement never started"
        child.kill()
        child.wait(timeout=10)
        started = time.perf_counter()
        assert _wait_for(watcher, running=False, seconds=15), "the backend kept running it"
        assert time.perf_counter() - started < 15
    finally:
        child.kill()
        watcher.dispose()


def _wait_for(engine: sqlalchemy.Engine, *, running: bool, seconds: float = 20) -> bool:
    deadline = time.monotonic() + seconds
    query = (
        "SELECT count(*) FROM pg_stat_activity WHERE position('nl-killed-probe' in query) > 0 "
        "AND pid <> pg_backend_pid()"
    )
    while time.monotonic() < deadline:
        with engine.connect() as connection:
            if bool(connection.exec_driver_sql(query).scalar()) == running:
                return True
        time.sleep(0.2)
    return False
