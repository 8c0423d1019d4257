"""Several sender processes on one PostgreSQL ledger; one dies with SIGKILL part-way.

Runs in the PostgreSQL pass of the suite (NEWSLETTER_TEST_POSTGRES); on SQLite, `--workers`
means more connections in one process.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter

import pytest

from newsletter.app import Newsletter
from newsletter.config import load_settings
from tests.conftest import Project, SmtpServer, many_readers, on_postgres

READERS = 80
CONCURRENCY = 2


def prepare(project: Project, server: SmtpServer) -> None:
    many_readers(project, server, readers=READERS, concurrency=CONCURRENCY, lease=2)


def delivered(server: SmtpServer) -> Counter[str]:
    return Counter(rcpt for received in server.received for rcpt in received.recipients)


@pytest.mark.skipif(not on_postgres(), reason="several processes share a PostgreSQL ledger")
def test_four_workers_one_killed_nobody_lost(
    smtp_project: Project, smtp_server: SmtpServer
) -> None:
    prepare(smtp_project, smtp_server)
    stopped = threading.Event()
    stopped.set()  # build the digest and queue the audience, send nothing yet
    with Newsletter(load_settings(smtp_project.config_path)) as app:
        app.sending.send("weekly", stop=stopped)
    command = [
        sys.executable,
        "-m",
        "newsletter",
        "--config",
        str(smtp_project.config_path),
        "worker",
        "--list",
        "weekly",
    ]
    workers = [
        subprocess.Popen(command, stdout=subprocess.PIPE, text=True, env=os.environ.copy())
        for _ in range(4)
    ]
    deadline = time.monotonic() + 30
    while len(smtp_server.received) < 20:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    workers[0].send_signal(signal.SIGKILL)
    for worker in workers[1:]:
        assert worker.wait(timeout=60) == 0
    workers[0].wait(timeout=10)
    counts = delivered(smtp_server)
    assert len(counts) == READERS  # the others took over the dead worker's claims
    assert sum(count - 1 for count in counts.values()) <= CONCURRENCY * 2
    outputs = [w.stdout.read() for w in workers[1:] if w.stdout]
    assert all(output.startswith("Worker done: ") for output in outputs), outputs
    status = smtp_project.cli("status").output
    assert "#1 weekly: sent" in status
    assert "sending 0" in status


def test_workers_on_sqlite_are_more_connections_in_one_process(
    smtp_project: Project, smtp_server: SmtpServer
) -> None:
    smtp_project.cli("fetch")
    smtp_project.cli("subscribers", "import", "subscribers/weekly.csv", "--list", "weekly")
    output = smtp_project.cli("send", "--list", "weekly", "--yes", "--workers", "3").output
    assert "6 sent, 0 failed" in output
    assert len(smtp_server.received) == 6
