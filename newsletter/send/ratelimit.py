"""A cap on messages per second, asked by the dispatcher before each message."""

from __future__ import annotations

import time


class RateLimiter:
    """Lets messages go at least 1/rate seconds apart; rate 0 means no cap."""

    def __init__(self, rate_per_second: float) -> None:
        self._interval = 1.0 / rate_per_second if rate_per_second > 0 else 0.0
        self._next = time.monotonic()

    def delay(self) -> float:
        """0.0, taking the next slot, when a message may go now; else how long until one may
        (the slot is not taken)."""
        if not self._interval:
            return 0.0
        now = time.monotonic()
        if self._next > now:
            return self._next - now
        self._next = max(self._next, now) + self._interval
        return 0.0
