"""Per-token token-bucket rate limiting."""

from __future__ import annotations

import math
import threading
import time


class RateLimiter:
    """Capacity ``rate`` requests, refilled at ``rate`` per second, one bucket per key.

    ``rate`` of ``0``/``None`` disables limiting.
    """

    def __init__(self, rate: float | None):
        self.rate = float(rate or 0)
        self._lock = threading.Lock()
        self._buckets: dict[str, tuple[float, float]] = {}

    def acquire(self, key: str) -> int:
        """Take one token: ``0`` when allowed, else the whole seconds (>= 1) to wait."""
        if self.rate <= 0:
            return 0
        now = time.monotonic()
        capacity = max(self.rate, 1.0)
        with self._lock:
            tokens, last = self._buckets.get(key, (capacity, now))
            tokens = min(capacity, tokens + (now - last) * self.rate)
            if tokens >= 1.0:
                self._buckets[key] = (tokens - 1.0, now)
                return 0
            self._buckets[key] = (tokens, now)
        return max(1, math.ceil((1.0 - tokens) / self.rate))

    def reset(self) -> None:
        with self._lock:
            self._buckets.clear()
