"""413 for too many rows or bytes, 429 with Retry-After from the rate limit (modes and scopes: test_ratelimit)."""

from __future__ import annotations

import json

from peak_provider.emulator import Limits
from tests.emulator.helpers import INGEST, PRODUCTS, body, product


def test_too_many_rows_is_413(peak_emulator_factory, make_api):
    api = make_api(peak_emulator_factory(limits=Limits(max_rows_per_request=3)))
    assert api.ingest([product(product_id=f"P{i}") for i in range(3)]).status_code == 200
    r = api.ingest([product(product_id=f"P{i}") for i in range(4)])
    assert r.status_code == 413
    assert r.json()["error"]["code"] == "DI_E_20004"
    assert len(api.emulator.rows(PRODUCTS)) == 3
    assert api.emulator.request_log()[-1]["rows"] == 4


def test_default_row_limit_is_500(api):
    assert api.ingest([product(product_id=f"P{i}") for i in range(500)]).status_code == 200
    assert api.ingest([product(product_id=f"P{i}") for i in range(501)]).status_code == 413


def test_too_many_bytes_is_413_and_the_connection_stays_usable(peak_emulator_factory, make_api):
    api = make_api(peak_emulator_factory(limits=Limits(max_request_bytes=2_000)))
    big = json.dumps(body([product(product_description="x" * 3_000)])).encode()
    r = api.post(INGEST + PRODUCTS, data=big)
    assert r.status_code == 413
    assert r.json()["error"] == {
        "code": "DI_E_20003",
        "category": "REQUEST",
        "message": f"The body has {len(big)} bytes; the limit is 2000",
    }
    assert api.ingest([product()]).status_code == 200
    assert api.emulator.stats()["bytes_received"] >= len(big)


def test_limits_can_be_disabled(peak_emulator_factory, make_api):
    api = make_api(peak_emulator_factory(limits=Limits(0, 0, 0)))
    rows = [product(product_id=f"P{i}", product_description="y" * 2_000) for i in range(600)]
    assert api.ingest(rows).json()["accepted"] == 600
    assert all(api.ingest([]).status_code == 200 for _ in range(60))


def test_rate_limit_is_429_with_retry_after(peak_emulator_factory, make_api):
    emu = peak_emulator_factory(tokens=["a", "b"], limits=Limits(requests_per_second=2))
    api = make_api(emu)
    assert [api.ingest([], token="a").status_code for _ in range(2)] == [200, 200]
    r = api.ingest([product()], token="a")
    assert r.status_code == 429
    assert r.headers["Retry-After"] == "1"
    assert r.json()["error"]["code"] == "DI_E_20002"
    assert r.json()["error"]["category"] == "THROTTLING"
    assert "per tenant" in r.json()["error"]["message"]
    assert emu.rows(PRODUCTS) == []
    stats = emu.stats()
    assert stats["throttled"] == 1 and stats["requests_by_status"] == {"200": 2, "429": 1}


def test_rate_limit_comes_after_auth(peak_emulator_factory, make_api):
    api = make_api(peak_emulator_factory(limits=Limits(requests_per_second=1)))
    assert api.ingest([]).status_code == 200
    assert api.ingest([], token="wrong").status_code == 401
    assert api.ingest([]).status_code == 429
