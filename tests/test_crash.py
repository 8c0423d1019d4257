"""A send stopped by SIGTERM or killed with SIGKILL part-way: nobody is lost, nobody doubled
beyond the messages that were in flight."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter

from tests.conftest import Project, SmtpServer, many_readers

READERS = 60
CONCURRENCY = 3


def prepare(project: Project, server: SmtpServer) -> None:
    many_readers(project, server, readers=READERS, concurrency=CONCURRENCY, lease=1)


def start_send(project: Project) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "newsletter",
            "--config",
            str(project.config_path),
            "send",
            "--list",
            "weekly",
            "--yes",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=os.environ.copy(),
    )


def wait_for(server: SmtpServer, count: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while len(server.received) < count:
        assert time.monotonic() < deadline, f"only {len(server.received)} arrived"
        time.sleep(0.01)


def delivered(server: SmtpServer) -> Counter[str]:
    return Counter(rcpt for received in server.received for rcpt in received.recipients)


def test_sigterm_finishes_what_is_in_flight_and_the_rerun_completes(
    smtp_project: Project, smtp_server: SmtpServer
) -> None:
    prepare(smtp_project, smtp_server)
    process = start_send(smtp_project)
    wait_for(smtp_server, 15)
    process.send_signal(signal.SIGTERM)
    output, _ = process.communicate(timeout=30)
    assert process.returncode == 1, output
    assert "Stopped early" in output
    stopped_at = len(smtp_server.received)
    assert stopped_at < READERS
    status = smtp_project.cli("status").output
    assert f"sent {stopped_at} " in status  # every message that went out is in the ledger
    assert "sending 0" in status

    smtp_project.cli("send", "--list", "weekly", "--yes")
    counts = delivered(smtp_server)
    assert len(counts) == READERS
    assert set(counts.values()) == {1}  # a clean stop doubles nobody


def test_sigkill_loses_nobody_and_doubles_at_most_the_in_flight_window(
    smtp_project: Project, smtp_server: SmtpServer
) -> None:
    prepare(smtp_project, smtp_server)
    process = start_send(smtp_project)
    wait_for(smtp_server, 20)
    process.kill()
    process.wait(timeout=30)
    killed_at = len(smtp_server.received)
    assert killed_at < READERS

    time.sleep(0.5)
    smtp_project.cli("send", "--list", "weekly", "--yes")  # takes over the dead run's claims
    counts = delivered(smtp_server)
    assert len(counts) == READERS  # everyone received at least one copy
    doubled = sum(count - 1 for count in counts.values())
    assert doubled <= CONCURRENCY * 2, counts  # only what was in flight when it died
    status = smtp_project.cli("status").output
    assert f"sent {READERS} " in status
    assert "#1 weekly: sent" in status
