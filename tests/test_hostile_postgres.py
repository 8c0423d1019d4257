"""PostgreSQL after bulk changes: a plan made from an empty table's statistics once held the
first send after an import of 20,000 readers for 156 s in one UPDATE (0.4 s with them)."""

from __future__ import annotations

import threading
import time

import pytest

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
