"""PeakHook over real loopback HTTP against the bundled emulator: batching, limits, retries, errors."""

from __future__ import annotations

import hashlib
import json
import logging
import time
import tracemalloc
from collections.abc import Iterator

import pytest

from peak_provider.emulator import Limits
from peak_provider.exceptions import PeakAuthError, PeakHTTPError
from peak_provider.hooks.peak import PeakHook
from peak_provider.ratecontrol import AdaptivePacer, HostSlots, SharedBudget, budget_key, host_budget_dir

FAST_RETRIES = {"retry_backoff": 0.01, "retry_backoff_max": 0.05}


def products(n: int, start: int = 0, **extra) -> Iterator[dict]:
    for i in range(start, start + n):
        yield {
            "product_id": f"P{i:07d}",
            "source_id": "S1",
            "pack_size": 1 + i % 9,
            "updated_at": "2025-01-15 08:00:00",
            **extra,
        }


def hook_for(emulator, monkeypatch, conn_id="peak_http", **extra) -> PeakHook:
    monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", emulator.connection_json("INV_OOTB", **extra))
    return PeakHook(conn_id)


def ingest_log(emulator):
    return [e for e in emulator.request_log() if "/api/v2/ingest/object/" in e["path"]]


def test_batches_by_row_count(peak_emulator, monkeypatch):
    hook = hook_for(peak_emulator, monkeypatch, max_rows_per_request=100)
    result = hook.upsert("products", products(1050))
    assert sorted(e["rows"] for e in ingest_log(peak_emulator)) == [50] + [100] * 10  # in flight together: any order
    assert (result.rows_read, result.rows_sent, result.rows_accepted, result.requests) == (1050, 1050, 1050, 11)
    assert len(peak_emulator.rows("INV_PRODUCTS_OOTB")) == 1050


def test_batches_by_encoded_size(peak_emulator, monkeypatch):
    hook = hook_for(peak_emulator, monkeypatch, max_request_bytes=20_000)
    result = hook.upsert("products", products(300, product_description="d" * 500))
    log = ingest_log(peak_emulator)
    assert all(e["bytes"] <= 20_000 for e in log)
    assert len(log) > 1 and sum(e["rows"] for e in log) == 300
    assert result.rows_accepted == 300 and result.bytes_sent == sum(e["bytes"] for e in log)


def test_row_over_the_byte_limit_is_rejected_not_sent(peak_emulator, monkeypatch):
    hook = hook_for(peak_emulator, monkeypatch, max_request_bytes=5_000)
    rows = list(products(3))
    rows[1]["product_description"] = "x" * 6_000
    result = hook.upsert("products", rows)
    assert (result.rows_accepted, result.rows_rejected) == (2, 1)
    (rejected,) = result.rejected_sample
    assert rejected["key"]["product_id"] == "P0000001" and "over max_request_bytes (5000)" in rejected["reason"]
    assert sum(e["rows"] for e in ingest_log(peak_emulator)) == 2


def test_413_splits_the_batch(peak_emulator_factory, monkeypatch):
    emulator = peak_emulator_factory(limits=Limits(max_rows_per_request=100, requests_per_second=0))
    hook = hook_for(emulator, monkeypatch, max_rows_per_request=500)
    result = hook.upsert("products", products(400))
    statuses = [e["status"] for e in ingest_log(emulator)]
    assert statuses.count(413) == 3  # 400 -> 2x200 -> 4x100
    assert result.rows_accepted == 400 and len(emulator.rows("INV_PRODUCTS_OOTB")) == 400


@pytest.mark.slow  # cost: waits out Retry-After
def test_429_retry_after_is_honoured(peak_emulator_factory, monkeypatch):
    # the emulator allows 1 request/s (token bucket) while the client is configured for 1000/s: a 429 with
    # Retry-After: 1 pauses the process's sending for that long (plus jitter); throttles use up no retries
    emulator = peak_emulator_factory(limits=Limits(requests_per_second=1))
    hook = hook_for(
        emulator, monkeypatch, requests_per_second=1000, max_rows_per_request=5, max_in_flight=1, max_retries=0
    )
    result = hook.upsert("products", products(15))
    statuses = [e["status"] for e in ingest_log(emulator)]
    assert statuses.count(200) == 3 and statuses.count(429) >= 1
    assert result.throttled == statuses.count(429) and result.retries == 0 and result.rows_accepted == 15
    assert result.throttle_wait_seconds >= 1.0  # Retry-After honoured, not the 10 ms backoff


def test_503_then_success(peak_emulator, monkeypatch):
    peak_emulator.set_faults(error_rate=0.5, error_statuses=[503], seed=7)
    hook = hook_for(peak_emulator, monkeypatch, max_rows_per_request=10, **FAST_RETRIES)
    result = hook.upsert("products", products(200))
    statuses = [e["status"] for e in ingest_log(peak_emulator)]
    assert 503 in statuses
    assert result.retries == statuses.count(503) and result.rows_accepted == 200
    assert len(peak_emulator.rows("INV_PRODUCTS_OOTB")) == 200


@pytest.mark.slow  # cost: waits out a timeout
def test_timeout_then_success(peak_emulator, monkeypatch):
    peak_emulator.set_faults(slow_rate=0.3, slow_seconds=1.0, seed=5)
    hook = hook_for(peak_emulator, monkeypatch, max_rows_per_request=20, timeout=0.3, **FAST_RETRIES)
    result = hook.upsert("products", products(200))
    assert result.retries >= 1 and result.rows_accepted == 200
    time.sleep(1.2)  # let the slow requests finish: they are written late, after the client gave up
    assert any(e["fault"] == "slow" for e in peak_emulator.request_log())
    assert {r["product_id"] for r in peak_emulator.rows("INV_PRODUCTS_OOTB")} == {f"P{i:07d}" for i in range(200)}


def test_retries_run_out(peak_emulator, monkeypatch):
    peak_emulator.set_faults(error_rate=1.0, error_statuses=[503])
    hook = hook_for(peak_emulator, monkeypatch, max_retries=2, **FAST_RETRIES)
    with pytest.raises(PeakHTTPError, match=r"after 2 retries\. HTTP 503") as failure:
        hook.upsert("products", products(5))
    assert failure.value.status == 503 and failure.value.result.rows_read == 5


def test_append_does_not_retry_what_may_have_landed(peak_emulator, monkeypatch):
    peak_emulator.set_faults(error_rate=1.0, error_statuses=[500])
    hook = hook_for(peak_emulator, monkeypatch, **FAST_RETRIES)
    with pytest.raises(PeakHTTPError, match="not retried for APPEND"):
        hook.append("products", products(5))
    assert len(ingest_log(peak_emulator)) == 1


def test_401_is_not_retried_and_never_shows_the_token(peak_emulator, monkeypatch):
    monkeypatch.setenv(
        "AIRFLOW_CONN_PEAK_BAD",
        json.dumps(
            {
                "conn_type": "peak",
                "host": peak_emulator.url,
                "password": "canary-pat-0xDEADBEEF",
                "extra": {"solution_name": "INV_OOTB", "prefix": "INV_", "suffix": "_OOTB"},
            }
        ),
    )
    hook = PeakHook("peak_bad")
    with pytest.raises(PeakAuthError) as failure:
        hook.upsert("products", products(3))
    assert "'peak_bad'" in str(failure.value) and "401" in str(failure.value)
    assert "canary-pat-0xDEADBEEF" not in str(failure.value) + repr(failure.value)
    assert len(ingest_log(peak_emulator)) == 1
    ok, reason = hook.test_connection()
    assert not ok and "401" in reason and "canary" not in reason


@pytest.mark.parametrize("shape", ["index+row", "index", "row"])
def test_failed_entries_become_rejected_rows(peak_emulator_factory, monkeypatch, shape):
    """Whatever a ``failed`` entry names its row by (the emulator's --failed-entries): its index, the row
    (matched by primary key), or both (which must agree)."""
    hook = hook_for(peak_emulator_factory(failed_entries=shape), monkeypatch)
    rows = list(products(4))
    rows[2]["product_name"] = "n" * 70_000  # passes the client, refused by the API
    seen = []
    result = hook.upsert("products", rows, on_rejected=seen.append)
    assert (result.rows_sent, result.rows_accepted, result.rows_rejected, result.rows_in_doubt) == (4, 3, 1, 0)
    (rejection,) = seen
    assert rejection.key == {"product_id": "P0000002", "updated_at": "2025-01-15 08:00:00"}
    assert rejection.code == "DI_E_10008" and rejection.field == "product_name"
    assert rejection.row["product_id"] == "P0000002"
    assert result.reconciled


def test_dry_run_validates_without_writing(peak_emulator, monkeypatch):
    hook = hook_for(peak_emulator, monkeypatch)
    result = hook.upsert("products", products(3), dry_run=True)
    assert result.dry_run and result.rows_accepted == 3
    assert peak_emulator.rows("INV_PRODUCTS_OOTB") == []


@pytest.mark.parametrize("scope", [None, "host", "process"])
def test_rate_control_per_scope_is_logged(scope, peak_emulator, monkeypatch, caplog):
    extra = {} if scope is None else {"rate_limit_scope": scope}
    hook = hook_for(peak_emulator, monkeypatch, **extra)
    monkeypatch.setattr(PeakHook, "log", logging.getLogger("peak-test-hook"))  # Airflow 3 logs through structlog
    with caplog.at_level(logging.INFO, logger="peak-test-hook"):
        result = hook.upsert("products", products(3))
    assert result.rows_accepted == 3
    control = hook.transport.control
    (line,) = [r.getMessage() for r in caplog.records if r.getMessage().startswith("Peak rate limit:")]
    if scope == "process":
        assert isinstance(control, AdaptivePacer) and "paced by this process alone" in line
        return
    assert isinstance(control, SharedBudget) and isinstance(control.slots, HostSlots) and not control.tenant_wide
    assert control.available and "this host's request budget" in line and str(control.slots.path) in line
    # the file is the SHA-256 of the budget key, which hashes the token: the token is in neither name nor content
    key = budget_key(hook.settings.base_url, peak_emulator.token)
    assert control.slots.path == host_budget_dir() / hashlib.sha256(key.encode()).hexdigest()
    assert (
        peak_emulator.token not in str(control.slots.path) and peak_emulator.token not in control.slots.path.read_text()
    )


@pytest.mark.slow  # cost: paced for seconds
def test_rate_limit_is_never_exceeded(peak_emulator_factory, monkeypatch):
    emulator = peak_emulator_factory(limits=Limits(requests_per_second=20))
    hook = hook_for(emulator, monkeypatch, requests_per_second=20, max_rows_per_request=10, max_in_flight=8)
    started = time.monotonic()
    result = hook.upsert("products", products(600))  # 60 requests at <= 20/s
    elapsed = time.monotonic() - started
    times = sorted(e["t"] for e in ingest_log(emulator))
    assert len(times) == 60 and 429 not in [e["status"] for e in ingest_log(emulator)]
    worst = max(sum(1 for t in times if t0 <= t < t0 + 1.0) for t0 in times)
    # Starts are 1.01/20 s apart on the pacer's clock; a request its thread sent ~10 ms late and the one 20
    # slots later, on time, arrive within one second (seen once on a clean clone): one request of jitter.
    assert worst <= 21, f"{worst} requests within one second"
    assert elapsed >= 59 / 20 * 0.95 and result.rows_accepted == 600


@pytest.mark.slow
def test_a_generator_of_100k_rows_is_streamed(peak_emulator_factory, monkeypatch):
    emulator = peak_emulator_factory(limits=Limits(requests_per_second=0))
    hook = hook_for(emulator, monkeypatch, requests_per_second=100_000, max_in_flight=4)
    produced = 0

    def rows():
        nonlocal produced
        for row in products(100_000):
            produced += 1
            yield row

    tracemalloc.start()
    result = hook.upsert("products", rows())
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert result.rows_read == result.rows_accepted == 100_000 and produced == 100_000
    # 100k rows of ~110 bytes are ~11 MB as JSON and far more as dicts; a streamed load stays well below
    assert peak < 8_000_000, f"peak traced memory {peak} bytes"


def test_test_connection(peak_emulator, monkeypatch):
    assert hook_for(peak_emulator, monkeypatch).test_connection()[0] is True
    conn = json.loads(peak_emulator.connection_json("INV_OOTB"))
    conn["extra"]["solution_name"] = "NOPE_OOTB"
    monkeypatch.setenv("AIRFLOW_CONN_PEAK_WRONG_SOLUTION", json.dumps(conn))
    wrong = PeakHook("peak_wrong_solution")
    ok, reason = wrong.test_connection()
    assert not ok and "NOPE_OOTB" in reason
    monkeypatch.setenv(
        "AIRFLOW_CONN_PEAK_DOWN",
        json.dumps(
            {"conn_type": "peak", "host": "http://127.0.0.1:9", "password": "pat-xyz", "extra": {"solution_name": "X"}}
        ),
    )
    ok, reason = PeakHook("peak_down").test_connection()
    assert not ok and "connection refused" in reason and "Connection refused" in reason  # cause and OS reason


def test_schema_calls(peak_emulator, monkeypatch):
    hook = hook_for(peak_emulator, monkeypatch)
    assert "INV_OOTB" in [s["solutionName"] for s in hook.list_solutions()["solutions"]]
    objects = {o["objectName"] for o in hook.get_schema()["objects"]}
    assert "INV_PRODUCTS_OOTB" in objects
    hook.add_attribute("products", "supplier_code", "string", validations=[{"type": "maxLength", "value": 8}])
    result = hook.upsert("products", products(2, SUPPLIER_CODE="ABC"), custom_attributes={"SUPPLIER_CODE": "string"})
    assert result.rows_accepted == 2
    assert peak_emulator.rows("INV_PRODUCTS_OOTB")[0]["SUPPLIER_CODE"] == "ABC"
