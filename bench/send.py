"""Send benchmark: a digest to N subscribers through Postfix's smtp-sink on 127.0.0.1, beside
Postfix's own C load generator smtp-source sending as many messages of the same size at the
same concurrency to the same sink, in the same run: just before the send and just after, the
ratio taken against the mean of the two.

    .venv/bin/python bench/send.py [--subscribers 20000] [--concurrency 10]
        [--postgres postgresql+psycopg://postgres@127.0.0.1:5432 [--workers 2]]

With `--theme-sets N`, the reference is a uniform send instead: in each of `--rounds` rounds,
the same list once with every reader on the full digest and once with the readers spread over
N different choices of themes (N editions, rendered when the digest leaves draft), to the same
sink, in alternating order.

    .venv/bin/python bench/send.py --theme-sets 20 [--rounds 4]

With `--dkim rsa` or `--dkim ed25519`, every message is DKIM-signed with a fresh key of that
kind (RSA 2048 bits), as `[dkim]` in config.toml makes `newsletter send` do.

Needs Debian's postfix package (smtp-sink, smtp-source). Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import random
import resource
import socket
import subprocess
import sys
import tempfile
import time
import tomllib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sqlmodel import col, func, select  # noqa: E402

from newsletter.app import Newsletter  # noqa: E402
from newsletter.config import Settings, load_settings  # noqa: E402
from newsletter.digest.editions import theme_names  # noqa: E402
from newsletter.models import Delivery, DeliveryStatus  # noqa: E402
from newsletter.services import sending  # noqa: E402
from newsletter.services.digests import DigestService  # noqa: E402
from tests.conftest import dump_toml, postgres_database  # noqa: E402

T = TypeVar("T")


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


def process_cpu(pid: int) -> float:
    """CPU seconds (user + system) a running process has used so far, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def postgres_cpu() -> float:
    """CPU seconds of this machine's PostgreSQL server processes so far (0 if none runs here)."""
    total = 0.0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            if stat.read_text().split(" ", 2)[1] == "(postgres)":
                total += process_cpu(int(stat.parent.name))
        except OSError:
            continue  # gone meanwhile
    return total


def own_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def children_cpu() -> float:
    """CPU seconds of the children waited for so far (smtp-source, sending workers)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def dkim_key(path: Path, kind: str) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

    key = (
        ed25519.Ed25519PrivateKey.generate()
        if kind == "ed25519"
        else rsa.generate_private_key(public_exponent=65537, key_size=2048)
    )
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )


@contextmanager
def database(server: str | None) -> Iterator[str | None]:
    """A fresh PostgreSQL database on `server` for one send, dropped after; None: SQLite."""
    if not server:
        yield None
        return
    with postgres_database(server, "nl_bench") as url:
        yield url


def publication(
    work: Path,
    port: int,
    count: int,
    concurrency: int,
    dkim: str | None = None,
    database_url: str | None = None,
) -> Settings:
    """A config sending to the sink, the sample feed and `count` readers in readers.csv."""
    data = tomllib.loads((ROOT / "config.toml").read_text())
    if database_url:
        data["database"] = {"url": database_url}
    if dkim:
        dkim_key(work / "dkim.pem", dkim)
        data["dkim"] = {"domain": "signaldesk.example", "selector": "bench", "key_file": "dkim.pem"}
    data["delivery"] = {"transport": "smtp"}
    data["smtp"] = {"host": "127.0.0.1", "port": port, "concurrency": concurrency}
    data["feeds"] = [{"name": "sample", "url": str(ROOT / "samples" / "briefings.xml")}]
    (work / "config.toml").write_text(dump_toml(data))
    rows = "\n".join(f"reader{n}@example.com,Reader {n}" for n in range(count))
    (work / "readers.csv").write_text(f"email,name\n{rows}\n")
    return load_settings(work / "config.toml")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subscribers", type=int, default=20_000)
    parser.add_argument("--concurrency", type=int, default=10)
    parser.add_argument("--theme-sets", type=int, default=0)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--dkim", choices=["rsa", "ed25519"], default=None)
    parser.add_argument(
        "--postgres",
        default=os.environ.get("NEWSLETTER_BENCH_POSTGRES"),
        help="a PostgreSQL server URL (postgresql+psycopg://user@host:port) to send from a "
        "fresh database there instead of SQLite",
    )
    parser.add_argument(
        "--workers", type=int, default=1, help="sending processes (PostgreSQL), as `send -w`"
    )
    parser.add_argument(
        "--memory-only",
        action="store_true",
        help="no smtp-source runs: the send's rate and memory alone (a million readers)",
    )
    options = parser.parse_args()
    count, concurrency = options.subscribers, options.concurrency
    if options.theme_sets:
        compare_editions(count, concurrency, options.theme_sets, options.rounds)
        return
    port = free_port()
    sink = start_sink(port)
    try:
        with tempfile.TemporaryDirectory() as folder, database(options.postgres) as url:
            work = Path(folder)
            settings = publication(work, port, count, concurrency, options.dkim, url)
            with Newsletter(settings) as app:
                app.subscribers.import_csv(work / "readers.csv", "weekly")
                app.feeds.fetch()
                draft = app.digests.draft("weekly")
                assert draft is not None
                size = len(draft.message.render(app.digests.sample_recipient()))
            before = reference_run(sink, port, concurrency, count, size, options.memory_only)
            rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
            cpu_before, sink_before = own_cpu(), process_cpu(sink.pid)
            server_before = postgres_cpu()
            workers_before = children_cpu()
            started = time.perf_counter()
            with Newsletter(settings) as app:  # as `newsletter send` runs: the database opens
                report = app.sending.send("weekly", workers=options.workers)
            ours = time.perf_counter() - started
            our_cpu = own_cpu() - cpu_before + children_cpu() - workers_before
            our_sink_cpu = process_cpu(sink.pid) - sink_before
            server_cpu = postgres_cpu() - server_before
            rss_after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
            assert report.summary.sent == count, report.summary
        after = reference_run(sink, port, concurrency, count, size, options.memory_only)
        # The reference is the mean of a run just before ours and one just after: a machine
        # whose speed drifts (shared hosts do) then favours neither side.
        reference, source_cpu, reference_sink_cpu = (
            (b + a) / 2 for b, a in zip(before, after, strict=True)
        )
    finally:
        sink.terminate()
        sink.wait()
    print(
        "| database | messages | size | concurrency | DKIM | newsletter send | smtp-source | "
        "ratio | peak RSS (growth during send) |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    where = "PostgreSQL" if options.postgres else "SQLite"
    if options.workers > 1:
        where += f", {options.workers} processes"
    print(
        f"| {where} | {count:,} | {size / 1024:.0f} KB | {concurrency} | {options.dkim or 'off'} | "
        f"{count / ours:,.0f} msg/s "
        f"({ours:.1f} s) | {count / reference:,.0f} msg/s ({reference:.1f} s) | "
        f"{reference / ours:.2f}x | {rss_after / 1024:.0f} MiB "
        f"(+{(rss_after - rss_before) / 1024:.0f}) |"
    )
    micro = 1e6 / count
    server = f" + PostgreSQL {server_cpu * micro:.0f} µs" if options.postgres else ""
    print(
        f"\nCPU a message: newsletter send {our_cpu * micro:.0f} µs{server} + its sink "
        f"{our_sink_cpu * micro:.0f} µs "
        f"({(our_cpu + server_cpu + our_sink_cpu) / ours:.0%} of one core); "
        f"smtp-source {source_cpu * micro:.0f} µs + its sink {reference_sink_cpu * micro:.0f} µs "
        f"({(source_cpu + reference_sink_cpu) / reference:.0%} of one core)"
    )


def reference_run(
    sink: subprocess.Popen[bytes],
    port: int,
    concurrency: int,
    count: int,
    size: int,
    skip: bool = False,
) -> tuple[float, float, float]:
    """smtp-source sending `count` messages of `size` bytes over `concurrency` connections to
    the sink: seconds, its CPU seconds and the sink's (NaN when skipped)."""
    if skip:
        return math.nan, math.nan, math.nan
    sink_before, source_before = process_cpu(sink.pid), children_cpu()
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
    seconds = time.perf_counter() - started
    return seconds, children_cpu() - source_before, process_cpu(sink.pid) - sink_before


def theme_sets(settings: Settings, wanted: int) -> list[list[str]]:
    """`wanted` different choices of themes, none of them every theme (that is the full
    digest), of one to all but one theme, drawn the same way every run."""
    names = theme_names(settings)
    choices = [
        list(chosen)
        for size in range(1, len(names))
        for chosen in itertools.combinations(names, size)
    ]
    if wanted > len(choices):
        raise SystemExit(f"{len(names)} themes make only {len(choices)} choices")
    return random.Random(0).sample(choices, wanted)


STEPS: dict[str, float] = {}  # seconds of the last send's steps that `timed` wraps


def timed(name: str, call: Callable[..., T]) -> Callable[..., T]:
    def timing(*args: Any, **kwargs: Any) -> T:
        started = time.perf_counter()
        try:
            return call(*args, **kwargs)
        finally:
            STEPS[name] = time.perf_counter() - started

    return timing


def choose_themes(app: Newsletter, sets: int) -> None:
    """Readers in turn take one of `sets` choices of themes: `sets` editions a send."""
    choices = [json.dumps(chosen) for chosen in theme_sets(app.settings, sets)]
    with app.session() as session:
        for n, chosen in enumerate(choices):
            session.connection().exec_driver_sql(
                "UPDATE subscriber SET themes = ? WHERE id % ? = ?", (chosen, sets, n)
            )
        session.commit()


def timed_send(port: int, count: int, concurrency: int, sets: int) -> tuple[float, int, int, float]:
    """One send to the sink from a fresh publication: seconds, sent, editions, mean size."""
    STEPS.clear()
    with tempfile.TemporaryDirectory() as folder:
        settings = publication(Path(folder), port, count, concurrency)
        with Newsletter(settings) as app:
            app.subscribers.import_csv(Path(folder) / "readers.csv", "weekly")
            app.feeds.fetch()
            if sets:
                choose_themes(app, sets)
        started = time.perf_counter()
        with Newsletter(settings) as app:  # as `newsletter send` runs: the database opens
            report = app.sending.send("weekly")
        seconds = time.perf_counter() - started
        with Newsletter(settings) as app, app.session() as session:
            assert report.summary.sent == count, report.summary
            sample = app.digests.sample_recipient()
            editions = session.exec(
                select(Delivery.edition_id, func.count())
                .where(Delivery.status == DeliveryStatus.SENT)
                .group_by(col(Delivery.edition_id))
            ).all()
            draft = app.digests.draft("weekly", or_last_sent=True)
            assert draft is not None
            full = len(draft.message.render(sample))
            size = sum(
                readers
                * (len(app.sending.edition_message(e).render(sample)) if e is not None else full)
                for e, readers in editions
            )
    return seconds, report.summary.sent, sum(e is not None for e, _ in editions), size / count


def compare_editions(count: int, concurrency: int, sets: int, rounds: int) -> None:
    # What leaving draft costs, inside the timed send: the editions, the ledger's snapshot.
    DigestService.store_editions = timed("editions", DigestService.store_editions)  # type: ignore[method-assign]
    names = vars(sending)  # the service calls the ledger's function by its imported name
    names["snapshot_audience"] = timed("snapshot", names["snapshot_audience"])
    port = free_port()
    sink = start_sink(port)
    results: list[tuple[int, str, float, int, int, float, dict[str, float]]] = []
    try:
        for round_ in range(1, rounds + 1):
            # Alternate which goes first, so a machine warming up or slowing favours neither.
            order = (0, sets) if round_ % 2 else (sets, 0)
            for choice in order:
                seconds, sent, editions, size = timed_send(port, count, concurrency, choice)
                kind = f"{sets} theme sets" if choice else "uniform"
                results.append((round_, kind, seconds, sent, editions, size, dict(STEPS)))
                print(f"round {round_}: {kind}: {sent / seconds:,.0f} msg/s", file=sys.stderr)
    finally:
        sink.terminate()
        sink.wait()
    print(
        "| round | send | messages | editions | mean size | rendering editions | snapshot | "
        "time | rate | ratio |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    uniform_rate = {r[0]: r[3] / r[2] for r in results if r[1] == "uniform"}
    for round_, kind, seconds, sent, editions, size, steps in results:
        rate = sent / seconds
        ratio = "" if kind == "uniform" else f"{rate / uniform_rate[round_]:.2f}x"
        print(
            f"| {round_} | {kind} | {sent:,} | {editions} | {size / 1024:.0f} KB | "
            f"{steps.get('editions', 0):.2f} s | {steps.get('snapshot', 0):.2f} s | "
            f"{seconds:.1f} s | {rate:,.0f} msg/s | {ratio} |"
        )
    total = {
        kind: (
            sum(r[3] for r in results if r[1] == kind),
            sum(r[2] for r in results if r[1] == kind),
        )
        for kind in ("uniform", f"{sets} theme sets")
    }
    uniform, themed = (sent / secs for sent, secs in total.values())
    print(
        f"\nAll rounds: uniform {uniform:,.0f} msg/s, {sets} theme sets {themed:,.0f} msg/s, "
        f"ratio {themed / uniform:.2f}x"
    )


if __name__ == "__main__":
    main()
