"""The emulator's request budget: per tenant (or per token), as a token bucket or fixed one-second windows."""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass


@dataclass(frozen=True)
class Throttled:
    """A refused request; ``retry_after`` is the ``Retry-After`` to send (whole seconds), or ``None``."""

    retry_after: int | None


class TenantRateLimit:
    """``rate`` requests per second for one budget key (the tenant, or each token).

    ``token-bucket``: capacity ``rate`` (at least 1), refilled at ``rate`` per second; a refusal
    carries the whole seconds (>= 1) until a token is back. ``fixed-window``: at most ``rate`` (at
    least 1) requests per wall-clock second (``int(time.time())``); a refusal carries no
    ``Retry-After``. ``rate`` of ``0``/``None`` disables limiting.
    """

    def __init__(self, rate: float | None, mode: str = "token-bucket", scope: str = "tenant"):
        self.rate = float(rate or 0)
        self.mode = mode
        self.scope = scope
        self._lock = threading.Lock()
        self._buckets: dict[str, tuple[float, float]] = {}  # key -> (tokens, monotonic time)
        self._windows: dict[str, tuple[int, int]] = {}  # key -> (wall-clock second, requests in it)

    def acquire(self, token: str) -> Throttled | None:
        """Count one request of ``token``: ``None`` when admitted, else how to refuse it."""
        if self.rate <= 0:
            return None
        key = token if self.scope == "token" else ""
        if self.mode == "fixed-window":
            return self._fixed_window(key)
        return self._token_bucket(key)

    def _token_bucket(self, key: str) -> Throttled | None:
        now = time.monotonic()
        capacity = max(self.rate, 1.0)
        with self._lock:
            tokens, last = self._buckets.get(key, (capacity, now))
            tokens = min(capacity, tokens + (now - last) * self.rate)
            if tokens >= 1.0:
                self._buckets[key] = (tokens - 1.0, now)
                return None
            self._buckets[key] = (tokens, now)
        return Throttled(max(1, math.ceil((1.0 - tokens) / self.rate)))

    def _fixed_window(self, key: str) -> Throttled | None:
        second = int(time.time())
        allowed = max(1, math.floor(self.rate))
        with self._lock:
            window, count = self._windows.get(key, (second, 0))
            if window != second:
                count = 0
            if count >= allowed:
                self._windows[key] = (second, count)
                return Throttled(None)
            self._windows[key] = (second, count + 1)
        return None

    def reset(self) -> None:
        with self._lock:
            self._buckets.clear()
            self._windows.clear()
