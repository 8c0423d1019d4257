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

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from newsletter.app import Newsletter  # noqa: E402
from newsletter.config import load_settings  # noqa: E402
from tests.conftest import dump_toml, free_port  # noqa: E402


class LatencySink:
    """A minimal SMTP server that costs next to nothing per message and answers each DATA
    after 20 ms, like a relay far away. Speaks just enough SMTP, with PIPELINING."""

    def __init__(self, port: int, delay: float = 0.02) -> None:
        self.port, self.delay = port, delay
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    async def _session(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"220 sink ESMTP\r\n")
        try:
            while line := await reader.readline():
                verb = line[:4].upper()
                if verb == b"EHLO":
                    writer.write(b"250-sink\r\n250-PIPELINING\r\n250 SIZE 100000000\r\n")
                elif verb == b"DATA":
                    writer.write(b"354 go ahead\r\n")
                    await writer.drain()
                    await reader.readuntil(b"\r\n.\r\n")
                    await asyncio.sleep(self.delay)
                    writer.write(b"250 queued\r\n")
                elif verb == b"QUIT":
                    writer.write(b"221 bye\r\n")
                    await writer.drain()
                    break
                else:
                    writer.write(b"250 ok\r\n")
                await writer.drain()
        finally:
            writer.close()

    def __enter__(self) -> LatencySink:
        self.thread.start()
        server = asyncio.run_coroutine_threadsafe(
            asyncio.start_server(self._session, "127.0.0.1", self.port, limit=2**22), self.loop
        )
        self.server = server.result(timeout=10)
        return self

    def __exit__(self, *exc: object) -> None:
        self.loop.call_soon_threadsafe(self.server.close)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)


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
            data["smtp"] = {
                "host": "127.0.0.1",
                "port": port,
                "concurrency": int(os.environ.get("BENCH_CONNECTIONS", "4")),
            }
            data["feeds"] = [{"name": "sample", "url": str(ROOT / "samples" / "briefings.xml")}]
            (work / "config.toml").write_text(dump_toml(data))
            rows = "\n".join(f"reader{n}@example.com,Reader {n}" for n in range(readers))
            (work / "readers.csv").write_text(f"email,name\n{rows}\n")
            settings = load_settings(work / "config.toml")
            ready = threading.Event()
            ready.set()
            with Newsletter(settings) as app:
                app.subscribers.import_csv(work / "readers.csv", "weekly")
                app.feeds.fetch()
                app.sending.send("weekly", stop=ready)  # digest built, audience queued
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
    port = free_port()
    with LatencySink(port):
        counts = [int(n) for n in os.environ.get("BENCH_WORKERS", "1,2,4").split(",")]
        times = {workers: run(server, workers, readers, port) for workers in counts}
    print("| workers (4 connections each) | time | rate | vs one worker |")
    print("|---|---|---|---|")
    for workers, seconds in times.items():
        print(
            f"| {workers} | {seconds:.1f} s | {readers / seconds:,.0f} msg/s | "
            f"{times[1] / seconds:.2f}x |"
        )


if __name__ == "__main__":
    main()
