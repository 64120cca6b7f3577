"""The pytest plugin's fixtures: a reset-per-test session emulator, and a factory."""

from __future__ import annotations

import json

import requests

from peak_provider.emulator import Emulator, Limits
from tests.emulator.helpers import PRODUCTS, body, product


def test_fixture_is_a_running_emulator_with_the_default_solutions(peak_emulator):
    assert isinstance(peak_emulator, Emulator) and peak_emulator.running
    assert peak_emulator.url.startswith("http://127.0.0.1:")
    assert [s.name for s in peak_emulator.solutions] == ["INV_OOTB", "QP_OOTB"]
    assert len(peak_emulator.token) >= 20
    assert peak_emulator.limits == Limits()
    r = requests.post(
        f"{peak_emulator.url}/api/v2/ingest/object/{PRODUCTS}",
        json=body([product()]),
        headers={"Authorization": peak_emulator.token},
        timeout=5,
    )
    assert r.status_code == 200
    peak_emulator.set_faults(error_rate=1.0)


def test_fixture_is_reset_between_tests(peak_emulator):
    # the previous test stored a row and set faults
    assert peak_emulator.rows(PRODUCTS) == []
    assert peak_emulator.stats()["requests_total"] == 0
    assert peak_emulator.faults.error_rate == 0


def test_connection_json(peak_emulator):
    conn = json.loads(peak_emulator.connection_json())
    assert conn == {
        "conn_type": "peak",
        "host": peak_emulator.url,
        "password": peak_emulator.token,
        "extra": {"solution_name": "INV_OOTB", "application": "inventory", "prefix": "INV_", "suffix": "_OOTB"},
    }
    qp = json.loads(peak_emulator.connection_json("QP_OOTB", batch_size=100))
    assert qp["extra"] == {
        "solution_name": "QP_OOTB",
        "application": "b2c_pricing",
        "prefix": "QP_",
        "suffix": "_OOTB",
        "batch_size": 100,
    }


def test_factory_starts_custom_emulators(peak_emulator_factory):
    emu = peak_emulator_factory(tokens="t", solutions=["RR:rebuy_replenishment"], limits=Limits(max_rows_per_request=2))
    r = requests.post(
        f"{emu.url}/api/v2/ingest/object/PRODUCTS",
        json=body([product(), product(), product()], solution="RR"),
        headers={"Authorization": "t"},
        timeout=5,
    )
    assert r.status_code == 413
    assert emu.running
