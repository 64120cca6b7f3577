"""A discrete-event simulation of K worker processes sharing one tenant's limit, each paced by the real
:class:`~peak_provider.ratecontrol.AdaptivePacer` on a simulated clock.

It answers in a second what scenario 5 answers in minutes: how many 429s and how much of the tenant's rate
a rate-control design earns for K uncoordinated workers, against both limit modes of the emulator (a token
bucket with ``Retry-After``; fixed one-second windows without). It models what the pacer cannot see: each
worker's ``max_in_flight`` threads, the latency, and a small random delay between a slot and its arrival.
It is a design tool, not the proof: scenario 5 and ``test_many_workers`` run real processes against the
real emulator. It is pessimistic: every worker starts in the same millisecond, and the pacer of commit
7fe6f20 had 13-15% 429s here with 8 workers and 50 ms latency where the real test measured 5-9%.

    python -m benchmarks.pacing_sim --workers 1 4 8 16 --latency 0.1
"""

from __future__ import annotations

import argparse
import heapq
import math
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from peak_provider.api import REQUESTS_PER_SECOND
from peak_provider.ratecontrol import AdaptivePacer

RATE = float(REQUESTS_PER_SECOND)


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class TokenBucket:
    """The emulator's token bucket: capacity ``rate``, refilled at ``rate``/s, ``Retry-After`` in whole seconds."""

    def __init__(self, rate: float):
        self.rate = rate
        self.tokens = rate
        self.last = 0.0

    def admit(self, t: float) -> tuple[bool, float | None]:
        self.tokens = min(self.rate, self.tokens + (t - self.last) * self.rate)
        self.last = t
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True, None
        return False, float(max(1, math.ceil((1.0 - self.tokens) / self.rate)))


class FixedWindow:
    """At most ``rate`` requests per wall-clock second (the windows' phase is random); no ``Retry-After``."""

    def __init__(self, rate: float, phase: float):
        self.allowed = int(rate)
        self.phase = phase
        self.window = -1
        self.count = 0

    def admit(self, t: float) -> tuple[bool, float | None]:
        window = math.floor(t + self.phase)
        if window != self.window:
            self.window, self.count = window, 0
        if self.count >= self.allowed:
            return False, None
        self.count += 1
        return True, None


@dataclass
class Result:
    workers: int
    mode: str
    requests: int = 0
    throttled: int = 0
    accepted: int = 0
    first: float = math.inf
    last: float = 0.0
    finish: list[float] = field(default_factory=list)
    #: arrival times of the throttled requests (for the start-up vs steady-state split)
    throttle_times: list[float] = field(default_factory=list)
    #: answer times of the accepted requests (for the rate before the first worker is done)
    accept_times: list[float] = field(default_factory=list)

    @property
    def share_until_first_done(self) -> float:
        """The share of the tenant's rate while all workers were still sending (no tail)."""
        end = min(self.finish)
        return sum(1 for t in self.accept_times if t <= end) / ((end - self.first) * RATE)

    def throttled_within(self, seconds: float) -> int:
        """429s among the requests that arrived in the first ``seconds`` of the load."""
        return sum(1 for t in self.throttle_times if t < self.first + seconds)

    @property
    def share(self) -> float:
        """Accepted requests per second over the tenant's rate, first arrival to last answer."""
        return self.accepted / ((self.last - self.first) * RATE)

    @property
    def share_429(self) -> float:
        return self.throttled / max(1, self.requests)


def simulate(
    workers: int,
    mode: str,
    *,
    total_requests: int = 1500,
    in_flight: int = 16,
    latency: float = 0.1,
    jitter: float = 0.003,
    seed: int = 0,
    pacer: Callable[..., AdaptivePacer] = AdaptivePacer,
) -> Result:
    """Run K workers, each with ``total_requests / K`` requests, to the end; return what the server saw."""
    rng = random.Random(seed)
    clock = Clock()
    server = TokenBucket(RATE) if mode == "token-bucket" else FixedWindow(RATE, rng.random())
    result = Result(workers, mode)
    events: list[tuple[float, int, Callable[[], None]]] = []
    order = 0

    def at(t: float, action: Callable[[], None]) -> None:
        nonlocal order
        order += 1
        heapq.heappush(events, (t, order, action))

    def worker() -> None:
        p = pacer(RATE, clock=clock, sleep=lambda _s: None, rand=rng.random)
        share = total_requests // workers
        left, done = share, 0  # requests no thread has taken yet; requests accepted

        def thread() -> None:
            nonlocal left
            if left > 0:
                left -= 1
                send()

        def send() -> None:
            granted, value = p.try_acquire()
            if not granted:
                at(clock.now + value, send)  # the thread sleeps and asks again
                return
            start = value
            arrival = start + latency / 2 + rng.expovariate(1 / jitter)
            at(arrival, lambda: arrive(arrival))

            def arrive(arrival: float) -> None:
                ok, retry_after = server.admit(arrival)
                result.requests += 1
                result.first = min(result.first, arrival)
                if not ok:
                    result.throttle_times.append(arrival)
                answer = arrival + latency / 2
                at(answer, lambda: answered(ok, retry_after, answer))

            def answered(ok: bool, retry_after: float | None, t: float) -> None:
                nonlocal done
                result.last = max(result.last, t)
                if ok:
                    result.accepted += 1
                    result.accept_times.append(t)
                    p.on_success(start)
                    done += 1
                    if done == share:
                        result.finish.append(t)
                    thread()
                else:
                    result.throttled += 1
                    p.on_throttle(retry_after, sent_at=start)
                    send()

        for _ in range(in_flight):
            at(rng.random() * 0.01, thread)

    for _ in range(workers):
        worker()

    while events:
        t, _, action = heapq.heappop(events)
        clock.now = t
        action()
    return result


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 4, 8, 16])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--latency", type=float, default=0.1)
    parser.add_argument("--requests", type=int, default=1500)
    parser.add_argument("--startup", type=float, default=3.0, help="seconds counted as start-up in the 429 split")
    args = parser.parse_args(argv)
    for mode in ("token-bucket", "fixed-window"):
        for k in args.workers:
            runs = [
                simulate(k, mode, seed=s, latency=args.latency, total_requests=args.requests) for s in range(args.seeds)
            ]
            shares = sorted(r.share for r in runs)
            sharing = sorted(r.share_until_first_done for r in runs)  # without the tail of the last workers
            s429 = sorted(r.share_429 for r in runs)
            early = sorted(r.throttled_within(args.startup) / max(1, r.requests) for r in runs)
            late = sorted((r.throttled - r.throttled_within(args.startup)) / max(1, r.requests) for r in runs)
            print(
                f"{mode:13} K={k:2}: rate {shares[0]:.1%}..{shares[-1]:.1%} (all sending {sharing[0]:.1%}..{sharing[-1]:.1%})"
                f"  429s {s429[0]:.1%}..{s429[-1]:.1%}"
                f"  (first {args.startup:g}s {early[0]:.1%}..{early[-1]:.1%}, after {late[0]:.1%}..{late[-1]:.1%})"
            )


if __name__ == "__main__":
    main()
