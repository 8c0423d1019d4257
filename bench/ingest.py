"""Ingest benchmark: every feed in tests/data/corpus/feeds/real over local HTTP, cold and warm,
beside a plain loop of feedparser.parse() with its defaults over the same bytes, in one run.

    .venv/bin/python bench/ingest.py [--rounds 3]

Each ingest runs in a fresh process, as `newsletter fetch` does, so starting the parser
processes is part of the figure; the imports are not (nor is feedparser's in the reference).
Like `newsletter fetch`, that process starts the parsers' fork server before its other
imports, so the server's own imports (feedparser, nh3) run beside them, untimed as the
reference's `import feedparser` is. The process is started with `-c`, whose main module, like
the console script's, costs the fork server nothing to import.
Prints a Markdown table to paste into bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from newsletter.app import Newsletter  # noqa: E402
from newsletter.config import load_settings  # noqa: E402
from newsletter.services import feeds as _imported_here  # noqa: E402, F401 (imports are untimed)
from tests.conftest import CORPUS, dump_toml  # noqa: E402
from tests.feedserver import serve  # noqa: E402

REAL = CORPUS / "feeds" / "real"


PLAIN_LOOP = """
import json, sys, time
import feedparser
contents = [open(path, "rb").read() for path in sys.argv[1:]]
started = time.perf_counter()
entries = sum(len(feedparser.parse(content).entries) for content in contents)
print(json.dumps([time.perf_counter() - started, entries]))
"""


def plain_loop_in_fresh_process(files: list[Path]) -> tuple[float, int]:
    """In a process with nothing of ours imported: we give feedparser a buffered XML driver."""
    output = subprocess.run(
        [sys.executable, "-c", PLAIN_LOOP, *map(str, files)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    seconds, entries = json.loads(output)
    return float(seconds), int(entries)


def ingest_in_fresh_process(folder: Path, urls: dict[str, str]) -> tuple[float, float, int]:
    config = tomllib_config(folder, urls)
    # As `newsletter fetch` does: the parsers' fork server starts before the other imports.
    program = (
        "import json, sys; sys.path.insert(0, sys.argv[1]); "
        "from newsletter.feeds.processes import start_fork_server; start_fork_server(); "
        "from bench import ingest; print(json.dumps(ingest.ingest(ingest.Path(sys.argv[2]))))"
    )
    output = subprocess.run(
        [sys.executable, "-c", program, str(ROOT), str(config)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    cold, warm, briefings = json.loads(output)
    return float(cold), float(warm), int(briefings)


def ingest(config: Path) -> tuple[float, float, int]:
    settings = load_settings(config)
    started = time.perf_counter()
    with Newsletter(settings) as app:  # a new app each time: opening the database counts
        cold = app.feeds.fetch()
    cold_seconds = time.perf_counter() - started
    assert all(report.status == "ok" for report in cold), [r.error for r in cold if r.error]
    started = time.perf_counter()
    with Newsletter(settings) as app:
        warm = app.feeds.fetch()
    warm_seconds = time.perf_counter() - started
    assert all(report.status == "not modified" for report in warm)
    return cold_seconds, warm_seconds, sum(report.counts.new for report in cold)


def tomllib_config(folder: Path, urls: dict[str, str]) -> Path:
    shipped = (ROOT / "config.toml").read_text()
    import tomllib

    data = tomllib.loads(shipped)
    data["feeds"] = [{"name": name, "url": url} for name, url in urls.items()]
    data["database"] = {"url": f"sqlite:///{folder / 'bench.db'}"}
    path = folder / "config.toml"
    path.write_text(dump_toml(data))
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    rounds = parser.parse_args().rounds
    files = sorted(p for p in REAL.iterdir() if p.suffix in (".rss", ".atom", ".rdf", ".xml"))
    rows = []
    with serve(CORPUS / "feeds") as server:
        urls = {path.name: server.url(f"real/{path.name}") for path in files}
        for round_number in range(1, rounds + 1):
            plain_seconds, entries = plain_loop_in_fresh_process(files)
            with tempfile.TemporaryDirectory() as folder:
                cold, warm, briefings = ingest_in_fresh_process(Path(folder), urls)
            rows.append((round_number, plain_seconds, cold, warm, entries, briefings))
    print(f"{len(files)} feeds, {rows[0][4]} entries (feedparser), {rows[0][5]} briefings stored\n")
    print(
        "| round | plain feedparser loop | cold ingest (HTTP+parse+clean+store) | "
        "speed-up | warm (all 304) | cold feeds/s | cold briefings/s |"
    )
    print("|---|---|---|---|---|---|---|")
    for number, plain, cold, warm, _entries, briefings in rows:
        print(
            f"| {number} | {plain:.2f} s | {cold:.2f} s | {plain / cold:.1f}x | {warm:.3f} s | "
            f"{len(files) / cold:.1f} | {briefings / cold:.0f} |"
        )


if __name__ == "__main__":
    main()
