"""Deterministic fault injection: one seeded RNG, decisions drawn per request in arrival order."""

from __future__ import annotations

import dataclasses
import random
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

#: Outcome kinds, in the order their rates partition one uniform draw.
KINDS = ("drop", "error", "throttle", "slow", "lost_response")


@dataclass(frozen=True)
class Faults:
    """Fault configuration. Rates are fractions of requests; together they may not exceed 1.

    :param latency_ms: fixed latency added to every API request.
    :param jitter_ms: uniform extra latency, 0..jitter_ms.
    :param error_rate: answer with a status drawn from ``error_statuses`` before processing.
    :param throttle_rate: start a burst of ``throttle_burst`` consecutive 429s
        (``Retry-After: retry_after_seconds``).
    :param drop_rate: close the connection without a response, before processing.
    :param slow_rate: sleep ``slow_seconds`` before processing, then answer normally.
    :param lost_response_rate: process (store the rows), then close without a response.
    :param seed: seed of the RNG; the same seed and request order give the same faults.
    """

    latency_ms: float = 0.0
    jitter_ms: float = 0.0
    error_rate: float = 0.0
    error_statuses: tuple[int, ...] = (500, 503)
    throttle_rate: float = 0.0
    throttle_burst: int = 1
    retry_after_seconds: int = 1
    drop_rate: float = 0.0
    slow_rate: float = 0.0
    slow_seconds: float = 5.0
    lost_response_rate: float = 0.0
    seed: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "error_statuses", tuple(int(s) for s in self.error_statuses))
        for name in ("error_rate", "throttle_rate", "drop_rate", "slow_rate", "lost_response_rate"):
            rate = getattr(self, name)
            if not 0.0 <= rate <= 1.0:
                raise ValueError(f"{name} must be between 0 and 1, got {rate}")
        if sum(self.rates) > 1.0 + 1e-9:
            raise ValueError("error_rate + throttle_rate + drop_rate + slow_rate + lost_response_rate exceeds 1")
        if not self.error_statuses or not all(400 <= s <= 599 for s in self.error_statuses):
            raise ValueError("error_statuses must be a non-empty list of 4xx/5xx statuses")
        if self.throttle_burst < 1:
            raise ValueError("throttle_burst must be at least 1")
        if self.retry_after_seconds < 0:
            raise ValueError("retry_after_seconds must be >= 0")
        if min(self.latency_ms, self.jitter_ms, self.slow_seconds) < 0:
            raise ValueError("latency_ms, jitter_ms and slow_seconds must be >= 0")

    @property
    def rates(self) -> tuple[float, ...]:
        """Rates in :data:`KINDS` order."""
        return (self.drop_rate, self.error_rate, self.throttle_rate, self.slow_rate, self.lost_response_rate)

    @property
    def active(self) -> bool:
        return bool(self.jitter_ms or any(self.rates))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Faults:
        """Build from a JSON-like mapping; unknown keys raise ``ValueError``."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"Unknown fault settings: {', '.join(sorted(unknown))}; known: {', '.join(sorted(known))}")
        try:
            return cls(**data)
        except TypeError as exc:
            raise ValueError(str(exc)) from None

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["error_statuses"] = list(self.error_statuses)
        return out


class Decision(NamedTuple):
    """What to do with one request: ``kind`` is ``None`` or one of :data:`KINDS`."""

    kind: str | None
    delay: float
    status: int = 0
    retry_after: int = 0


class FaultInjector:
    """Draws one :class:`Decision` per request under a lock, so a seed replays the same sequence."""

    def __init__(self, faults: Faults | None = None):
        self._lock = threading.Lock()
        self.configure(faults or Faults())

    @property
    def faults(self) -> Faults:
        return self._faults

    def configure(self, faults: Faults) -> None:
        """Replace the configuration, re-seed the RNG and end any throttle burst."""
        with self._lock:
            self._faults = faults
            self._rng = random.Random(faults.seed)
            self._burst_left = 0

    def decide(self) -> Decision:
        with self._lock:
            f = self._faults
            if not f.active:
                return Decision(None, f.latency_ms / 1000.0)
            draw, jitter, pick = self._rng.random(), self._rng.random(), self._rng.random()
            delay = (f.latency_ms + jitter * f.jitter_ms) / 1000.0
            if self._burst_left > 0:
                self._burst_left -= 1
                return Decision("throttle", delay, 429, f.retry_after_seconds)
            kind = _pick(draw, f.rates)
            if kind is None:
                return Decision(None, delay)
            if kind == "error":
                statuses = f.error_statuses
                return Decision(kind, delay, statuses[min(int(pick * len(statuses)), len(statuses) - 1)])
            if kind == "throttle":
                self._burst_left = f.throttle_burst - 1
                return Decision(kind, delay, 429, f.retry_after_seconds)
            return Decision(kind, delay)


def _pick(draw: float, rates: tuple[float, ...]) -> str | None:
    """The kind whose slice of [0, 1) holds ``draw``, or ``None`` past the last slice."""
    edge = 0.0
    for kind, rate in zip(KINDS, rates, strict=True):
        edge += rate
        if draw < edge:
            return kind
    return None
