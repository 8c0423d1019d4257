"""The web side beside a send, on one SQLite database: `newsletter serve` answering GET
/subscribe and RFC 8058 one-click unsubscribes at a fixed rate while `newsletter send` mails
N readers through Postfix's smtp-sink, each in its own process, as a publisher runs them.

    .venv/bin/python bench/serve_beside_send.py [--subscribers 20000] [--rate 200]

The load generator (httpx, 16 threads with a kept-alive connection each, on 127.0.0.1)
sends requests on a fixed schedule, half of
them page views and half one-click POSTs for distinct readers, from the send's start until it
ends, and at most --rate x 120 requests. Afterwards: latency percentiles, errors, and for each
unsubscribe whether the send honoured it (a reader unsubscribed before the send claimed their
delivery must not be mailed; one claimed before may be: it was in flight). Needs Debian's
postfix package (smtp-sink). Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import tomllib
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sqlmodel import col, select  # noqa: E402

from bench.send import free_port, start_sink  # noqa: E402
from newsletter.app import Newsletter  # noqa: E402
from newsletter.audience.tokens import signing_key  # noqa: E402
from newsletter.config import load_settings  # noqa: E402
from newsletter.models import (  # noqa: E402
    Delivery,
    DeliveryStatus,
    MailingList,
    Subscriber,
    Subscription,
    SubscriptionStatus,
)
from tests.conftest import dump_toml  # noqa: E402

CLI = [sys.executable, "-m", "newsletter"]
WORKERS = 16  # threads of the load generator, each with its own kept-alive connection


@dataclass
class Answer:
    kind: str  # "page" or "unsubscribe"
    status: int  # 0: no answer
    seconds: float
    subscriber_id: int = 0
    answered_at: datetime | None = None


def publication(work: Path, sink: int, web: int, count: int) -> Path:
    data = tomllib.loads((ROOT / "config.toml").read_text())
    data["publication"]["base_url"] = f"http://127.0.0.1:{web}"
    data["publication"]["standards_url"] = f"http://127.0.0.1:{web}/standards"
    data["delivery"] = {"transport": "smtp"}
    data["smtp"] = {"host": "127.0.0.1", "port": sink, "concurrency": 10}
    data["feeds"] = [{"name": "sample", "url": str(ROOT / "samples" / "briefings.xml")}]
    (work / "config.toml").write_text(dump_toml(data))
    rows = "\n".join(f"reader{n}@example.com,Reader {n}" for n in range(count))
    (work / "readers.csv").write_text(f"email,name\n{rows}\n")
    return work / "config.toml"


def wait_for(url: str, deadline: float = 30.0) -> None:
    stop = time.monotonic() + deadline
    while time.monotonic() < stop:
        try:
            if httpx.get(url, timeout=1.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise SystemExit(f"{url} did not answer within {deadline:.0f} s")


def load(
    base: str, tokens: list[tuple[int, str]], rate: float, limit: int, running: threading.Event
) -> list[Answer]:
    """Requests at `rate` a second until the send ends or `limit` are made, each sent at its
    slot by one of a fixed pool of threads with a kept-alive connection each (a thread and a
    connection a request made the generator, not the server, the bottleneck)."""
    answers: list[Answer] = []
    lock = threading.Lock()
    slots = iter(range(limit))
    readers = iter(tokens)
    start = time.monotonic()

    def worker() -> None:
        with httpx.Client(timeout=10.0) as client:
            while running.is_set():
                with lock:
                    number = next(slots, None)
                    reader = next(readers, None) if number is not None and number % 2 else None
                if number is None:
                    return
                time.sleep(max(0.0, start + number / rate - time.monotonic()))
                if not running.is_set():
                    return
                began = time.perf_counter()
                try:
                    if reader is None:
                        status = client.get(base + "/subscribe").status_code
                    else:
                        status = client.post(
                            f"{base}/unsubscribe/{reader[1]}",
                            content="List-Unsubscribe=One-Click",
                            headers={"Content-Type": "application/x-www-form-urlencoded"},
                        ).status_code
                except httpx.HTTPError:
                    status = 0
                answer = Answer(
                    "unsubscribe" if reader else "page",
                    status,
                    time.perf_counter() - began,
                    reader[0] if reader else 0,
                    datetime.now(UTC),
                )
                with lock:
                    answers.append(answer)

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(WORKERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return answers


def percentile(ordered: list[float], share: float) -> float:
    return ordered[max(0, int(len(ordered) * share) - 1)] if ordered else 0.0


def honoured(config: Path, answers: list[Answer]) -> tuple[int, int, int, int]:
    """(recorded, mailed before, skipped, mailed after): of the unsubscribes answered 200, how
    many the database holds, how many readers' mail was claimed before (in flight, allowed),
    how many the send skipped, and how many it mailed though claimed after (never allowed)."""
    done = {a.subscriber_id: a.answered_at for a in answers if a.kind == "unsubscribe"}
    with Newsletter(load_settings(config)) as app, app.session() as session:
        left = set(
            session.exec(select(Subscriber.id).where(col(Subscriber.id).in_(list(done)))).all()
        )
        rows = session.exec(
            select(Delivery).where(col(Delivery.subscriber_id).in_(list(done)))
        ).all()
        recorded = len(
            session.exec(
                select(Subscription.subscriber_id).where(
                    col(Subscription.subscriber_id).in_(list(left)),
                    Subscription.status == SubscriptionStatus.UNSUBSCRIBED,
                )
            ).all()
        )
    before = skipped = after = 0
    for delivery in rows:
        answered = done[delivery.subscriber_id]
        if delivery.status != DeliveryStatus.SENT:
            skipped += 1
        elif delivery.claimed_at is not None and answered and delivery.claimed_at > answered:
            after += 1
        else:
            before += 1
    return recorded, before, skipped, after


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subscribers", type=int, default=20_000)
    parser.add_argument("--rate", type=float, default=200.0)
    options = parser.parse_args()
    sink_port, web_port = free_port(), free_port()
    sink = start_sink(sink_port)
    with tempfile.TemporaryDirectory() as folder:
        work = Path(folder)
        config = publication(work, sink_port, web_port, options.subscribers)
        env = {**os.environ, "NEWSLETTER_SECRET_KEY": "bench-key-0123456789abcdef01234567"}
        os.environ.update(env)
        run = [*CLI, "--config", str(config)]
        subprocess.run([*run, "fetch"], check=True, capture_output=True, env=env)
        subprocess.run(
            [*run, "subscribers", "import", str(work / "readers.csv"), "--list", "weekly"],
            check=True,
            capture_output=True,
            env=env,
        )
        settings = load_settings(config)
        key = signing_key(settings)
        with Newsletter(settings) as app, app.session() as session:
            list_id = session.exec(select(MailingList.id)).one()
            ids = list(session.exec(select(Subscriber.id).order_by(col(Subscriber.id))).all())
        # Readers spread over the list: early ones are mailed before they leave, late ones not.
        chosen = ids[:: max(1, len(ids) // int(options.rate * 60))]
        tokens = [(sid, key.sign("unsubscribe", list_id, sid)) for sid in chosen]
        server = subprocess.Popen(
            [*run, "serve", "--host", "127.0.0.1", "--port", str(web_port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            env=env,
        )
        try:
            wait_for(f"http://127.0.0.1:{web_port}/healthz")
            running = threading.Event()
            running.set()
            started = time.perf_counter()
            sender = subprocess.Popen(
                [*run, "send", "--list", "weekly", "--yes"],
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                env=env,
            )
            watcher = threading.Thread(target=lambda: (sender.wait(), running.clear()))
            watcher.start()
            answers = load(
                f"http://127.0.0.1:{web_port}",
                tokens,
                options.rate,
                int(options.rate * 120),
                running,
            )
            watcher.join()
            send_seconds = time.perf_counter() - started
            output = sender.stdout.read().decode() if sender.stdout else ""
        finally:
            server.terminate()
            errors = server.communicate(timeout=10)[1].decode()
            sink.terminate()
            sink.wait()
        recorded, before, skipped, after = honoured(config, answers)
    latencies = sorted(answer.seconds for answer in answers)
    failed = [answer for answer in answers if answer.status != 200]
    locked = errors.count("database is locked")
    p50, p99 = statistics.median(latencies), percentile(latencies, 0.99)
    by_kind = {
        kind: percentile(sorted(a.seconds for a in answers if a.kind == kind), 0.99)
        for kind in ("page", "unsubscribe")
    }
    unsubscribes = sum(1 for answer in answers if answer.kind == "unsubscribe")
    print(output.strip().splitlines()[-1] if output.strip() else "(the send printed nothing)")
    print()
    print(
        "| readers | send | requests | rate | p50 | p99 | p99 page / one-click | errors | "
        "'database is locked' | unsubscribes: recorded / mailed before / skipped / mailed after |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    print(
        f"| {options.subscribers:,} | {send_seconds:.1f} s | {len(answers):,} | "
        f"{len(answers) / send_seconds:.0f}/s | {p50 * 1e3:.0f} ms | {p99 * 1e3:.0f} ms | "
        f"{by_kind['page'] * 1e3:.0f} / {by_kind['unsubscribe'] * 1e3:.0f} ms | {len(failed)} | "
        f"{locked} | {unsubscribes}: {recorded} / {before} / {skipped} / {after} |"
    )


if __name__ == "__main__":
    main()
