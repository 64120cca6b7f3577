"""The rate limit's two modes (token bucket + Retry-After, fixed window without) and two scopes (tenant, token).

Each burst runs inside one wall-clock second (retried after a reset when it straddles a boundary), so
a token bucket refills less than one second's worth and a fixed window never rolls over mid-burst:
the 429 counts are then exact without any timing assertion.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

import pytest
import requests

from peak_provider.emulator import Emulator, Limits
from tests.emulator.helpers import Api

T = TypeVar("T")
QP_PRODUCTS = "QP_PRODUCT_OOTB"


def within_one_second(emu: Emulator, burst: Callable[[], T], attempts: int = 5) -> T:
    """Run ``burst`` against a freshly reset ``emu`` until one run starts and ends in the same wall-clock second."""
    for _ in range(attempts):
        emu.reset()
        before = time.time()
        result = burst()
        if int(time.time()) == int(before):
            return result
    pytest.fail(f"no burst fitted in one wall-clock second in {attempts} attempts")


def ingest_as(api: Api, token: str, solution: str) -> requests.Response:
    obj = "INV_PRODUCTS_OOTB" if solution == "INV_OOTB" else QP_PRODUCTS
    return api.ingest([], obj, solution=solution, token=token)


@pytest.mark.parametrize(
    ("scope", "expected"),
    [
        # one tenant: every token and every solution draw from one budget of 1 request/s
        ("tenant", [200, 429, 429, 429]),
        # per token: a and b have a budget each, whatever the solution
        ("token", [200, 200, 429, 429]),
    ],
)
@pytest.mark.parametrize("mode", ["token-bucket", "fixed-window"])
def test_scope_decides_who_shares_the_budget(peak_emulator_factory, make_api, mode, scope, expected):
    emu = peak_emulator_factory(
        tokens=["a", "b"], limits=Limits(requests_per_second=1, rate_limit_mode=mode, rate_limit_scope=scope)
    )
    api = make_api(emu)
    calls = [("a", "INV_OOTB"), ("b", "QP_OOTB"), ("a", "QP_OOTB"), ("b", "INV_OOTB")]
    responses = within_one_second(emu, lambda: [ingest_as(api, token, solution) for token, solution in calls])
    assert [r.status_code for r in responses] == expected
    assert emu.stats()["throttled"] == expected.count(429)
    for r in responses:
        if r.status_code == 429:
            assert r.json()["error"]["code"] == "DI_E_20002"
            assert f"per {scope}" in r.json()["error"]["message"]


def test_token_bucket_burst_is_capped_at_capacity_with_retry_after(peak_emulator_factory, make_api):
    emu = peak_emulator_factory(limits=Limits(requests_per_second=5))
    api = make_api(emu)
    responses = within_one_second(emu, lambda: [api.ingest([]) for _ in range(20)])
    statuses = [r.status_code for r in responses]
    # capacity 5, plus under 5 tokens refilled within the second
    assert statuses[:5] == [200] * 5
    assert 11 <= statuses.count(429) <= 15
    throttled = [r for r in responses if r.status_code == 429]
    assert {r.headers.get("Retry-After") for r in throttled} == {"1"}
    stats = emu.stats()
    assert stats["throttled"] == len(throttled) == stats["requests_by_status"]["429"]
    assert stats["requests_total"] == 20


def test_fixed_window_allows_rate_per_second_and_sends_no_retry_after(peak_emulator_factory, make_api):
    emu = peak_emulator_factory(limits=Limits(requests_per_second=5, rate_limit_mode="fixed-window"))
    api = make_api(emu)
    responses = within_one_second(emu, lambda: [api.ingest([]) for _ in range(20)])
    assert [r.status_code for r in responses] == [200] * 5 + [429] * 15
    for r in responses[5:]:
        assert "Retry-After" not in r.headers
        assert r.json()["error"]["category"] == "THROTTLING"
        assert "one-second window" in r.json()["error"]["message"]
    stats = emu.stats()
    assert stats["throttled"] == 15 and stats["requests_by_status"] == {"200": 5, "429": 15}


def test_the_next_window_admits_again(peak_emulator_factory, make_api):
    emu = peak_emulator_factory(limits=Limits(requests_per_second=2, rate_limit_mode="fixed-window"))
    api = make_api(emu)
    assert [r.status_code for r in within_one_second(emu, lambda: [api.ingest([]) for _ in range(3)])] == [
        200,
        200,
        429,
    ]
    second = int(time.time())
    while int(time.time()) == second:
        time.sleep(0.01)
    assert api.ingest([]).status_code == 200


def test_limits_reject_unknown_modes_and_scopes():
    with pytest.raises(ValueError, match="rate limit mode 'leaky'"):
        Limits(rate_limit_mode="leaky")
    with pytest.raises(ValueError, match="rate limit scope 'solution'"):
        Limits(rate_limit_scope="solution")
