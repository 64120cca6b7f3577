"""The sending window alone, without HTTP: per-key order, buckets, progress and 413 splitting.

``send`` is a fake (:class:`FakeSend`): a row's wire bytes are its read position, so the fake sees which
rows each batch holds, and it answers as each test says — at once, after an event, with ``failed`` rows,
with an error. Events order the answers; no test depends on how fast anything runs.
"""

from __future__ import annotations

import gc
import random
import signal
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest

from peak_provider.exceptions import PeakAuthError, PeakError, PeakHTTPError, PeakSinkError
from peak_provider.ingest import Progress, SendingWindow, frozen_heap
from peak_provider.reply import Failure
from peak_provider.result import IngestResult, Rejection
from peak_provider.retries import Applied, Cause
from peak_provider.transport import PayloadTooLarge

WAIT = 10.0  # seconds before a test gives up waiting for the window (only reached when it is wrong)


def encoded(position: int, size: int = 0) -> bytes:
    """A row's wire bytes: its read position, padded with spaces to ``size`` bytes."""
    return str(position).encode().ljust(size)


class FakeSend:
    """The window's ``send``: records each batch's positions and answers with ``answer(positions)``.

    A batch holding a position given to :meth:`hold` waits for that position's event before answering.
    ``log`` has ``("sent" | "answered", positions)`` in the order it happened.
    """

    def __init__(self, answer: Callable[[list[int]], list[Failure]] | None = None):
        self.answer = answer or (lambda positions: [])
        self.calls: list[list[int]] = []
        self.log: list[tuple[str, tuple[int, ...]]] = []
        self.gates: dict[int, threading.Event] = {}
        self.changed = threading.Condition()

    def hold(self, position: int) -> threading.Event:
        self.gates[position] = threading.Event()
        return self.gates[position]

    def release_all(self) -> None:
        for gate in self.gates.values():
            gate.set()

    def wait_for(self, predicate: Callable[[], bool]) -> None:
        with self.changed:
            assert self.changed.wait_for(predicate, WAIT), f"the window never got there; calls: {self.calls}"

    def sent(self, position: int) -> bool:
        return any(position in call for call in self.calls)

    def __call__(self, rows: list[bytes]) -> list[Failure]:
        positions = [int(row) for row in rows]
        with self.changed:
            self.calls.append(positions)
            self.log.append(("sent", tuple(positions)))
            self.changed.notify_all()
        try:
            for position in positions:
                gate = self.gates.get(position)
                if gate is not None and not gate.wait(WAIT):
                    raise AssertionError(f"batch {positions} was never released")
            return self.answer(positions)
        finally:
            with self.changed:
                self.log.append(("answered", tuple(positions)))
                self.changed.notify_all()


def describe(source: Any, field: str | None, reason: str, code: str | None, outcome: str) -> Rejection:
    _position, key = source
    return Rejection(key={"k": key}, field=field, reason=reason, code=code, outcome=outcome)


@dataclass
class Load:
    """A window under test, what it reported, and the error the load stopped with."""

    window: SendingWindow
    rejections: list[Rejection] = field(default_factory=list)
    progress: list[Progress] = field(default_factory=list)
    error: PeakError | None = None

    @property
    def result(self) -> IngestResult:
        return self.window.result

    def buckets(self) -> dict[str, int]:
        r = self.result
        assert r.reconciled, f"read {r.rows_read} != the sum of the buckets: {r}"
        return {
            "accepted": r.rows_accepted,
            "rejected": r.rows_rejected,
            "in_doubt": r.rows_in_doubt,
            "unsent": r.rows_unsent,
        }

    def final(self) -> Progress:
        return self.progress[-1]


def make_load(
    send: FakeSend,
    *,
    max_rows: int = 2,
    max_in_flight: int = 2,
    in_doubt_settles: bool = True,
    track: bool = False,
    max_request_bytes: int = 10_000,
) -> Load:
    rejections: list[Rejection] = []
    progress: list[Progress] = []
    window = SendingWindow(
        send,
        describe,
        IngestResult(resource="products", object_name="PRODUCTS", operation="APPEND"),
        max_rows=max_rows,
        room=max_request_bytes - 100,
        max_request_bytes=max_request_bytes,
        max_in_flight=max_in_flight,
        in_doubt_settles=in_doubt_settles,
        scrub=lambda text: text,
        on_rejected=rejections.append,
        on_progress=progress.append if track else None,
    )
    return Load(window, rejections, progress)


def stream(load: Load, keys: Sequence[Any], sizes: dict[int, int] | None = None) -> Load:
    """Feed rows (row ``i`` has key ``keys[i]``) into the window and finish, the way ``PeakHook.ingest`` does."""
    window = load.window
    try:
        for position, key in enumerate(keys):
            window.result.rows_read += 1
            window.add(position, key, encoded(position, (sizes or {}).get(position, 0)), (position, key))
        window.finish()
    except PeakError as exc:
        window.abort()
        load.error = exc
    except BaseException:
        window.abort()
        raise
    finally:
        window.close()
    return load


class Background:
    """Run ``stream`` in a thread (the test thread watches the fake meanwhile); join re-raises its error."""

    def __init__(self, load: Load, keys: Sequence[Any]):
        self.failure: BaseException | None = None
        self.thread = threading.Thread(target=self._run, args=(load, keys), daemon=True)
        self.thread.start()

    def _run(self, load: Load, keys: Sequence[Any]) -> None:
        try:
            stream(load, keys)
        except BaseException as exc:
            self.failure = exc

    def join(self) -> None:
        self.thread.join(WAIT)
        assert not self.thread.is_alive(), "the load never ended"
        if self.failure is not None:
            raise self.failure


@pytest.fixture
def fake():
    send = FakeSend()
    yield send
    send.release_all()  # no worker thread stays blocked after a failed assertion


def error(applied: Applied, status: int = 500) -> PeakHTTPError:
    return PeakHTTPError(f"HTTP {status}", status=status, cause=Cause.SERVER_ERROR, applied=applied)


def keys_of(keys: Sequence[Any], call: Sequence[int]) -> list[Any]:
    return [keys[p] for p in call]


# --- per-key order -----------------------------------------------------------------------------------


def test_a_batch_never_holds_one_key_twice(fake):
    keys = ["K", "K", "A", "K", "B"]
    load = stream(make_load(fake, max_rows=4, max_in_flight=1), keys)
    assert fake.calls == [[0], [1, 2], [3, 4]]
    assert load.window.repeated_keys == 2
    assert load.buckets() == {"accepted": 5, "rejected": 0, "in_doubt": 0, "unsent": 0}


@pytest.mark.parametrize("max_in_flight", [3, 4, 8])
def test_a_batch_waits_for_the_earlier_batch_with_its_key(fake, max_in_flight):
    keys = ["A", "K", "B", "C", "K", "D", "E", "F"]  # batches [A K] [B C] [K D] [E F]
    gate = fake.hold(0)
    load = make_load(fake, max_rows=2, max_in_flight=max_in_flight)
    producer = Background(load, keys)
    fake.wait_for(lambda: fake.sent(6))  # the batch after [K D] left, so [K D] was closed before it
    assert not fake.sent(4), "a batch with K was sent while the earlier batch with K was unanswered"
    gate.set()
    producer.join()
    assert fake.log.index(("answered", (0, 1))) < fake.log.index(("sent", (4, 5)))
    assert load.buckets() == {"accepted": 8, "rejected": 0, "in_doubt": 0, "unsent": 0}


def test_rows_without_a_key_are_not_ordered(fake):
    """``None`` is the hook's "the layout does not carry the whole key": such rows share batches freely."""
    load = stream(make_load(fake, max_rows=4, max_in_flight=2), [None] * 8)
    assert sorted(fake.calls) == [[0, 1, 2, 3], [4, 5, 6, 7]]
    assert load.window.repeated_keys == 0
    assert load.buckets()["accepted"] == 8


@pytest.mark.parametrize("seed", range(24))
def test_the_last_version_of_a_key_wins_whatever_answers_first(seed):
    """Random batch sizes, window sizes and answer delays; hot keys repeat. The store must end with the
    last-read version of every key, and batches with a shared key must never overlap in time."""
    rng = random.Random(seed)
    keys = [rng.choice(["H1", "H2", "H3"]) if rng.random() < 0.3 else f"U{i}" for i in range(80)]
    store: dict[str, int] = {}
    lock = threading.Lock()

    def answer(positions: list[int]) -> list[Failure]:
        delays = random.Random(seed * 1_000 + positions[0])
        time.sleep(delays.random() * 0.002)  # tiny, only to vary which batch answers first
        with lock:
            for p in positions:
                store[keys[p]] = p
        time.sleep(delays.random() * 0.002)
        return []

    send = FakeSend(answer)
    max_in_flight = rng.randint(1, 6)
    load = stream(make_load(send, max_rows=rng.randint(1, 5), max_in_flight=max_in_flight, track=seed % 2 == 0), keys)

    assert store == {k: max(i for i, key in enumerate(keys) if key == k) for k in set(keys)}
    for call in send.calls:
        assert len(set(keys_of(keys, call))) == len(call), f"a batch holds one key twice: {call}"
    busy: dict[str, tuple[int, ...]] = {}  # key -> the batch holding it that is sent and not yet answered
    for event, batch in send.log:
        for key in keys_of(keys, batch):
            if event == "sent":
                assert key not in busy, f"{batch} was sent while {busy[key]} (also with {key}) was in flight"
                busy[key] = batch
            else:
                del busy[key]
    assert load.buckets() == {"accepted": 80, "rejected": 0, "in_doubt": 0, "unsent": 0}
    if load.progress:
        prefixes = [p.prefix for p in load.progress]
        assert prefixes == sorted(prefixes), "the settled prefix shrank"
        assert load.final().ranges == [[0, 80, 80, 0, 0]]


@pytest.mark.parametrize("track", [False, True])
@pytest.mark.parametrize("max_in_flight", [2, 4])
def test_unique_keys_keep_max_in_flight_batches_in_flight(max_in_flight, track):
    """Every call waits until ``max_in_flight`` calls are in flight together: a window that sends fewer
    at once breaks the barrier and fails the load."""
    barrier = threading.Barrier(max_in_flight, timeout=WAIT)

    def answer(positions: list[int]) -> list[Failure]:
        barrier.wait()
        return []

    send = FakeSend(answer)
    load = stream(make_load(send, max_rows=1, max_in_flight=max_in_flight, track=track), range(4 * max_in_flight))
    assert load.error is None
    assert load.buckets()["accepted"] == 4 * max_in_flight


# --- buckets ------------------------------------------------------------------------------------------


def test_rows_the_api_rejected_are_rejected_and_the_rest_accepted():
    send = FakeSend(lambda positions: [Failure(1, "pack_size", "DI_E_101", "not an integer")] if 4 in positions else [])
    load = stream(make_load(send, max_rows=3), list("abcdef"))
    assert load.buckets() == {"accepted": 5, "rejected": 1, "in_doubt": 0, "unsent": 0}
    assert load.result.rows_sent == 6
    (rejection,) = load.rejections
    assert (rejection.key, rejection.field, rejection.code, rejection.outcome) == (
        {"k": "e"},
        "pack_size",
        "DI_E_101",
        "rejected",
    )
    assert "rejected by the API: not an integer" in rejection.reason


@pytest.mark.parametrize(
    ("failure", "buckets"),
    [
        (error(Applied.MAYBE), {"accepted": 2, "rejected": 0, "in_doubt": 2, "unsent": 3}),
        (error(Applied.NO, 429), {"accepted": 2, "rejected": 0, "in_doubt": 0, "unsent": 5}),
        (
            PeakAuthError("HTTP 401", status=401, cause=Cause.AUTH, applied=Applied.NO),
            {"accepted": 2, "rejected": 0, "in_doubt": 0, "unsent": 5},
        ),
    ],
    ids=["in-doubt", "certainly-not-applied", "auth"],
)
def test_a_final_error_stops_the_load_and_every_row_read_has_a_bucket(failure, buckets):
    def answer(positions: list[int]) -> list[Failure]:
        if 2 in positions:
            raise failure
        return []

    send = FakeSend(answer)
    load = stream(make_load(send, max_rows=2, max_in_flight=1), list("abcdefgh"))
    assert load.error is failure
    assert send.calls == [[0, 1], [2, 3]]  # nothing is sent after the failure
    assert load.result.rows_read == 7  # the row being added when the error surfaced was read, and is unsent
    assert load.buckets() == buckets
    if buckets["in_doubt"]:
        assert [(r.key, r.outcome) for r in load.rejections] == [({"k": "c"}, "in_doubt"), ({"k": "d"}, "in_doubt")]
        assert "in doubt" in load.rejections[0].reason
    else:
        assert load.rejections == []


def test_batches_in_flight_when_the_load_stops_settle_and_are_counted(fake):
    """The third batch fails while the first two are still unanswered: their answers still count."""

    def answer(positions: list[int]) -> list[Failure]:
        if 4 in positions:
            fake.release_all()
            raise error(Applied.MAYBE)
        return []

    fake.answer = answer
    fake.hold(0)
    fake.hold(2)
    load = stream(make_load(fake, max_rows=2, max_in_flight=3), list("abcdefgh"))
    assert isinstance(load.error, PeakHTTPError)
    assert not fake.sent(6)
    assert load.buckets() == {"accepted": 4, "rejected": 0, "in_doubt": 2, "unsent": 2}


def test_a_stop_sends_no_held_batch(fake):
    """A stop from outside (the source raised): the batch in flight settles, the held one is not sent."""
    keys = ["K", "A", "K", "B", "C"]  # [K A] in flight, [K B] held behind it, [C] open
    gate = fake.hold(0)
    load = make_load(fake, max_rows=2, max_in_flight=4)
    window = load.window
    for position, key in enumerate(keys):
        window.result.rows_read += 1
        window.add(position, key, encoded(position), (position, key))
    gate.set()
    window.abort()
    window.close()
    assert fake.calls == [[0, 1]]
    assert load.buckets() == {"accepted": 2, "rejected": 0, "in_doubt": 0, "unsent": 3}


def test_an_unexpected_exception_from_send_leaves_the_batch_in_doubt():
    """``send`` is documented to raise only Peak errors; anything else (a bug, a socket closed under
    http.client) happened after the rows may have left, so they are in doubt, never lost from the counts."""

    def answer(positions: list[int]) -> list[Failure]:
        if 2 in positions:
            raise AttributeError("'NoneType' object has no attribute 'recv_into'")
        return []

    load = stream(make_load(FakeSend(answer), max_rows=2, max_in_flight=1), list("abcdef"))
    assert isinstance(load.error, PeakHTTPError)
    assert load.error.applied is Applied.MAYBE
    assert isinstance(load.error.__cause__, AttributeError)
    assert load.buckets() == {"accepted": 2, "rejected": 0, "in_doubt": 2, "unsent": 2}


def test_a_sink_that_raises_stops_the_load_after_settling_the_batch(fake):
    """The rejected-rows sink raises on a batch's first rejection: every row of that batch is still counted and
    settled (a resumed APPEND must not send its accepted rows again), the sink is not called again, nothing more
    is sent, and the load fails with a PeakSinkError whose cause is the sink's error."""
    fake.answer = lambda positions: [Failure(i, "pack_size", None, "bad") for i in (0, 2, 3)] if 0 in positions else []
    load = make_load(fake, max_rows=5, max_in_flight=1, track=True)
    calls: list[Rejection] = []

    def sink(rejection: Rejection) -> None:
        calls.append(rejection)
        raise OSError(28, "No space left on device")

    load.window.on_rejected = sink
    stream(load, list("abcdefghijkl"))
    assert isinstance(load.error, PeakSinkError) and load.error.__cause__ is None  # the sink's text is not scrubbed
    assert "rejected-rows sink failed (OSError: [Errno 28] No space left on device)" in str(load.error)
    assert len(calls) == 1
    assert fake.calls == [[0, 1, 2, 3, 4]]
    assert load.buckets() == {"accepted": 2, "rejected": 3, "in_doubt": 0, "unsent": 6}  # [f..j] and k: unsent
    assert load.final().ranges == [[0, 5, 2, 3, 0]]


def test_a_sink_that_raises_on_a_row_refused_before_sending_stops_the_load_at_once():
    """Rows the client rejects reach the sink at once: if it raises, the row is counted and the load stops there
    instead of reading on."""
    load = make_load(FakeSend())

    def sink(rejection: Rejection) -> None:
        raise OSError(13, "Permission denied")

    load.window.on_rejected = sink
    load.window.result.rows_read = 1
    with pytest.raises(PeakSinkError, match="Permission denied"):
        load.window.reject(0, describe((0, "a"), "pack_size", "bad", None, "rejected"))
    assert load.buckets() == {"accepted": 0, "rejected": 1, "in_doubt": 0, "unsent": 0}
    load.window.close()


def test_a_timeout_while_a_stop_waits_still_counts_every_row(fake):
    """Batch [a b] fails (unsent) while [c d] is in flight; a task timeout (a BaseException, from SIGALRM)
    interrupts the stop's wait for [c d]: it is counted in doubt (it may be stored), the rest unsent, and the
    final progress is still saved."""

    class Timeout(BaseException):
        pass

    def answer(positions: list[int]) -> list[Failure]:
        if 0 in positions:
            raise error(Applied.NO, 429)
        return []

    def on_alarm(signum: int, frame: Any) -> None:
        fake.release_all()  # the answer comes, but too late for the stop that was waiting for it
        raise Timeout

    fake.answer = answer
    fake.hold(2)
    load = make_load(fake, max_rows=2, max_in_flight=2, track=True)
    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, 0.3)
    try:
        with pytest.raises(Timeout):
            stream(load, list("abcde"))
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    assert load.buckets() == {"accepted": 0, "rejected": 0, "in_doubt": 2, "unsent": 3}
    assert [r.key for r in load.rejections] == [{"k": "c"}, {"k": "d"}]
    assert load.progress, "no final progress was saved"


# --- progress -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("in_doubt_settles", "applied", "ranges", "keys", "buckets"),
    [
        (True, Applied.MAYBE, [[0, 8, 5, 1, 2]], {7: "h"}, (5, 1, 2, 0)),
        (True, Applied.NO, [[0, 2, 2, 0, 0], [4, 8, 3, 1, 0]], {1: "b", 7: "h"}, (5, 1, 0, 2)),
        (False, Applied.MAYBE, [[0, 2, 2, 0, 0]], {1: "b"}, (5, 1, 2, 0)),
        (False, Applied.NO, [[0, 2, 2, 0, 0]], {1: "b"}, (5, 1, 0, 2)),
    ],
    ids=["append-in-doubt", "append-unsent", "upsert-in-doubt", "upsert-unsent"],
)
def test_final_progress_after_a_stop(fake, in_doubt_settles, applied, ranges, keys, buckets):
    """Batches [a b] [c d] [e f] [g h]: [c d] fails only after [e f] (f rejected) and [g h] answered.
    APPEND (in doubt settles) keeps every settled range past the prefix; UPSERT only the prefix."""
    later_answered = threading.Event()

    def answer(positions: list[int]) -> list[Failure]:
        if 2 in positions:
            assert later_answered.wait(WAIT)
            raise error(applied)
        if 4 in positions:
            return [Failure(1, None, None, "bad")]
        if 6 in positions:
            later_answered.set()
        return []

    fake.answer = answer
    load = stream(
        make_load(fake, max_rows=2, max_in_flight=3, in_doubt_settles=in_doubt_settles, track=True), "abcdefgh"
    )
    assert load.error is not None
    assert tuple(load.buckets().values()) == buckets
    assert load.final().ranges == ranges
    assert load.final().keys == keys
    assert load.progress[0].ranges == [[0, 2, 2, 0, 0]]
    assert all(len(p.ranges) == 1 for p in load.progress[:-1])  # while loading: the prefix only


@pytest.mark.parametrize("max_in_flight", [2, 3])
def test_with_progress_no_batch_leaves_more_than_max_in_flight_past_the_oldest_unsettled(fake, max_in_flight):
    """The oldest batch hangs and every other answers at once: a checkpointing load stops sending after
    ``max_in_flight`` batches (bounding what a retry re-sends); without a checkpoint it keeps going."""
    keys = [f"U{i}" for i in range(20)]
    gate = fake.hold(0)
    producer = Background(make_load(fake, max_rows=2, max_in_flight=max_in_flight, track=True), keys)
    fake.wait_for(lambda: len(fake.calls) >= max_in_flight)
    producer.thread.join(0.05)  # a tiny wait: a window past its bound would send more meanwhile
    assert producer.thread.is_alive()
    assert sorted(fake.calls) == [[2 * b, 2 * b + 1] for b in range(max_in_flight)]
    gate.set()
    producer.join()

    untracked = FakeSend()
    untracked_gate = untracked.hold(0)
    try:
        producer = Background(make_load(untracked, max_rows=2, max_in_flight=max_in_flight), keys)
        untracked.wait_for(lambda: len(untracked.calls) == 10)  # every batch, while the first still hangs
    finally:
        untracked_gate.set()
    producer.join()


def test_rows_rejected_before_sending_settle_in_place(fake):
    load = make_load(fake, max_rows=2, track=True)
    window = load.window
    for position in range(3):
        window.result.rows_read += 1
        if position == 1:
            window.reject(position, Rejection(key={"k": "b"}, field="pack_size", reason="not an integer"))
        else:
            window.add(position, "ac"[position // 2], encoded(position), (position, "ac"[position // 2]))
    window.finish()
    window.close()
    assert fake.calls == [[0, 2]]
    assert load.buckets() == {"accepted": 2, "rejected": 1, "in_doubt": 0, "unsent": 0}
    assert load.final().ranges == [[0, 3, 2, 1, 0]]


def skip(window: SendingWindow, positions: range, carried: tuple[int, int, int], *, walked: int | None = None) -> None:
    """Skip a range an earlier attempt settled, carrying it with its counts on the range's last row; with
    ``walked``, only that many of its rows (a stop part-way through)."""
    whole = [positions.start, positions.stop, *carried]
    for position in positions[:walked]:
        window.skip(position, f"k{position}", whole if position == positions[-1] else None)


def add(window: SendingWindow, positions: range) -> None:
    for position in positions:
        window.result.rows_read += 1
        window.add(position, f"k{position}", encoded(position), (position, f"k{position}"))


def test_skipped_rows_carry_their_counts_into_progress(fake):
    load = make_load(fake, max_rows=2, track=True)
    skip(load.window, range(4), (3, 1, 0))
    add(load.window, range(4, 8))
    load.window.finish()
    load.window.close()
    assert load.final().ranges == [[0, 8, 7, 1, 0]]
    assert load.final().keys == {7: "k7"}
    assert load.final().totals() == (7, 1, 0)
    assert load.result.rows_accepted == 4  # the window counts this attempt; the hook adds what it carries


def test_skipped_ranges_past_a_stop_are_kept_with_their_counts():
    """APPEND retry: rows 0-3 and 6-7 were settled earlier (6-7 in doubt); 4-5 fail again, unsent."""

    def answer(positions: list[int]) -> list[Failure]:
        raise error(Applied.NO, 429)

    load = make_load(FakeSend(answer), max_rows=2, track=True)
    skip(load.window, range(4), (3, 1, 0))
    add(load.window, range(4, 6))
    skip(load.window, range(6, 8), (0, 0, 2))
    with pytest.raises(PeakHTTPError):
        load.window.finish()
    load.window.abort()
    load.window.close()
    assert load.final().ranges == [[0, 4, 3, 1, 0], [6, 8, 0, 0, 2]]
    assert load.final().keys == {3: "k3", 7: "k7"}


@pytest.mark.parametrize("in_doubt_settles", [True, False])
def test_a_stop_right_after_skipping_keeps_the_skipped_prefix(fake, in_doubt_settles):
    """A retry whose source fails before any batch settles must not checkpoint less than it resumed from."""
    load = make_load(fake, max_rows=2, in_doubt_settles=in_doubt_settles, track=True)
    skip(load.window, range(4), (2, 2, 0))
    add(load.window, range(4, 5))
    load.window.abort()  # the source raised
    load.window.close()
    assert fake.calls == []
    assert load.final().ranges == [[0, 4, 2, 2, 0]]
    assert load.final().keys == {3: "k3"}


def test_a_range_skipped_part_way_is_not_settled_nor_walked_by_the_prefix(fake):
    """Rows 0-3 were settled earlier, then 6-9. This attempt queues 4-5 and has read 6-7 of the second range
    when it stops: 4-5 are unsent, and no range with no counts claims rows 6-7 (the hook keeps the whole
    earlier range in the checkpoint)."""
    load = make_load(fake, max_rows=2, track=True)
    skip(load.window, range(4), (3, 1, 0))
    add(load.window, range(4, 6))
    skip(load.window, range(6, 10), (4, 0, 0), walked=2)
    load.window.abort()
    load.window.close()
    assert load.final().ranges == [[0, 4, 3, 1, 0]]
    assert load.final().keys == {3: "k3"}


def test_the_prefix_stops_at_a_range_skipped_part_way(fake):
    """The batch 4-5 settles after rows 6-7 of the earlier range 6-9 were read: the prefix reaches 6, not 8
    (the earlier attempts' counts of 6-7 come only with the range's end)."""
    load = make_load(fake, max_rows=2, track=True)
    skip(load.window, range(4), (3, 1, 0))
    add(load.window, range(4, 6))
    skip(load.window, range(6, 10), (4, 0, 0), walked=2)
    load.window.finish()  # the source ended there (the hook then fails: the source changed)
    load.window.close()
    assert load.final().ranges == [[0, 6, 5, 1, 0]]
    assert load.final().keys == {5: "k5"}


# --- 413 splitting ------------------------------------------------------------------------------------


def too_large_when(refused: Callable[[list[int]], bool]) -> FakeSend:
    def answer(positions: list[int]) -> list[Failure]:
        if refused(positions):
            raise PayloadTooLarge("413")
        return []

    return FakeSend(answer)


def test_413_splits_in_halves_depth_first():
    send = too_large_when(lambda positions: len(positions) > 2)
    load = stream(make_load(send, max_rows=8, max_in_flight=1), list("abcdefgh"))
    assert send.calls == [
        [0, 1, 2, 3, 4, 5, 6, 7],
        [0, 1, 2, 3],
        [0, 1],
        [2, 3],
        [4, 5, 6, 7],
        [4, 5],
        [6, 7],
    ]
    assert load.buckets() == {"accepted": 8, "rejected": 0, "in_doubt": 0, "unsent": 0}
    assert load.result.rows_sent == 8


def test_413_for_a_large_row_alone_rejects_that_row():
    send = too_large_when(lambda positions: 1 in positions)
    load = stream(make_load(send, max_rows=3, max_in_flight=1, max_request_bytes=1_000), "abc", sizes={1: 600})
    assert load.error is None
    assert send.calls == [[0, 1, 2], [0], [1, 2], [1], [2]]
    assert load.buckets() == {"accepted": 2, "rejected": 1, "in_doubt": 0, "unsent": 0}
    (rejection,) = load.rejections
    assert rejection.key == {"k": "b"}
    assert "413 for this row alone (600 bytes)" in rejection.reason


def test_413_for_a_small_row_alone_fails_the_load_once_without_sending_the_rest():
    """A proxy's limit far below ours: one error, the path down to one row, not a request per row."""
    send = too_large_when(lambda positions: True)
    load = stream(make_load(send, max_rows=500, max_in_flight=1), [f"U{i}" for i in range(500)])
    assert [len(call) for call in send.calls] == [500, 250, 125, 62, 31, 15, 7, 3, 1]
    assert isinstance(load.error, PeakHTTPError)
    assert (load.error.status, load.error.applied) == (413, Applied.NO)
    assert "lower max_request_bytes" in str(load.error)
    assert load.rejections == []
    assert load.buckets() == {"accepted": 0, "rejected": 0, "in_doubt": 0, "unsent": 500}


# --- cadence: the collector stays off the heap that existed before the load ---------------------------


@pytest.fixture
def nothing_frozen() -> None:
    if gc.get_freeze_count():
        pytest.skip("this test process already froze objects")


def test_the_heap_alive_before_the_load_is_frozen_while_it_sends(nothing_frozen):
    """A full collection of a large heap holds the GIL for ~140 ms: no sending thread could start a request."""
    before = ["alive before the load"]  # a container, so the collector tracks it
    gc.collect()  # now in the oldest generation
    assert any(o is before for o in gc.get_objects(generation=2))
    collectable: list[bool] = []

    def answer(positions: list[int]) -> list[Failure]:
        collectable.append(any(o is before for o in gc.get_objects()))  # frozen objects are in no generation
        return []

    fake = FakeSend(answer)
    stream(make_load(fake, max_rows=2), ["A", "B", "C"])
    assert collectable == [False, False]
    assert gc.get_freeze_count() == 0, "the load thawed what it froze"
    assert any(o is before for o in gc.get_objects())
    assert fake.calls == [[0, 1], [2]]


def test_frozen_heap_thaws_only_what_it_froze(nothing_frozen):
    with frozen_heap():
        assert gc.get_freeze_count() > 0
    assert gc.get_freeze_count() == 0
    gc.freeze()  # the process's owner freezes (as Airflow's executors do before they fork)
    try:
        owned = gc.get_freeze_count()
        with frozen_heap():
            pass
        assert gc.get_freeze_count() >= owned, "the owner's frozen objects were thawed"
    finally:
        gc.unfreeze()
