"""Merging the same story: the digest's grouping of near-identical titles, beside the
quadratic comparison of every title with every story that it replaced (the reference, run in
the same process on the same titles), at 1,000, 4,000 and 20,000 titles. Four in five titles are
distinct headlines made of the corpus feeds' words, one in five is another outlet's spelling of
one of them (tests/test_hostile_input.py makes both); the two groupings are compared too.
The reference at 20,000 titles takes the best part of an hour, so by default it stops at 4,000
and the larger sizes show its time extrapolated from there (it grows with the square).

    .venv/bin/python bench/merge.py [--sizes 1000 4000 20000] [--reference-up-to 20000]
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from newsletter.digest.plan import merge_same_stories  # noqa: E402
from tests.test_hostile_input import (  # noqa: E402
    EDITS,
    candidates_of,
    distinct_titles,
    every_pair,
    grouping,
)


def titles(count: int) -> list[str]:
    rng = random.Random(count)
    distinct = distinct_titles(count - count // 5)
    return distinct + [rng.choice(EDITS)(rng.choice(distinct), rng) for _ in range(count // 5)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1_000, 4_000, 20_000])
    parser.add_argument(
        "--reference-up-to", type=int, default=4_000, help="extrapolate the reference above this"
    )
    options = parser.parse_args()
    print("| titles | stories | every pair (reference) | blocked (new) | speed-up | same groups |")
    print("|---|---|---|---|---|---|")
    measured: tuple[int, float] | None = None  # the largest size the reference ran at
    for size in options.sizes:
        candidates = candidates_of(titles(size), random.Random(size))
        started = time.perf_counter()
        new = merge_same_stories(candidates, 0.85)
        new_seconds = time.perf_counter() - started
        if size <= options.reference_up_to:
            started = time.perf_counter()
            old = every_pair(candidates, 0.85)
            old_seconds = time.perf_counter() - started
            measured = (size, old_seconds)
            cells = [
                f"{old_seconds:.2f} s",
                f"{new_seconds:.3f} s",
                f"{old_seconds / new_seconds:.0f}x",
                "yes" if grouping(old) == grouping(new) else "**no**",
            ]
        elif measured:
            at, seconds = measured
            estimate = seconds * (size / at) ** 2
            cells = [
                f"~{estimate:.0f} s (from {at:,}, x{(size / at) ** 2:.0f})",
                f"{new_seconds:.3f} s",
                f"~{estimate / new_seconds:.0f}x",
                "(not run)",
            ]
        else:
            cells = ["(not run)", f"{new_seconds:.3f} s", "", ""]
        print(f"| {size:,} | {len(new):,} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
