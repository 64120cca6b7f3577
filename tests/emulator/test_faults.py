"""Fault injection: errors, throttle bursts, drops, slow answers, lost responses, latency."""

from __future__ import annotations

import time

import pytest
import requests

from peak_provider.emulator import Faults
from tests.emulator.helpers import PRODUCTS, product, wait_for


def _statuses(api, n, **kwargs):
    out = []
    for i in range(n):
        try:
            out.append(api.ingest([product(product_id=f"P{i}")], **kwargs).status_code)
        except requests.ConnectionError:
            out.append(None)
    return out


def test_error_rate_answers_5xx_before_processing(api):
    api.emulator.set_faults(error_rate=1.0)
    statuses = _statuses(api, 6)
    assert set(statuses) <= {500, 503} and len(statuses) == 6
    r = api.ingest([product()])
    assert r.json()["error"]["code"] == "DI_E_50000"
    assert api.emulator.rows(PRODUCTS) == []
    stats = api.emulator.stats()
    assert stats["faults"] == {"error": 7} and stats["rows_accepted"] == 0


def test_error_statuses_are_configurable(api):
    api.emulator.set_faults(Faults(error_rate=1.0, error_statuses=(502,)))
    assert _statuses(api, 3) == [502, 502, 502]


def test_throttle_bursts_are_runs_of_429_with_retry_after(api):
    api.emulator.set_faults(throttle_rate=0.25, throttle_burst=3, retry_after_seconds=2, seed=7)
    responses = [api.ingest([product(product_id=f"P{i}")]) for i in range(40)]
    statuses = [r.status_code for r in responses]
    assert all(r.headers["Retry-After"] == "2" for r in responses if r.status_code == 429)
    runs, current = [], 0
    for s in [*statuses, 200]:
        if s == 429:
            current += 1
        elif current:
            runs.append(current)
            current = 0
    if statuses[-1] == 429:
        runs.pop()  # a burst may be cut short by the end of the test
    assert runs and all(run % 3 == 0 for run in runs), statuses
    assert len(api.emulator.rows(PRODUCTS)) == statuses.count(200)
    assert api.emulator.stats()["throttled"] == statuses.count(429)


def test_drop_closes_the_connection_without_processing(api):
    api.emulator.set_faults(drop_rate=1.0)
    with pytest.raises(requests.ConnectionError):
        api.ingest([product()])
    assert api.emulator.rows(PRODUCTS) == []
    entry = api.emulator.request_log()[-1]
    assert (entry["status"], entry["fault"]) == (None, "drop")
    assert api.emulator.stats()["requests_by_status"] == {"no_response": 1}


def test_slow_answers_after_the_client_timed_out_but_still_processes(api):
    api.emulator.set_faults(slow_rate=1.0, slow_seconds=0.5)
    with pytest.raises(requests.Timeout):
        api.ingest([product()], timeout=0.15)
    assert api.emulator.rows(PRODUCTS) == []  # not yet
    assert wait_for(lambda: api.emulator.rows(PRODUCTS)) == [product()]
    entry = wait_for(lambda: api.emulator.request_log())[-1]
    assert (entry["status"], entry["fault"]) == (200, "slow")


def test_lost_response_stores_the_rows(api):
    api.emulator.set_faults(lost_response_rate=1.0)
    with pytest.raises(requests.ConnectionError):
        api.ingest([product()])
    assert api.emulator.rows(PRODUCTS) == [product()]
    stats = api.emulator.stats()
    assert stats["rows_accepted"] == 1 and stats["faults"] == {"lost_response": 1}
    assert api.emulator.request_log()[-1]["status"] is None


def test_latency_and_jitter_delay_every_request(api):
    api.emulator.set_faults(latency_ms=80, jitter_ms=20)
    start = time.perf_counter()
    assert api.ingest([product()]).status_code == 200
    assert time.perf_counter() - start >= 0.08


def test_same_seed_same_faults(api):
    faults = {"error_rate": 0.2, "drop_rate": 0.1, "throttle_rate": 0.1, "throttle_burst": 2, "seed": 42}
    api.emulator.set_faults(faults)
    first = _statuses(api, 30)
    api.emulator.set_faults(faults)
    second = _statuses(api, 30)
    assert first == second
    assert {200, 429, None} <= set(first) and set(first) & {500, 503}


def test_faults_spare_the_control_endpoints(api):
    api.emulator.set_faults(error_rate=1.0)
    assert api.get("/_emulator/stats").status_code == 200


def test_reset_restores_the_configured_faults(peak_emulator_factory, make_api):
    emu = peak_emulator_factory(faults={"error_rate": 1.0, "error_statuses": [503]})
    api = make_api(emu)
    emu.set_faults(Faults())
    assert api.ingest([product()]).status_code == 200
    emu.reset()
    assert emu.faults.error_rate == 1.0
    assert api.ingest([product()]).status_code == 503


def test_invalid_fault_settings_are_refused():
    with pytest.raises(ValueError, match="exceeds 1"):
        Faults(error_rate=0.7, drop_rate=0.5)
    with pytest.raises(ValueError, match="Unknown fault settings"):
        Faults.from_dict({"eror_rate": 0.1})
    with pytest.raises(ValueError, match="between 0 and 1"):
        Faults(slow_rate=1.5)
