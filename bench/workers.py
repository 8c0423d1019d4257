"""Worker scaling: 1, 2 and 4 `newsletter worker` processes sharing one PostgreSQL ledger,
sending to an SMTP sink that answers each DATA after 20 ms (a latency-bound relay).

    NEWSLETTER_BENCH_POSTGRES=postgresql+psycopg://postgres@127.0.0.1:5432 \\
        .venv/bin/python bench/workers.py [--readers 2000]

Prints a Markdown table: each run's rate and its ratio to one worker.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import threading
import time
import tomllib
import uuid
from pathlib import Path

import sqlalchemy
from aiosmtpd.controller import Controller

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from newsletter import pipeline  # noqa: E402
from newsletter.config import load_settings  # noqa: E402
from tests.conftest import dump_toml, free_port  # noqa: E402


class SlowSink:
    def __init__(self) -> None:
        self.count = 0

    async def handle_DATA(self, server: object, session: object, envelope: object) -> str:
        await asyncio.sleep(0.02)
        self.count += 1
        return "250 OK"


def run(server: str, workers: int, readers: int, port: int) -> float:
    name = f"nl_bench_{uuid.uuid4().hex[:8]}"
    admin = sqlalchemy.create_engine(f"{server}/postgres", isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.exec_driver_sql(f'CREATE DATABASE "{name}"')
    try:
        with tempfile.TemporaryDirectory() as folder:
            work = Path(folder)
            data = tomllib.loads((ROOT / "config.toml").read_text())
            data["database"] = {"url": f"{server}/{name}"}
            data["delivery"] = {"transport": "smtp", "claim_lease_seconds": 30}
            data["smtp"] = {"host": "127.0.0.1", "port": port, "concurrency": 4}
            data["feeds"] = [{"name": "sample", "url": str(ROOT / "samples" / "briefings.xml")}]
            (work / "config.toml").write_text(dump_toml(data))
            rows = "\n".join(f"reader{n}@example.com,Reader {n}" for n in range(readers))
            (work / "readers.csv").write_text(f"email,name\n{rows}\n")
            settings = load_settings(work / "config.toml")
            pipeline.import_subscribers(settings, work / "readers.csv", "weekly")
            pipeline.fetch_feeds(settings)
            ready = threading.Event()
            ready.set()
            pipeline.send(settings, "weekly", stop=ready)  # digest built, audience queued
            command = [
                sys.executable,
                "-m",
                "newsletter",
                "--config",
                str(work / "config.toml"),
                "worker",
            ]
            started = time.perf_counter()
            processes = [
                subprocess.Popen(command, stdout=subprocess.DEVNULL) for _ in range(workers)
            ]
            for process in processes:
                process.wait()
            return time.perf_counter() - started
    finally:
        with admin.connect() as connection:
            connection.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--readers", type=int, default=2000)
    readers = parser.parse_args().readers
    server = os.environ["NEWSLETTER_BENCH_POSTGRES"]
    os.environ.setdefault("NEWSLETTER_SECRET_KEY", "bench-key-0123456789abcdef")
    sink = SlowSink()
    port = free_port()
    controller = Controller(sink, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        times = {workers: run(server, workers, readers, port) for workers in (1, 2, 4)}
    finally:
        controller.stop()
    print("| workers (4 connections each) | time | rate | vs one worker |")
    print("|---|---|---|---|")
    for workers, seconds in times.items():
        print(
            f"| {workers} | {seconds:.1f} s | {readers / seconds:,.0f} msg/s | "
            f"{times[1] / seconds:.2f}x |"
        )


if __name__ == "__main__":
    main()
