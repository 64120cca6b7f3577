"""Issue #12, "counts after a failure are wrong": every failure path reports honest counts.

Whatever stops a load (a 500 after the server stored the batch, a 401 part-way, the row source raising,
lost answers), the error carries ``result``; every row read is in exactly one bucket; the rows accepted
are exactly the server's stored rows that are not in doubt; and every in-doubt row went to
``on_rejected`` with outcome ``in_doubt``.
"""

from __future__ import annotations

import json
import signal
import threading
import time
from collections.abc import Iterator, Mapping
from typing import Any

import pytest

from peak_provider.exceptions import (
    PeakAuthError,
    PeakError,
    PeakHTTPError,
    PeakSinkError,
    PeakSourceError,
    PeakStoppedError,
)
from peak_provider.hooks.peak import PeakHook
from peak_provider.rejected import RejectedRowsSink
from peak_provider.result import IngestResult, Rejection
from peak_provider.retries import Cause
from tests.hooks.test_peak import FAST_RETRIES, hook_for, ingest_log, products
from tests.hostile import Answer, json_answer

TOKEN = "test-token-123"  # the peak_connection fixture's


def load(hook: PeakHook, rows: Any, operation: str = "APPEND") -> tuple[PeakError, list[Rejection]]:
    """Run a load that must fail; the error (with its result) and what went to ``on_rejected``."""
    rejections: list[Rejection] = []
    try:
        with pytest.raises(PeakError) as failure:
            hook.ingest("products", rows, operation=operation, on_rejected=rejections.append)
    finally:
        hook.close()
    assert failure.value.result is not None, "the error carries no result"
    return failure.value, rejections


def assert_honest(result: IngestResult, stored: list[str], rejections: list[Rejection]) -> set[str]:
    """The buckets add up, accepted == stored rows not in doubt, in-doubt rows reported; the in-doubt ids."""
    assert result.reconciled, result
    in_doubt = {r.key["product_id"] for r in rejections if r.outcome == "in_doubt" and r.key}
    assert len(in_doubt) == result.rows_in_doubt == sum(r.outcome == "in_doubt" for r in rejections)
    assert len(stored) == len(set(stored)), "an APPEND row was stored twice"
    assert result.rows_accepted == len(set(stored) - in_doubt)
    return in_doubt


class StoringServer:
    """Stores every ingest POST's rows, then answers ``answer_for(n)`` for the n-th request (1-based)."""

    def __init__(self, answer_for: Any):
        self.answer_for = answer_for
        self.stored: list[str] = []
        self._count = 0
        self._lock = threading.Lock()

    def __call__(self, method: str, path: str, headers: Mapping[str, str], body: bytes) -> Answer:
        with self._lock:
            self._count += 1
            n = self._count
            answer = self.answer_for(n)
            if answer[0] == 200 or answer[0] >= 500:  # a 5xx from a gateway after the backend stored the rows
                self.stored.extend(row["product_id"] for row in json.loads(body)["data"])
        return answer


def test_append_500_after_storing_counts_every_batch_in_flight(hostile, peak_connection):
    server = StoringServer(lambda n: json_answer({"error": "gateway"}, 500) if n == 3 else json_answer({}))
    url = hostile(server).url
    hook = PeakHook(peak_connection(host=url, max_rows_per_request=100, max_in_flight=4, **FAST_RETRIES))

    error, rejections = load(hook, products(5_000))

    assert isinstance(error, PeakHTTPError) and error.status == 500 and error.cause is Cause.SERVER_ERROR
    result = error.result
    assert result is not None
    in_doubt = assert_honest(result, server.stored, rejections)
    assert result.rows_in_doubt == 100 and in_doubt <= set(server.stored)  # the 500 batch: stored, not re-sent
    assert result.rows_accepted + result.rows_in_doubt == len(server.stored)  # in-flight batches counted
    assert result.rows_unsent == result.rows_read - len(server.stored) > 0


def test_401_mid_load_carries_the_counts_so_far(hostile, peak_connection):
    refused = json_answer({"message": "Unauthorized"}, 401)
    server = StoringServer(lambda n: refused if n > 2 else json_answer({"failed": []}))
    url = hostile(server).url
    hook = PeakHook(peak_connection(host=url, max_rows_per_request=100, max_in_flight=4, **FAST_RETRIES))

    error, rejections = load(hook, products(5_000), operation="UPSERT")

    assert isinstance(error, PeakAuthError) and error.status == 401 and TOKEN not in str(error)
    result = error.result
    assert result is not None
    assert_honest(result, server.stored, rejections)
    assert (result.rows_accepted, result.rows_in_doubt) == (len(server.stored), 0)  # refused: certainly not applied
    assert result.rows_unsent == result.rows_read - len(server.stored) > 0


def test_source_raising_part_way_reports_the_rows_read(peak_emulator, monkeypatch):
    def source() -> Iterator[dict[str, Any]]:
        yield from products(750)
        raise RuntimeError("warehouse connection lost")

    error, rejections = load(hook_for(peak_emulator, monkeypatch), source())

    assert isinstance(error, PeakSourceError) and "after 750 rows" in str(error) and "RuntimeError" in str(error)
    assert isinstance(error.__cause__, RuntimeError)
    result = error.result
    assert result is not None and result.rows_read == 750
    stored = [r["product_id"] for r in peak_emulator.rows("INV_PRODUCTS_OOTB")]
    assert_honest(result, stored, rejections)
    assert result.rows_accepted == len(stored) == 500 and result.rows_unsent == 250  # the open batch


def test_a_rejected_rows_sink_that_cannot_write_stops_the_load_with_every_row_counted(
    peak_emulator, monkeypatch, tmp_path
):
    """The API rejects 3 rows of a batch (names over its 65,535 characters) and the sink cannot create its file
    (its directory's parent is a file): the load fails with PeakSinkError, carrying counts that say exactly
    what the API did with the batch."""
    (tmp_path / "a-file").write_text("")
    sink = RejectedRowsSink(str(tmp_path / "a-file" / "rejects" / "products.jsonl"), "products")
    rows = [{**row, "product_name": "x" * 70_000 if i in (2, 5, 7) else "ok"} for i, row in enumerate(products(10))]
    hook = hook_for(peak_emulator, monkeypatch)
    try:
        with pytest.raises(PeakSinkError) as failure:
            hook.ingest("products", iter(rows), operation="APPEND", on_rejected=sink.write)
    finally:
        hook.close()
    assert "NotADirectoryError" in str(failure.value) or "FileExistsError" in str(failure.value)
    result = failure.value.result
    assert result is not None and result.reconciled, result
    assert (result.rows_read, result.rows_accepted, result.rows_rejected) == (10, 7, 3)
    assert len(peak_emulator.rows("INV_PRODUCTS_OOTB")) == 7


def test_a_stop_from_outside_sends_nothing_more_and_carries_the_counts(peak_emulator, monkeypatch):
    """``PeakHook.stop`` (the operator's ``on_kill``) once the first batch arrives: the batches in flight settle
    and are counted, no batch is sent after them, and the load raises PeakStoppedError whose counts say exactly
    what the emulator stored."""
    peak_emulator.set_faults(latency_ms=200)
    hook = hook_for(peak_emulator, monkeypatch, max_rows_per_request=100, max_in_flight=2)

    def stop_at_first_arrival() -> None:
        while not ingest_log(peak_emulator):
            time.sleep(0.005)
        hook.stop("a test")

    stopper = threading.Thread(target=stop_at_first_arrival, daemon=True)
    stopper.start()
    error, rejections = load(hook, products(5_000))
    stopper.join(5)
    assert isinstance(error, PeakStoppedError) and "The load was stopped: a test" in str(error)
    result = error.result
    assert result is not None
    stored = [r["product_id"] for r in peak_emulator.rows("INV_PRODUCTS_OOTB")]
    assert_honest(result, stored, rejections)
    assert result.rows_in_doubt == 0 and result.rows_accepted == len(stored) <= 1_000  # two in flight, not 5,000
    assert result.rows_unsent > 0 and len(ingest_log(peak_emulator)) == len(stored) // 100


def test_a_stop_before_the_load_starts_holds(peak_emulator, monkeypatch):
    """``on_kill`` can come before the sending window exists (during the preflight or the query): the stop is
    kept, and the load then sends nothing."""
    hook = hook_for(peak_emulator, monkeypatch)
    hook.stop("early")
    assert hook.stopped
    error, rejections = load(hook, products(10))
    assert isinstance(error, PeakStoppedError) and "stopped: early" in str(error)
    assert error.result is not None and (error.result.rows_read, error.result.rows_unsent) == (1, 1)
    assert ingest_log(peak_emulator) == [] and rejections == []


def test_any_exception_that_stops_a_load_carries_the_counts(peak_emulator, monkeypatch):
    """A task timeout is raised by a signal handler wherever the load is: it leaves with the counts too."""

    class Timeout(BaseException):  # the shape of Airflow's AirflowTaskTimeout (a BaseException), raised from SIGALRM
        pass

    def on_alarm(signum: int, frame: Any) -> None:
        raise Timeout("Timeout, PID: 1")

    peak_emulator.set_faults(latency_ms=200)
    hook = hook_for(peak_emulator, monkeypatch, max_rows_per_request=100, max_in_flight=2)
    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, 0.5)
    try:
        with pytest.raises(Timeout) as failure:
            hook.ingest("products", products(5_000), operation="APPEND")
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
        hook.close()
    result = failure.value.result  # type: ignore[attr-defined]
    assert isinstance(result, IngestResult) and 0 < result.rows_read < 5_000 and result.rows_unsent > 0
    assert result.reconciled, result  # the batch being closed when the alarm rang is counted unsent
    assert result.rows_accepted == len(peak_emulator.rows("INV_PRODUCTS_OOTB"))


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_lost_answers_on_append_are_in_doubt_not_resent(peak_emulator, monkeypatch, seed):
    peak_emulator.set_faults(lost_response_rate=0.2, seed=seed)  # stored, then the connection closes
    hook = hook_for(peak_emulator, monkeypatch, max_rows_per_request=100, max_in_flight=4, **FAST_RETRIES)

    error, rejections = load(hook, products(5_000))

    assert isinstance(error, PeakHTTPError) and error.cause is Cause.DROPPED
    result = error.result
    assert result is not None
    stored = [r["product_id"] for r in peak_emulator.rows("INV_PRODUCTS_OOTB")]
    in_doubt = assert_honest(result, stored, rejections)
    assert result.rows_in_doubt >= 100 and in_doubt <= set(stored)  # lost after storing
    lost = sum(e["rows"] for e in peak_emulator.request_log() if e["fault"] == "lost_response")
    assert lost == result.rows_in_doubt
    assert sum(e["rows"] for e in peak_emulator.request_log()) == len(stored)  # no batch sent twice
