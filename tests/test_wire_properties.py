"""Property-based tests of the wire format: any row valid for a resource serialises to JSON the emulator
accepts, and the values arrive unchanged (checked against an independent expectation)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from peak_provider.hooks.peak import PeakHook
from peak_provider.resources import get_application

TEXT = st.text(st.characters(blacklist_categories=("Cs",)), max_size=60)
NAIVE = st.datetimes(min_value=datetime(1970, 1, 2), max_value=datetime(2200, 1, 1))
ZONES = st.sampled_from([UTC, timezone(timedelta(hours=5, minutes=30)), timezone(timedelta(hours=-8))])
INTS = st.integers(min_value=-(2**53), max_value=2**53)
FLOATS = st.floats(allow_nan=False, allow_infinity=False, width=64)
DECIMALS = st.decimals(allow_nan=False, allow_infinity=False, places=2, min_value=-(10**9), max_value=10**9)


def value_and_expected(kind: str, fmt: str) -> st.SearchStrategy[tuple[Any, Any]]:
    """(what a DB driver returns, what the API must receive) for a catalogue type."""
    if kind == "string":
        return TEXT.map(lambda s: (s, s))
    if kind == "integer":
        return st.one_of(
            INTS.map(lambda i: (i, i)),
            INTS.map(lambda i: (Decimal(i), i)),
            INTS.map(lambda i: (float(i), i) if abs(i) < 2**53 else (i, i)),
        )
    if kind == "float":
        return st.one_of(FLOATS.map(lambda f: (f, f)), DECIMALS.map(lambda d: (d, float(d))))
    if kind == "boolean":
        return st.booleans().map(lambda b: (b, b))
    if kind == "date":
        return st.dates(min_value=date(1970, 1, 1), max_value=date(2200, 1, 1)).map(
            lambda d: (d, d.strftime("%Y-%m-%d"))
        )
    if kind == "timestamp":
        pattern = "%Y-%m-%dT%H:%M:%SZ" if fmt.endswith("Z") else "%Y-%m-%d %H:%M:%S"
        naive = NAIVE.map(lambda dt: (dt, dt.strftime(pattern)))
        aware = st.tuples(NAIVE, ZONES).map(
            lambda p: (p[0].replace(tzinfo=p[1]), p[0].replace(tzinfo=p[1]).astimezone(UTC).strftime(pattern))
        )
        return st.one_of(naive, aware)
    raise AssertionError(kind)


def rows_for(app: str, resource: str) -> st.SearchStrategy[list[tuple[dict, dict]]]:
    res = get_application(app).resource(resource)
    fmt = get_application(app).timestamp_format

    def one(index: int) -> st.SearchStrategy[tuple[dict, dict]]:
        fields = {}
        for f in res.fields:
            strategy = value_and_expected(f.type, fmt)
            if f.name in res.primary_key and f.type == "string":
                strategy = st.just((f"K{index}", f"K{index}"))  # unique keys: UPSERT would merge duplicates
            elif f.nullable and f.name not in res.primary_key:
                strategy = st.one_of(st.just((None, None)), strategy)
            fields[f.name] = (
                strategy if f.required or f.name in res.primary_key else st.one_of(strategy, st.just("omit"))
            )
        return st.fixed_dictionaries(fields).map(
            lambda d: (
                {k: v[0] for k, v in d.items() if v != "omit"},
                {k: v[1] for k, v in d.items() if v != "omit"},
            )
        )

    return st.integers(1, 8).flatmap(lambda n: st.tuples(*[one(i) for i in range(n)]).map(list))


def check(peak_emulator, monkeypatch, solution: str, app: str, resource: str, pairs: list[tuple[dict, dict]]) -> None:
    peak_emulator.reset()
    monkeypatch.setenv("AIRFLOW_CONN_PEAK_DEFAULT", peak_emulator.connection_json(solution))
    hook = PeakHook()
    result = hook.upsert(resource, [row for row, _ in pairs])
    assert result.rows_rejected == 0, result.rejected_sample
    stored = peak_emulator.rows(hook.object_name(resource))
    key = get_application(app).resource(resource).primary_key
    by_key = {tuple(str(r[k]) for k in key): r for r in stored}
    expected = {tuple(str(e[k]) for k in key): e for _, e in pairs}
    assert by_key == expected


PROPERTY_SETTINGS = settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@PROPERTY_SETTINGS
@given(rows_for("inventory", "customer_orders"))
def test_inventory_rows_round_trip(peak_emulator, monkeypatch, pairs):
    check(peak_emulator, monkeypatch, "INV_OOTB", "inventory", "customer_orders", pairs)


@PROPERTY_SETTINGS
@given(rows_for("b2c_pricing", "purchase_order"))
def test_b2c_rows_round_trip(peak_emulator, monkeypatch, pairs):
    check(peak_emulator, monkeypatch, "QP_OOTB", "b2c_pricing", "purchase_order", pairs)


@PROPERTY_SETTINGS
@given(rows_for("b2c_pricing", "sale"))
def test_sale_rows_round_trip(peak_emulator, monkeypatch, pairs):
    check(peak_emulator, monkeypatch, "QP_OOTB", "b2c_pricing", "sale", pairs)
