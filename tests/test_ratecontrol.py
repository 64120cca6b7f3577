"""Retry-After parsing and the adaptive pacer on a fake clock (no real sleeping); the host budget in a real
file; Redis client settings."""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import json
import logging
import math
import os
import queue
import random
import threading
import time
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from peak_provider.ratecontrol import (
    HEADROOM,
    AdaptivePacer,
    HostSlots,
    SharedBudget,
    Slot,
    Slots,
    budget_key,
    parse_retry_after,
    redis_client,
)


class FakeClock:
    """A monotonic clock that only moves when a test sleeps on it or sets it."""

    def __init__(self, t: float = 1000.0):
        self.t = t
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.t

    def sleep(self, seconds: float) -> None:
        assert math.isfinite(seconds) and seconds >= 0, seconds
        self.sleeps.append(seconds)
        self.t += seconds


def pacer_on(clock: FakeClock, rate: float = 50, **kwargs: object) -> AdaptivePacer:
    return AdaptivePacer(rate, clock=clock, sleep=clock.sleep, **kwargs)  # type: ignore[arg-type]


def gaps(starts: Sequence[float]) -> list[float]:
    return [b - a for a, b in itertools.pairwise(starts)]


def draw_in_threads(holders: Sequence[Slots], *, threads: int, each: int) -> list[Slot]:
    """The slots that ``threads`` threads drew at once, ``each`` per thread, from ``holders`` in turn."""
    drawn: list[Slot] = []

    def draw(slots: Slots) -> None:
        drawn.extend(slots.next_slot() for _ in range(each))

    started = [threading.Thread(target=draw, args=(holders[i % len(holders)],)) for i in range(threads)]
    for thread in started:
        thread.start()
    for thread in started:
        thread.join(60)
    return drawn


# --- Retry-After ---------------------------------------------------------------------------------------------

NOW = datetime(2026, 11, 29, 12, 0, 0, tzinfo=UTC).timestamp()


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("5", 5.0),
        (" 7 ", 7.0),
        ("1.5", 1.5),
        ("0", 0.0),
        ("86400", 86400.0),
        ("-1", 0.0),
        ("-inf", 0.0),
        ("nan", None),
        ("NaN", None),
        ("inf", math.inf),
        ("Infinity", math.inf),
        ("1e300", math.inf),
        ("1e400", math.inf),
        ("", None),
        ("   ", None),
        (None, None),
        ("soon", None),
        ("1_0", None),
        ("0x10", None),
        ("Sun, 29 Nov 2026 12:00:30 GMT", 30.0),
        ("Sun, 29 Nov 2026 12:00:30 -0000", 30.0),
        ("Sun, 29 Nov 2026 14:00:30 +0200", 30.0),
        ("Sun, 29 Nov 2026 11:59:00 GMT", 0.0),
        ("Sun, 99 Nov 2026 12:00:30 GMT", None),
        ("Sun, 29 Foo 2026 12:00:30 GMT", None),
    ],
)
def test_parse_retry_after(header: str | None, expected: float | None) -> None:
    assert parse_retry_after(header, now=lambda: NOW) == expected


@given(st.text())
def test_parse_retry_after_never_raises(header: str) -> None:
    value = parse_retry_after(header, now=lambda: NOW)
    assert value is None or (value >= 0 and not math.isnan(value))


# --- AdaptivePacer -------------------------------------------------------------------------------------------


def test_without_throttles_the_spacing_is_the_plain_one() -> None:
    clock = FakeClock()
    pacer = pacer_on(clock, 50)
    starts = []
    for _ in range(200):
        starts.append(pacer.acquire())
        pacer.on_success()
    assert starts[0] == 1000.0
    assert gaps(starts) == pytest.approx([HEADROOM / 50] * 199, rel=1e-9)
    assert clock.sleeps == pytest.approx([HEADROOM / 50] * 199, rel=1e-9)
    assert (pacer.rate, pacer.throttled, pacer.throttle_wait_seconds) == (50, 0, 0.0)


def run_at_full_speed(pacer: AdaptivePacer, n: int = 150) -> float:
    start = 0.0
    for _ in range(n):
        start = pacer.acquire()
        pacer.on_success()
    return start


def test_a_throttle_cuts_the_measured_rate_and_pauses() -> None:
    clock = FakeClock()
    pacer = pacer_on(clock, 50, rand=lambda: 0.5)
    last = run_at_full_speed(pacer)  # about 3 s at 49.5 requests/s
    at = clock.t
    pause = pacer.on_throttle(1.0, sent_at=last)
    assert pause == pytest.approx(1.0 + 0.5 * max(0.1, 0.2 * 1.0))
    assert pacer.rate == pytest.approx(0.7 * 50 / HEADROOM, rel=0.05)
    after = [pacer.acquire() for _ in range(5)]
    assert after[0] == pytest.approx(at + pause)
    assert gaps(after) == pytest.approx([HEADROOM / pacer.rate] * 4)
    assert pacer.throttled == 1
    assert pacer.throttle_wait_seconds == pytest.approx(pause)


def test_the_rate_recovers_gradually_and_never_passes_the_configured_one() -> None:
    clock = FakeClock()
    pacer = pacer_on(clock, 50)
    pacer.on_throttle(0.0, sent_at=run_at_full_speed(pacer))
    cut = pacer.rate
    rates = []
    for _ in range(40):
        clock.t += 0.25
        pacer.on_success()
        rates.append(pacer.rate)
    assert rates == sorted(rates)  # climbs, never drops without a throttle
    assert cut < rates[0] < 50
    assert max(rates) == 50
    assert sum(r < 50 for r in rates) >= 8  # took more than 2 s: gradual, not a jump
    starts = [pacer.acquire() for _ in range(3)]
    assert gaps(starts) == pytest.approx([HEADROOM / 50] * 2, rel=1e-9)  # back to the plain spacing


def test_throttles_of_requests_sent_before_a_cut_cut_only_once() -> None:
    clock = FakeClock()
    pacer = pacer_on(clock, 50, rand=lambda: 0.0)
    run_at_full_speed(pacer)
    in_flight = [pacer.acquire() for _ in range(16)]
    for sent_at in in_flight:
        pacer.on_throttle(1.0, sent_at=sent_at)
    once = pacer.rate
    assert once == pytest.approx(0.7 * 50 / HEADROOM, rel=0.05)
    assert pacer.throttled == 16
    later = pacer.acquire()  # after the pause: a new event cuts again
    pacer.on_throttle(1.0, sent_at=later)
    assert pacer.rate == pytest.approx(0.7 * once)


def test_without_sent_at_throttles_during_a_pause_are_one_event() -> None:
    clock = FakeClock()
    pacer = pacer_on(clock, 50, rand=lambda: 0.0)
    run_at_full_speed(pacer)
    for _ in range(10):
        pacer.on_throttle(None)
    assert pacer.rate == pytest.approx(0.7 * 50 / HEADROOM, rel=0.05)
    assert pacer.throttled == 10


def test_without_retry_after_the_pause_is_an_exponential_backoff() -> None:
    clock = FakeClock()
    pacer = pacer_on(clock, 50, backoff=1.0, backoff_max=5.0, rand=lambda: 1.0)
    pauses = []
    for _ in range(5):
        pauses.append(pacer.on_throttle(None, sent_at=pacer.acquire()))
    assert pauses == [1.0, 2.0, 4.0, 5.0, 5.0]
    pacer.on_success()
    assert pacer.on_throttle(None, sent_at=pacer.acquire()) == 1.0
    low = pacer_on(FakeClock(), 50, backoff=1.0, rand=lambda: 0.0)
    assert low.on_throttle(None) == 0.5  # the jitter takes up to half of the backoff off


@pytest.mark.parametrize("retry_after", [0.0, 1.0, 30.0])
def test_retry_after_jitter_is_bounded(retry_after: float) -> None:
    bound = max(AdaptivePacer.MIN_JITTER, AdaptivePacer.JITTER * retry_after)
    assert pacer_on(FakeClock(), rand=lambda: 0.0).on_throttle(retry_after) == retry_after
    assert pacer_on(FakeClock(), rand=lambda: 0.999999).on_throttle(retry_after) <= retry_after + bound
    rng = random.Random(7)
    pauses = [pacer_on(FakeClock(), rand=rng.random).on_throttle(retry_after) for _ in range(200)]
    assert all(retry_after <= p <= retry_after + bound for p in pauses)
    assert max(pauses) - min(pauses) > bound / 2  # N processes do not come back in lock-step


@pytest.mark.parametrize("retry_after", [math.inf, 1e300, float("nan"), -5.0])
def test_unusable_waits_never_reach_sleep(retry_after: float) -> None:
    clock = FakeClock()
    pacer = pacer_on(clock, 50, max_pause=900.0)
    pause = pacer.on_throttle(retry_after)
    assert 0.0 <= pause <= 900.0
    pacer.acquire()  # FakeClock.sleep asserts a finite, non-negative wait
    assert clock.t == pytest.approx(1000.0 + pause)


class GatedSleep:
    """A sleep that blocks until the test releases it, moving the fake clock to the end of the sleep."""

    def __init__(self, clock: FakeClock):
        self.clock = clock
        self.calls: queue.Queue[tuple[str, float, threading.Event]] = queue.Queue()

    def __call__(self, seconds: float) -> None:
        assert math.isfinite(seconds) and seconds >= 0
        released = threading.Event()
        self.calls.put((threading.current_thread().name, self.clock.t + seconds, released))
        assert released.wait(10), "the test never released this sleep"

    def next_call(self) -> tuple[str, float, threading.Event]:
        return self.calls.get(timeout=10)

    def next_call_within(self, seconds: float) -> tuple[str, float, threading.Event]:
        return self.calls.get(timeout=seconds)

    def release(self, call: tuple[str, float, threading.Event]) -> None:
        _, until, released = call
        self.clock.t = max(self.clock.t, until)
        released.set()


def test_a_throttle_pauses_every_thread_including_those_already_waiting() -> None:
    clock = FakeClock()
    gate = GatedSleep(clock)
    pacer = AdaptivePacer(10, clock=clock, sleep=gate, rand=lambda: 0.0)
    starts: dict[str, float] = {}

    def worker() -> None:
        starts[threading.current_thread().name] = pacer.acquire()

    assert pacer.acquire() == 1000.0  # the first request goes at once
    waiting = threading.Thread(target=worker, name="waiting")
    waiting.start()
    first_wait = gate.next_call()  # "waiting" sleeps until its slot at 1000.101
    assert first_wait[:2] == ("waiting", pytest.approx(1000.0 + HEADROOM / 10))
    pacer.on_throttle(2.0)  # the server asks every request to wait 2 s
    late = [threading.Thread(target=worker, name=f"late{i}") for i in range(2)]
    for thread in late:
        thread.start()  # they queue behind "waiting": one thread sleeps for the next slot at a time
    with pytest.raises(queue.Empty):
        gate.calls.get(timeout=0.05)
    gate.release(first_wait)  # "waiting" wakes at its old slot, sees the pause and sleeps it out
    call = gate.next_call()
    assert call[0] == "waiting" and call[1] >= 1002.0
    sleepers = [call[0]]
    gate.release(call)
    while any(thread.is_alive() for thread in [waiting, *late]):
        with contextlib.suppress(queue.Empty):
            call = gate.next_call_within(0.05)
            sleepers.append(call[0])
            gate.release(call)
    for thread in [waiting, *late]:
        thread.join(10)
        assert not thread.is_alive()
    assert sorted(set(sleepers)) == ["late0", "late1", "waiting"]
    assert all(start >= 1002.0 for start in starts.values())
    ordered = sorted(starts.values())
    assert min(gaps(ordered)) >= HEADROOM / 10 - 1e-9
    # wall-clock time sending was held back (from the slot "waiting" was due, to the pause's end), not per thread
    assert pacer.throttle_wait_seconds == pytest.approx(2.0 - HEADROOM / 10)


def test_a_waiting_thread_holds_no_reservation() -> None:
    """Threads waiting for a slot all wait for the same next one, so a rate change applies to all of them."""
    clock = FakeClock()
    pacer = pacer_on(clock, 10)
    assert pacer.try_acquire() == (True, 1000.0)
    waits = [pacer.try_acquire() for _ in range(15)]  # 15 more threads arrive at once
    assert waits == [(False, pytest.approx(HEADROOM / 10))] * 15
    clock.t += HEADROOM / 10
    assert pacer.try_acquire() == (True, pytest.approx(1000.0 + HEADROOM / 10))
    assert pacer.try_acquire() == (False, pytest.approx(HEADROOM / 10))  # the others: the next slot, not the 15th


def test_a_cut_never_leaves_the_rate_above_the_admitted_share() -> None:
    """Eight workers start at the full rate; the tenant admits about an eighth of this one's requests."""
    clock = FakeClock()
    pacer = pacer_on(clock, 50, rand=lambda: 0.0)
    sent = [pacer.acquire() for _ in range(40)]  # 0.8 s at the full rate
    for sent_at in sent[:5]:
        pacer.on_success(sent_at)  # admitted: 5 in the last second
    pacer.on_throttle(1.0, sent_at=sent[-1])
    assert pacer.rate == pytest.approx(5.0)  # not 0.7 x 50: one step to the share
    for sent_at in sent[5:-1]:
        pacer.on_throttle(1.0, sent_at=sent_at)  # the rest of the flight: the same event
    assert pacer.rate == pytest.approx(5.0)
    steady = pacer_on(FakeClock(), 50, rand=lambda: 0.0)
    for _ in range(150):  # 3 s at the full rate, all admitted
        steady.on_success(steady.acquire())
    steady.on_throttle(1.0, sent_at=steady.acquire())
    assert steady.rate == pytest.approx(0.7 * 50 / HEADROOM, rel=0.05)  # admitted ~ sent: the usual cut


def send_at_20_per_second(pacer: AdaptivePacer, clock: FakeClock, seconds: float = 1.2) -> None:
    """Ask for a slot 20 times a second, under the pacing rate of 50: a cut then starts from the measured rate.
    The successes carry no send time, so no admitted share bounds the cut."""
    for _ in range(round(20 * seconds)):
        pacer.acquire()
        pacer.on_success()
        clock.t += 0.05


@pytest.mark.parametrize("offset", [0.0, 0.1, 0.3, 0.49])
@pytest.mark.parametrize("before", ["nothing", "a stall", "a pause"])
def test_a_measurement_reads_the_send_rate_wherever_it_starts(before: str, offset: float) -> None:
    """The send rate is measured from the first send, and again after a pause or a stall, so a throttle 1.2 s
    later cuts from 20 requests/s, wherever in a half-second bucket sending started. (An average over a bucket
    that sending entered part-way through, started from nothing or from the rate before, cut to 12.5-15.1.)"""
    clock = FakeClock(1000.0 + offset)
    pacer = pacer_on(clock, 50, rand=lambda: 0.0)
    if before == "nothing":
        clock.t += 10.0  # built well before the first request, as a hook is
    elif before == "a stall":
        run_at_full_speed(pacer)  # 3 s at 49.5 requests/s
        clock.t = math.floor(clock.t) + 3.0 + offset  # nothing to send for ~3 s
    else:
        run_at_full_speed(pacer)
        clock.t = math.floor(clock.t) + offset - 1.0
        pacer.on_throttle(1.0, sent_at=pacer.acquire())  # a 1 s pause (no jitter) that ends at the offset
    send_at_20_per_second(pacer, clock)
    pacer.on_throttle(None, sent_at=pacer.acquire())
    assert pacer.rate == pytest.approx(0.7 * 20, rel=0.01)


@pytest.mark.parametrize("offset", [0.0, 0.3, 0.49])
def test_a_throttle_before_the_first_measurement_cuts_from_the_rate(offset: float) -> None:
    """The start of a load with many workers: a 429 0.4 s in, before any answer. An average over the bucket
    that sending entered at ``offset`` read 3.2 requests/s at 0.49 (a cut to 2.2; in test_many_workers 4 of 8
    workers were cut to 1.36 this way): with no measurement yet, the cut is from the pacing rate."""
    clock = FakeClock(1000.0 + offset)
    pacer = pacer_on(clock, 50, rand=lambda: 0.0)
    clock.t += 10.0
    sent = [pacer.acquire() for _ in range(20)]
    pacer.on_throttle(None, sent_at=sent[-1])
    assert pacer.rate == pytest.approx(0.7 * 50)


def test_a_throttle_soon_after_a_pause_cuts_by_beta_not_to_the_paused_count() -> None:
    """The second before the throttled request reaches back into a pause: its admitted count says nothing
    about the share (the process was not sending), so the cut is the usual one, not a collapse."""
    clock = FakeClock()
    pacer = pacer_on(clock, 50, rand=lambda: 0.0)
    for _ in range(150):  # 3 s at the full rate, all admitted
        pacer.on_success(pacer.acquire())
    pacer.on_throttle(1.0, sent_at=pacer.acquire())  # the usual cut, and a 1 s pause
    resumed = [pacer.acquire() for _ in range(7)]  # 0.2 s after the pause: 7 admitted
    for sent_at in resumed:
        pacer.on_success(sent_at)
    before = pacer.rate
    pacer.on_throttle(1.0, sent_at=pacer.acquire())
    assert pacer.rate == pytest.approx(0.7 * before, rel=0.05)  # not 7 requests/s


def test_a_throttle_after_a_stall_cuts_as_without_the_admitted_cap() -> None:
    """A stall (the warehouse, the next load of the process) leaves the same hole in the admitted count as a
    pause: the cut is the one a pacer that was never told what was admitted makes, not the few sent since."""

    def stall_then_throttle(report_sent_at: bool) -> float:
        clock = FakeClock()
        pacer = pacer_on(clock, 50, rand=lambda: 0.0)
        for _ in range(150):  # 3 s at the full rate, all admitted
            sent_at = pacer.acquire()
            pacer.on_success(sent_at if report_sent_at else None)
        clock.t += 1.2  # nothing to send for 1.2 s
        for _ in range(3):
            sent_at = pacer.acquire()
            pacer.on_success(sent_at if report_sent_at else None)
        pacer.on_throttle(1.0, sent_at=pacer.acquire())
        return pacer.rate

    assert stall_then_throttle(True) == pytest.approx(stall_then_throttle(False))
    assert stall_then_throttle(True) > 3.0  # what was admitted since the stall


def test_a_pause_without_a_cut_keeps_the_rate() -> None:
    clock = FakeClock()
    pacer = pacer_on(clock, 50, rand=lambda: 0.0)
    run_at_full_speed(pacer)
    assert pacer.on_throttle(1.0, sent_at=pacer.acquire(), cut=False) == 1.0
    assert (pacer.rate, pacer.throttled) == (50, 1)
    assert pacer.acquire() == pytest.approx(clock.t)
    assert pacer.throttle_wait_seconds == pytest.approx(1.0)


events = st.lists(
    st.one_of(
        st.just(("acquire",)),
        st.just(("success",)),
        st.tuples(st.just("throttle"), st.one_of(st.none(), st.floats(0, 5)), st.booleans()),
        st.tuples(st.just("advance"), st.floats(0, 3)),
    ),
    max_size=80,
)


@settings(max_examples=150, deadline=None)
@given(events)
def test_never_above_the_configured_rate(script: list[tuple]) -> None:
    clock = FakeClock()
    pacer = pacer_on(clock, 20, rand=random.Random(1).random)
    starts: list[float] = []
    for event in script:
        if event[0] == "acquire":
            starts.append(pacer.acquire())
        elif event[0] == "success":
            pacer.on_success()
        elif event[0] == "throttle":
            sent_at = starts[-1] if event[2] and starts else None
            assert 0.0 <= pacer.on_throttle(event[1], sent_at=sent_at) <= pacer.max_pause
        else:
            clock.t += event[1]
        assert pacer.min_rate <= pacer.rate <= 20
    assert all(gap >= HEADROOM / 20 - 1e-9 for gap in gaps(starts))


def test_shared_pacer_per_tenant_and_rate() -> None:
    key = f"tenant-{uuid.uuid4()}"
    assert AdaptivePacer.shared(key, 50) is AdaptivePacer.shared(key, 50)
    assert AdaptivePacer.shared(key, 50) is not AdaptivePacer.shared(key, 25)
    assert AdaptivePacer.shared(key, 50) is not AdaptivePacer.shared(f"{key}-other", 50)


# --- Budget keys and the Redis client ------------------------------------------------------------------------


def test_budget_key_names_host_and_token_hash_never_the_token() -> None:
    token = "pat-very-secret-token-value"
    key = budget_key("https://Service.Peak.ai/ingestion-api", token)
    assert key == f"peak:rate:service.peak.ai:{hashlib.sha256(token.encode()).hexdigest()}"
    assert token not in key
    assert budget_key("http://127.0.0.1:8080", token) != budget_key("http://127.0.0.1:8081", token)
    assert budget_key("https://ingestion.peak.ai", token) != budget_key("https://ingestion.peak.ai", "other")
    assert budget_key("https://ingestion.peak.ai", token, tenant="acme") == "peak:rate:tenant:acme"


# --- The host budget: one schedule in a file for every process of this host ----------------------------------


def test_host_slots_are_evenly_spaced_across_holders_of_one_file(tmp_path: Path) -> None:
    key = f"peak:rate:tenant:{uuid.uuid4().hex}"
    holders = [HostSlots(key, 1000, directory=tmp_path / "budgets") for _ in range(2)]
    assert holders[0].path == holders[1].path
    drawn = draw_in_threads(holders, threads=4, each=100)
    starts = sorted(slot.start for slot in drawn)
    assert len(set(starts)) == 400
    assert min(gaps(starts)) >= holders[0].interval_us == round(HEADROOM * 1e6 / 1000)
    assert all(slot.start >= slot.now for slot in drawn)


def test_host_slots_drawn_a_little_late_keep_the_cadence(tmp_path: Path) -> None:
    """A draw that comes after its slot (the thread woke late) does not push the schedule back for good."""
    clock = FakeClock(100.0)
    slots = HostSlots(f"peak:rate:tenant:{uuid.uuid4().hex}", 50, directory=tmp_path, clock=clock)
    interval = slots.interval_us
    first = slots.next_slot().start
    clock.t += 1.2 * interval / 1e6  # late by a fifth of an interval
    late = slots.next_slot()
    assert (late.start - first, late.wait) == (interval, 0)  # on the cadence, sent at once
    clock.t += 10.0  # an idle spell: the schedule starts again from now
    assert slots.next_slot().start == round(clock.t * 1e6)


def test_a_push_delays_every_holder_and_a_host_throttle_cuts_the_rate(tmp_path: Path) -> None:
    key = f"peak:rate:tenant:{uuid.uuid4().hex}"
    budget = SharedBudget(
        HostSlots(key, 50, directory=tmp_path), AdaptivePacer(50, rand=lambda: 0.0), tenant_wide=False
    )
    other = HostSlots(key, 50, directory=tmp_path)  # another process of this host
    budget.acquire()
    before = round(time.monotonic() * 1e6)
    assert budget.on_throttle(2.0) == pytest.approx(2.0, abs=0.05)  # Retry-After (no jitter here)
    held = other.next_slot().start
    assert held >= before + 2_000_000
    assert HostSlots(key, 50, directory=tmp_path).next_slot().start == held + other.interval_us
    assert budget.pacer.rate < 50  # not tenant-wide: other hosts may share the tenant, so the rate is cut too


def test_a_tenant_wide_budget_cuts_only_when_throttles_repeat_without_a_success(tmp_path: Path) -> None:
    """One throttle is a clock edge: pause, keep the budget's rate. A second before any success says the tenant
    admits less than the budget hands out (a lower real limit, other clients): cut as well."""
    key = f"peak:rate:tenant:{uuid.uuid4().hex}"
    budget = SharedBudget(HostSlots(key, 1000, directory=tmp_path), AdaptivePacer(1000, rand=lambda: 0.0))
    for _ in range(3):
        budget.on_success(budget.acquire())
    budget.on_throttle(0.0, sent_at=budget.acquire())
    assert budget.pacer.rate == 1000
    budget.on_success(budget.acquire())
    budget.on_throttle(0.0, sent_at=budget.acquire())  # after a success: still one event
    assert budget.pacer.rate == 1000
    budget.on_throttle(0.0, sent_at=budget.acquire())  # again, with no success between
    assert budget.pacer.rate < 1000


@pytest.mark.parametrize("problem", ["not a directory", "open to others"])
def test_an_unusable_host_budget_warns_once_and_paces_alone(
    problem: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    if problem == "not a directory":
        (tmp_path / "file").write_text("")
        directory = tmp_path / "file" / "budgets"  # cannot be created, not even by root
    else:
        directory = tmp_path / "shared"
        directory.mkdir()
        directory.chmod(0o777)  # another user could stall every load through it
    slots = HostSlots(f"peak:rate:tenant:{uuid.uuid4().hex}", 1000, directory=directory)
    budget = SharedBudget(slots, AdaptivePacer(1000), tenant_wide=False, name=f"host file {slots.path}")
    with caplog.at_level(logging.DEBUG, logger="peak_provider.ratecontrol"):
        for _ in range(20):
            budget.acquire()
            budget.on_success()
        budget.on_throttle(0.0)
    assert budget.pacer.rate < 1000  # alone, the pacer adapts
    warnings = [r for r in caplog.records if r.name == "peak_provider.ratecontrol" and r.levelno >= logging.WARNING]
    assert len(warnings) == 1, caplog.text
    assert "paces itself" in warnings[0].getMessage() and str(slots.path) in warnings[0].getMessage()
    assert not budget.available
    assert not slots.path.exists()  # nothing was written


def test_the_host_budget_file_never_holds_the_token(tmp_path: Path) -> None:
    token = f"pat-canary-{uuid.uuid4().hex}"
    key = budget_key("http://127.0.0.1:8080", token)
    slots = HostSlots(key, 50, directory=tmp_path / "budgets")
    slots.next_slot()
    slots.push(0.5)
    (written,) = (tmp_path / "budgets").iterdir()
    assert written == slots.path and written.name == hashlib.sha256(key.encode()).hexdigest()
    assert token not in written.name and token not in written.read_text()
    assert set(json.loads(written.read_text())) == {"boot", "next_free_us", "no_slot_before_us"}
    assert (written.stat().st_mode & 0o777, written.parent.stat().st_mode & 0o777) == (0o600, 0o700)


def test_a_torn_or_stale_host_budget_file_starts_a_new_schedule(tmp_path: Path) -> None:
    slots = HostSlots("peak:rate:tenant:stale", 50, directory=tmp_path)
    slots.next_slot()
    now = round(time.monotonic() * 1e6)
    boot = json.loads(slots.path.read_text())["boot"]
    for content in (
        "",
        '{"next_free_us": 1',
        json.dumps({"boot": "another boot", "next_free_us": now + 10**9, "no_slot_before_us": 0}),
        json.dumps({"boot": boot, "next_free_us": now + 10**12, "no_slot_before_us": 0}),  # no boot id: hours ahead
    ):
        slots.path.write_text(content)
        slot = slots.next_slot()
        assert slot.start == slot.now, content
    os.truncate(slots.path, 0)
    assert slots.next_slot().wait == 0


def test_redis_client_reads_an_airflow_connection() -> None:
    from airflow.models import Connection

    conn = Connection(
        conn_id="budget",
        conn_type="redis",
        host="127.0.0.1",
        port=6390,
        login="peak",
        password="budget-password",
        extra={"db": 3, "ssl": "true", "ssl_ca_certs": "/etc/ca.pem", "ssl_check_hostname": "false"},
    )
    kwargs = redis_client(conn).connection_pool.connection_kwargs
    assert {k: kwargs[k] for k in ("host", "port", "db", "username", "password")} == {
        "host": "127.0.0.1",
        "port": 6390,
        "db": 3,
        "username": "peak",
        "password": "budget-password",
    }
    assert (kwargs["ssl_cert_reqs"], kwargs["ssl_ca_certs"], kwargs["ssl_check_hostname"]) == (
        "required",
        "/etc/ca.pem",
        False,
    )
    from_uri = redis_client(Connection(conn_id="uri", uri="redis://:budget-password@127.0.0.1:6380/2"))
    plain = from_uri.connection_pool.connection_kwargs
    assert (plain["port"], plain["db"], plain["password"]) == (6380, 2, "budget-password")
    assert "ssl_cert_reqs" not in plain


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"conn_type": "http"}, "needs a 'redis' connection"),
        ({"conn_type": "redis", "extra": {"db": "three"}}, "must be numbers"),
        ({"conn_type": "redis", "extra": {"ssl": "maybe"}}, "must be true or false"),
        ({"conn_type": "redis", "extra": {"ssl": True, "ssl_cert_reqs": "always"}}, "ssl_cert_reqs"),
    ],
)
def test_redis_client_rejects_bad_settings_without_the_password(fields: dict, message: str) -> None:
    from airflow.models import Connection

    conn = Connection(conn_id="bad_budget", host="127.0.0.1", password="budget-password", **fields)
    with pytest.raises(ValueError, match=message) as raised:
        redis_client(conn)
    assert "bad_budget" in str(raised.value)
    assert "budget-password" not in str(raised.value)


@pytest.mark.parametrize("mode", ["token-bucket", "fixed-window"])
def test_simulated_workers_share_one_tenant(mode: str) -> None:
    """The control law, without timing noise: 8 simulated workers (benchmarks/pacing_sim.py) on one tenant.

    The pacer before issue #11's rework had 13-15% 429s here; tests/reliability/test_many_workers.py is the
    proof with real processes."""
    from benchmarks.pacing_sim import simulate

    lone = simulate(1, mode, latency=0.05)  # a fixed window may refuse one request that jitter pushed in
    assert lone.throttled <= 1 and lone.share >= 0.95, (lone.throttled, lone.share)
    for seed in range(3):
        run = simulate(8, mode, latency=0.05, seed=seed)
        assert run.share_429 <= 0.06, (seed, run.share_429)
        assert run.share >= 0.8, (seed, run.share)
