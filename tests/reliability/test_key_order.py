"""Issue #12, "an older version of a key overwrites a newer one": per-key order under slow answers and 503s.

40 batches of ``stock`` rows each carry the key HOT with ``available_stock`` = the batch's number, plus
unique filler rows. With 8 batches in flight and the emulator answering 20% of requests slowly (or 10%
with a retried 503), a batch that overtook an earlier one would leave an older HOT stored. The emulator
stores UPSERT by primary key (one row per key, the last applied), so its store shows the order applied.
"""

from __future__ import annotations

from typing import Any

import pytest

from peak_provider.emulator import Limits
from peak_provider.hooks.peak import PeakHook
from tests.hooks.test_peak import FAST_RETRIES

BATCHES = 40
ROWS_PER_BATCH = 10
OBJECT = "INV_STOCK_OOTB"
HOT = {"product_id": "HOT", "location_id": "L1", "day_date": "2025-03-01"}
FAULTS: dict[str, dict[str, Any]] = {
    "slow": {"slow_rate": 0.2, "slow_seconds": 0.1},
    "503": {"error_rate": 0.1, "error_statuses": [503]},
}


def versions_of_hot():
    """Batch ``b``: HOT with value ``b`` first, then unique fillers; read order is batch order."""
    for b in range(BATCHES):
        yield {**HOT, "available_stock": b}
        for j in range(ROWS_PER_BATCH - 1):
            yield {"product_id": f"F{b:02d}-{j}", "location_id": "L1", "day_date": "2025-03-01", "available_stock": j}


@pytest.fixture(scope="module")
def emulator():
    """One emulator for the module, without a rate limit (its faults are set per test)."""
    from peak_provider.emulator import Emulator

    with Emulator(limits=Limits(requests_per_second=0)) as emu:
        yield emu


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("fault", FAULTS)
def test_last_read_version_of_a_key_wins(emulator, monkeypatch, fault, seed):
    emulator.reset()
    emulator.set_faults(**FAULTS[fault], seed=seed)
    monkeypatch.setenv(
        "AIRFLOW_CONN_PEAK_ORDER",
        emulator.connection_json(
            "INV_OOTB",
            max_in_flight=8,
            max_rows_per_request=ROWS_PER_BATCH,
            requests_per_second=1000,
            max_retries=10,
            **FAST_RETRIES,
        ),
    )
    hook = PeakHook("peak_order")
    try:
        result = hook.upsert("stock", versions_of_hot())
    finally:
        hook.close()

    rows = BATCHES * ROWS_PER_BATCH
    assert (result.rows_read, result.rows_accepted, result.rows_in_doubt) == (rows, rows, 0)
    assert emulator.stats()["faults"], "no fault was injected: the test proved nothing"
    stored = emulator.rows(OBJECT)
    (hot,) = [r for r in stored if r["product_id"] == "HOT"]  # stored by key: one row
    assert hot["available_stock"] == BATCHES - 1, f"an older version ({hot['available_stock']}) was applied last"
    assert len(stored) == rows - (BATCHES - 1)  # every filler, and HOT once
