"""The web side beside a send, on one SQLite database: `newsletter serve` answering GET
/subscribe and RFC 8058 one-click unsubscribes at a fixed rate while `newsletter send` mails
N readers through Postfix's smtp-sink, each in its own process, as a publisher runs them.

    .venv/bin/python bench/serve_beside_send.py [--subscribers 20000] [--rate 200]
        [--theme-sets 20] [--alone 10]

The load generator (one asyncio loop in this process, hand-written HTTP/1.1 on kept-alive
connections to 127.0.0.1) sends requests on a fixed schedule, half of them page views and half
one-click POSTs for distinct readers: first for --alone seconds with no send (the reference),
then from the send's start until it ends, at most --rate x 120 requests. Each request's time
counts from its slot, so a server that falls behind shows it. Afterwards: latency
percentiles, errors, and for each unsubscribe whether the send honoured it (a reader
unsubscribed before the send claimed their delivery must not be mailed; one claimed before
may be: it was in flight). Needs Debian's postfix package (smtp-sink). Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import tomllib
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sqlmodel import col, select  # noqa: E402

from bench.send import choose_themes, free_port, start_sink  # noqa: E402
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
KEPT_ALIVE = 4.0  # seconds a connection is reused after its last answer (uvicorn keeps 5)


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


async def exchange(
    connection: tuple[asyncio.StreamReader, asyncio.StreamWriter], request: bytes
) -> tuple[int, bool]:
    """One request on a kept-alive connection: (status, whether the connection stays open)."""
    reader, writer = connection
    writer.write(request)
    head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").lower()
    status = int(head.split(" ", 2)[1])
    length = re.search(r"\r\ncontent-length: *(\d+)", head)
    if length is None:  # every answer of ours says its length; anything else ends the connection
        return status, False
    await reader.readexactly(int(length.group(1)))
    return status, "\r\nconnection: close" not in head


async def load(
    host: str,
    port: int,
    tokens: list[tuple[int, str]],
    rate: float,
    limit: int,
    running: threading.Event,
) -> list[Answer]:
    """Requests at `rate` a second until the send ends or `limit` are made: half page views,
    half one-click POSTs for distinct readers. Open loop: each request is due at its slot and
    its time counts from that slot, so a server that falls behind shows it in the figures (a
    generator that waited for a free connection would hide the wait). One event loop in its own
    process, hand-written HTTP/1.1 on kept-alive connections: 0.44 ms of CPU a request against
    the server's 2.7 (measured), so it takes little of the cores it is meant to leave."""
    answers: list[Answer] = []
    # Kept-alive connections with when each was last used: uvicorn closes one idle for 5 s, so
    # an older one is closed here rather than found dead by the next request.
    idle: list[tuple[float, tuple[asyncio.StreamReader, asyncio.StreamWriter]]] = []
    readers = iter(tokens)
    page = f"GET /subscribe HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n".encode()
    body = b"List-Unsubscribe=One-Click"

    def one_click(token: str) -> bytes:
        return (
            f"POST /unsubscribe/{token} HTTP/1.1\r\nHost: {host}:{port}\r\n"
            "Content-Type: application/x-www-form-urlencoded\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        ).encode() + body

    async def ask(due: float, kind: str, subscriber_id: int, request: bytes) -> None:
        status, keep = 0, False
        connection = None
        while idle and connection is None:
            last_used, connection = idle.pop()
            if time.monotonic() - last_used > KEPT_ALIVE:
                connection[1].close()
                connection = None
        try:
            if connection is None:
                connection = await asyncio.open_connection(host, port)
            status, keep = await asyncio.wait_for(exchange(connection, request), 10.0)
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError):
            pass
        seconds = time.monotonic() - due
        answers.append(Answer(kind, status, seconds, subscriber_id, datetime.now(UTC)))
        if connection is not None:
            if keep:
                idle.append((time.monotonic(), connection))
            else:
                connection[1].close()

    tasks: list[asyncio.Task[None]] = []
    start = time.monotonic()
    for number in range(limit):
        due = start + number / rate
        await asyncio.sleep(max(0.0, due - time.monotonic()))
        if not running.is_set():
            break
        reader = next(readers, None) if number % 2 else None
        if reader is None:
            tasks.append(asyncio.create_task(ask(due, "page", 0, page)))
        else:
            tasks.append(
                asyncio.create_task(ask(due, "unsubscribe", reader[0], one_click(reader[1])))
            )
    await asyncio.gather(*tasks)
    for _, (_, writer) in idle:
        writer.close()
    return answers


def percentile(ordered: list[float], share: float) -> float:
    return ordered[max(0, int(len(ordered) * share) - 1)] if ordered else 0.0


def honoured(config: Path, answers: list[Answer]) -> tuple[int, int, int, int]:
    """(recorded, mailed before, skipped, mailed after): of the unsubscribes answered 200, how
    many the database holds, how many readers' mail was claimed before (in flight, allowed),
    how many the send skipped, and how many it mailed though claimed after (never allowed)."""
    done = {
        a.subscriber_id: a.answered_at
        for a in answers
        if a.kind == "unsubscribe" and a.status == 200
    }
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


def row(name: str, seconds: float, answers: list[Answer], locked: int, honour: str) -> str:
    latencies = sorted(answer.seconds for answer in answers)
    failed = Counter(answer.status for answer in answers if answer.status != 200)
    by_kind = {
        kind: percentile(sorted(a.seconds for a in answers if a.kind == kind), 0.99)
        for kind in ("page", "unsubscribe")
    }
    return (
        f"| {name} | {seconds:.1f} s | {len(answers):,} | {len(answers) / seconds:.0f}/s | "
        f"{statistics.median(latencies) * 1e3:.0f} ms | {percentile(latencies, 0.99) * 1e3:.0f} ms"
        f" | {by_kind['page'] * 1e3:.0f} / {by_kind['unsubscribe'] * 1e3:.0f} ms | "
        f"{sum(failed.values())}{' ' + str(dict(failed)) if failed else ''} | "
        f"{locked} | {honour} |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subscribers", type=int, default=20_000)
    parser.add_argument("--rate", type=float, default=200.0)
    parser.add_argument(
        "--theme-sets", type=int, default=0, help="readers' choices of themes (editions)"
    )
    parser.add_argument(
        "--alone", type=float, default=10.0, help="seconds of serve alone first, as the reference"
    )
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
            if options.theme_sets:
                choose_themes(app, options.theme_sets)
            list_id = session.exec(select(MailingList.id)).one()
            ids = list(session.exec(select(Subscriber.id).order_by(col(Subscriber.id))).all())
        # Readers spread over the list: early ones are mailed before they leave, late ones not.
        # The reference run before the send unsubscribes each one's neighbour.
        step = max(2, len(ids) // int(options.rate * 60))
        tokens = [(sid, key.sign("unsubscribe", list_id, sid)) for sid in ids[::step]]
        neighbours = [(sid, key.sign("unsubscribe", list_id, sid)) for sid in ids[1::step]]
        server = subprocess.Popen(
            [*run, "serve", "--host", "127.0.0.1", "--port", str(web_port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            env=env,
        )
        running = threading.Event()
        try:
            wait_for(f"http://127.0.0.1:{web_port}/healthz")
            requests = int(options.rate * options.alone)
            running.set()
            started = time.perf_counter()
            alone = asyncio.run(
                load("127.0.0.1", web_port, neighbours, options.rate, requests, running)
            )
            alone_seconds = time.perf_counter() - started
            started = time.perf_counter()
            sender = subprocess.Popen(
                [*run, "send", "--list", "weekly", "--yes"],
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                env=env,
            )
            watcher = threading.Thread(target=lambda: (sender.wait(), running.clear()))
            watcher.start()
            answers = asyncio.run(
                load("127.0.0.1", web_port, tokens, options.rate, int(options.rate * 120), running)
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
    unsubscribes = sum(1 for answer in answers if answer.kind == "unsubscribe")
    print(output.strip().splitlines()[-1] if output.strip() else "(the send printed nothing)")
    print()
    print(
        "| web side | time | requests | rate | p50 | p99 | p99 page / one-click | errors | "
        "'database is locked' | unsubscribes: recorded / mailed before / skipped / mailed after |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    if alone:
        print(row("alone", alone_seconds, alone, 0, ""))
    locked = errors.count("database is locked")
    honour = f"{unsubscribes:,}: {recorded:,} / {before:,} / {skipped:,} / {after:,}"
    print(row(f"beside a send to {options.subscribers:,}", send_seconds, answers, locked, honour))


if __name__ == "__main__":
    main()
