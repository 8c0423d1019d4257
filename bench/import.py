"""Import benchmark: 100,000 subscribers from CSV into a fresh SQLite database, then again
(idempotent re-import), beside the floor of the same run: reading the CSV and validating every
address with email-validator, with no database at all. Then `subscribers export` of the whole
list in a process of its own, beside `newsletter lists` on the same database: the export's
memory should not grow with the list.

    .venv/bin/python bench/import.py [--rows 100000]
"""

from __future__ import annotations

import argparse
import csv
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from email_validator import validate_email

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from newsletter.app import Newsletter  # noqa: E402
from newsletter.config import load_settings  # noqa: E402
from newsletter.services import subscribers as _imported_here  # noqa: E402, F401 (untimed)


def write_csv(path: Path, rows: int) -> None:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["email", "name", "company"])
        for number in range(rows):
            writer.writerow(
                [
                    f"Reader.{number}@Example{number % 97}.com",
                    f"Reader {number}",
                    f"Company {number % 13}",
                ]
            )


def floor(path: Path) -> float:
    started = time.perf_counter()
    with path.open(newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            validate_email(row["email"], check_deliverability=False)
    return time.perf_counter() - started


# ru_maxrss would count the pages a child shares with this big process when it forks;
# VmHWM is the peak of the memory the command itself maps after exec.
MEASURED = """
import runpy, sys
sys.argv = ["newsletter", *sys.argv[1:]]
try:
    runpy.run_module("newsletter", run_name="__main__")
finally:
    sys.stderr.write(next(l for l in open("/proc/self/status") if l.startswith("VmHWM:")))
"""


def child_run(work: Path, *arguments: str) -> tuple[float, int, int]:
    """Seconds, lines written to standard output and peak RSS (bytes) of one command."""
    command = [sys.executable, "-c", MEASURED, "--config", str(work / "config.toml")]
    started = time.perf_counter()
    result = subprocess.run([*command, *arguments], capture_output=True, cwd=work, check=True)
    seconds = time.perf_counter() - started
    peak_kib = int(result.stderr.decode().rsplit("VmHWM:", 1)[1].split()[0])
    return seconds, result.stdout.count(b"\n"), peak_kib * 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    rows = parser.parse_args().rows
    with tempfile.TemporaryDirectory() as folder:
        work = Path(folder)
        (work / "config.toml").write_text((ROOT / "config.toml").read_text())
        settings = load_settings(work / "config.toml")
        data = work / "subscribers.csv"
        write_csv(data, rows)
        reference = floor(data)
        started = time.perf_counter()
        with Newsletter(settings) as app:
            first = app.subscribers.import_csv(data, "weekly")
        cold = time.perf_counter() - started
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        started = time.perf_counter()
        with Newsletter(settings) as app:
            again = app.subscribers.import_csv(data, "weekly")
        warm = time.perf_counter() - started
        lists_seconds, _, lists_peak = child_run(work, "lists")
        export_seconds, lines, export_peak = child_run(
            work, "subscribers", "export", "--list", "weekly"
        )
    assert first.added == rows
    assert again.unchanged == rows
    assert lines == rows + 1
    print("| rows | CSV + validation only | first import | re-import | ratio to floor | peak RSS |")
    print("|---|---|---|---|---|---|")
    print(
        f"| {rows:,} | {reference:.2f} s | {cold:.2f} s | {warm:.2f} s | "
        f"{cold / reference:.2f}x | {peak / 2**20:.0f} MiB |"
    )
    print()
    print("| command (own process) | time | peak RSS |")
    print("|---|---|---|")
    print(f"| `newsletter lists` | {lists_seconds:.2f} s | {lists_peak / 2**20:.0f} MiB |")
    print(
        f"| `newsletter subscribers export` ({rows:,} rows) | {export_seconds:.2f} s | "
        f"{export_peak / 2**20:.0f} MiB |"
    )


if __name__ == "__main__":
    main()
