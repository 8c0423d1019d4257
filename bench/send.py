"""Send benchmark: a digest to N subscribers through Postfix's smtp-sink on 127.0.0.1, beside
Postfix's own C load generator smtp-source sending as many messages of the same size at the
same concurrency to the same sink, in the same run.

    .venv/bin/python bench/send.py [--subscribers 20000] [--concurrency 10]

Needs Debian's postfix package (smtp-sink, smtp-source). Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import os
import resource
import socket
import subprocess
import sys
import tempfile
import time
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from newsletter.app import Newsletter  # noqa: E402
from newsletter.config import load_settings  # noqa: E402
from tests.conftest import dump_toml  # noqa: E402


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def start_sink(port: int) -> subprocess.Popen[bytes]:
    user = ["-u", "postfix"] if os.geteuid() == 0 else []
    sink = subprocess.Popen(["smtp-sink", *user, f"127.0.0.1:{port}", "1024"])
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return sink
        time.sleep(0.05)
    raise RuntimeError("smtp-sink did not start")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subscribers", type=int, default=20_000)
    parser.add_argument("--concurrency", type=int, default=10)
    options = parser.parse_args()
    count, concurrency = options.subscribers, options.concurrency
    port = free_port()
    sink = start_sink(port)
    try:
        with tempfile.TemporaryDirectory() as folder:
            work = Path(folder)
            data = tomllib.loads((ROOT / "config.toml").read_text())
            data["delivery"] = {"transport": "smtp"}
            data["smtp"] = {"host": "127.0.0.1", "port": port, "concurrency": concurrency}
            data["feeds"] = [{"name": "sample", "url": str(ROOT / "samples" / "briefings.xml")}]
            (work / "config.toml").write_text(dump_toml(data))
            rows = "\n".join(f"reader{n}@example.com,Reader {n}" for n in range(count))
            (work / "readers.csv").write_text(f"email,name\n{rows}\n")
            settings = load_settings(work / "config.toml")
            with Newsletter(settings) as app:
                app.subscribers.import_csv(work / "readers.csv", "weekly")
                app.feeds.fetch()
                draft = app.digests.draft("weekly")
                assert draft is not None
                size = len(draft.message.render(app.digests.sample_recipient()))
            rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
            started = time.perf_counter()
            with Newsletter(settings) as app:  # as `newsletter send` runs: the database opens
                report = app.sending.send("weekly")
            ours = time.perf_counter() - started
            rss_after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
            assert report.summary.sent == count, report.summary
        started = time.perf_counter()
        subprocess.run(
            [
                "smtp-source",
                "-s",
                str(concurrency),
                "-m",
                str(count),
                "-l",
                str(size),
                "-f",
                "briefings@signaldesk.example",
                "-t",
                "reader@example.com",
                f"127.0.0.1:{port}",
            ],
            check=True,
        )
        reference = time.perf_counter() - started
    finally:
        sink.terminate()
        sink.wait()
    print(
        "| messages | size | concurrency | newsletter send | smtp-source | ratio | "
        "peak RSS (growth during send) |"
    )
    print("|---|---|---|---|---|---|---|")
    print(
        f"| {count:,} | {size / 1024:.0f} KB | {concurrency} | {count / ours:,.0f} msg/s "
        f"({ours:.1f} s) | {count / reference:,.0f} msg/s ({reference:.1f} s) | "
        f"{reference / ours:.2f}x | {rss_after / 1024:.0f} MiB "
        f"(+{(rss_after - rss_before) / 1024:.0f}) |"
    )


if __name__ == "__main__":
    main()
