"""A shared cap on messages per second, across every sending thread."""

from __future__ import annotations

import threading
import time


class RateLimiter:
    """Spaces calls to `wait` at least 1/rate seconds apart; rate 0 means no cap."""

    def __init__(self, rate_per_second: float) -> None:
        self._interval = 1.0 / rate_per_second if rate_per_second > 0 else 0.0
        self._next = time.monotonic()
        self._lock = threading.Lock()

    def wait(self) -> None:
        if not self._interval:
            return
        with self._lock:
            now = time.monotonic()
            slot = max(self._next, now)
            self._next = slot + self._interval
        delay = slot - now
        if delay > 0:
            time.sleep(delay)
