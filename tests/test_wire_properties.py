"""Property-based tests of the wire format.

- Any row valid for a resource serialises to JSON the emulator accepts, and the values arrive unchanged
  (checked against an independent expectation), over years 1..9999 and text with NULs and any plane.
- Any Python value in any field of any catalogue type, nullable or not, key or not, encodes to that
  field's valid JSON or to a Rejection of that row alone, with a bounded reason and a JSON-safe key;
  through ``ingest()`` such rows are rejected one by one and the load completes.
"""

from __future__ import annotations

import json
import math
import re
import uuid
from datetime import UTC, date, datetime, time, timedelta, timezone
from decimal import Decimal
from functools import cache
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from peak_provider.connection import parse_zone
from peak_provider.hooks.peak import PeakHook
from peak_provider.resources import FIELD_TYPES, TIMESTAMP_FORMATS, Field, Resource, get_application
from peak_provider.result import Rejection
from peak_provider.wire import RowEncoder

TEXT = st.text(st.characters(exclude_categories=("Cs",)), max_size=60)  # NUL and every plane; no surrogate
NAIVE = st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30))  # +-14 h stays in range
ZONES = st.sampled_from(
    [UTC, timezone(timedelta(hours=14)), timezone(timedelta(hours=5, minutes=30)), timezone(-timedelta(hours=12))]
)
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
        return st.dates().map(lambda d: (d, d.isoformat()))
    if kind == "timestamp":
        naive = NAIVE.map(lambda dt: (dt, wire_text(dt, fmt)))
        aware = st.tuples(NAIVE, ZONES).map(
            lambda p: (p[0].replace(tzinfo=p[1]), wire_text(p[0].replace(tzinfo=p[1]).astimezone(UTC), fmt))
        )
        return st.one_of(naive, aware)
    raise AssertionError(kind)


def wire_text(utc: datetime, fmt: str) -> str:
    """A UTC datetime in a wire format, written independently of the encoder (strftime drops the zeros of year 99)."""
    text = f"{utc.year:04d}-{utc.month:02d}-{utc.day:02d} {utc.hour:02d}:{utc.minute:02d}:{utc.second:02d}"
    return {"YYYY-MM-DDTHH:MM:SSZ": text.replace(" ", "T") + "Z", "YYYY-MM-DD HH:MM:SS+00:00": text + "+00:00"}.get(
        fmt, text
    )


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
@pytest.mark.slow  # cost: 60 examples, each a load into the emulator
def test_inventory_rows_round_trip(peak_emulator, monkeypatch, pairs):
    check(peak_emulator, monkeypatch, "INV_OOTB", "inventory", "customer_orders", pairs)


@PROPERTY_SETTINGS
@given(rows_for("b2c_pricing", "purchase_order"))
@pytest.mark.slow  # cost: 60 examples, each a load into the emulator
def test_b2c_rows_round_trip(peak_emulator, monkeypatch, pairs):
    check(peak_emulator, monkeypatch, "QP_OOTB", "b2c_pricing", "purchase_order", pairs)


@PROPERTY_SETTINGS
@given(rows_for("b2c_pricing", "sale"))
@pytest.mark.slow  # cost: 60 examples, each a load into the emulator
def test_sale_rows_round_trip(peak_emulator, monkeypatch, pairs):
    check(peak_emulator, monkeypatch, "QP_OOTB", "b2c_pricing", "sale", pairs)


# --- any value in any field ------------------------------------------------------------------------------

ZONE_NAMES = ("UTC", "America/New_York", "Asia/Tokyo", "Pacific/Kiritimati", "Australia/Lord_Howe")
TZINFOS = [ZoneInfo(z) for z in ZONE_NAMES] + [
    UTC,
    timezone(timedelta(hours=23, minutes=59)),
    timezone(-timedelta(hours=23)),
]
EDGES = [
    datetime.min,
    datetime(1, 1, 1, 12),
    datetime(9999, 12, 31, 12),
    datetime.max,
    datetime(9999, 12, 31, 23, 59, 59),
]
DST_DAYS = [datetime(2025, 3, 9), datetime(2025, 11, 2), datetime(2025, 4, 6), datetime(2025, 10, 5)]  # NY, Lord Howe


class Unprintable:
    """Neither str() nor repr() works."""

    def __str__(self) -> str:
        raise ValueError("no str")

    def __repr__(self) -> str:
        raise RuntimeError("no repr")


class SurrogateRepr:
    """A repr that is not valid Unicode text, and a huge one."""

    def __repr__(self) -> str:
        return "\udc80" * 100_000


class TextWithBrokenMethods(str):
    def strip(self, chars: Any = None) -> str:
        raise LookupError("strip")

    def lower(self) -> str:
        raise LookupError("lower")


class FloatWithBrokenFloat(float):
    def __float__(self) -> float:
        raise ArithmeticError("float")

    def is_integer(self) -> bool:
        raise ArithmeticError("is_integer")


def _cycle() -> list[Any]:
    loop: list[Any] = []
    loop.append(loop)
    return loop


EDGE_DATETIMES = st.tuples(st.sampled_from(EDGES), st.sampled_from([None, *TZINFOS])).map(
    lambda p: p[0].replace(tzinfo=p[1])
)
DST_DATETIMES = st.tuples(st.sampled_from(DST_DAYS), st.integers(0, 36 * 60), st.integers(0, 1)).map(
    lambda p: (p[0] + timedelta(minutes=p[1])).replace(fold=p[2])
)
DATETIMES = st.one_of(
    st.datetimes(),
    st.datetimes(timezones=st.sampled_from(TZINFOS)),
    EDGE_DATETIMES,
    DST_DATETIMES,
    st.datetimes().map(lambda d: d.replace(microsecond=d.microsecond or 1)),
)
EXTREME_NUMBERS = st.one_of(
    st.sampled_from([2**63 - 1, 2**63, -(2**63), -(2**63) - 1, 10**308, 10**400, True, False]),
    st.sampled_from([4_301, 5_000]).map(lambda digits: 10**digits),  # past Python's int-to-str limit
    st.sampled_from([math.nan, math.inf, -math.inf, -0.0, 0.0, 5e-324, 1.7976931348623157e308, 1e19]),
    st.sampled_from(
        [
            Decimal(d)
            for d in (
                "1E-400",
                "-1E-400",
                "1E+400",
                "NaN",
                "sNaN",
                "-Infinity",
                "-0",
                "0E-500",
                "2E-324",
                "5E-324",
                "1.8E+308",
                "1E+19",
                "1E+999999999",
                "2.50",
            )
        ]
    ),
)
NUMBERS = st.one_of(st.integers(), st.floats(), st.decimals(), EXTREME_NUMBERS)
SURROGATES = st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF)
ODD_TEXTS = st.text(st.one_of(st.characters(), SURROGATES, st.just("\x00")), min_size=1, max_size=40)
TEXTS = st.one_of(
    st.text(st.characters(exclude_categories=()), max_size=40),  # surrogates and NUL included
    ODD_TEXTS,
    st.sampled_from(["\ud800", "a\x00b", "x" * 300_000, "\U0010ffff", "2025-03-09 02:30:00", " true ", "12"]),
    DATETIMES.map(lambda d: d.isoformat()),
    st.dates().map(date.isoformat),
)
BYTES = st.one_of(
    st.binary(max_size=40),
    st.binary(max_size=40).map(bytearray),
    st.binary(max_size=40).map(memoryview),
    st.just(b"\x00\x01" * 150_000),
)
SCALARS = st.one_of(
    st.none(), st.booleans(), NUMBERS, TEXTS, BYTES, DATETIMES, st.dates(), st.times(), st.timedeltas(), st.uuids()
)
CONTAINERS = st.recursive(
    SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.tuples(inner, inner),
        st.dictionaries(st.one_of(TEXTS, st.integers(), st.none()), inner, max_size=3),
        st.frozensets(st.integers(), max_size=3),
    ),
    max_leaves=6,
)
HOSTILE = st.sampled_from(
    [
        Unprintable,
        SurrogateRepr,
        lambda: TextWithBrokenMethods("2025-01-01"),
        lambda: FloatWithBrokenFloat(1.0),
        _cycle,
        object,
        lambda: [1] * 100_000,
    ]
).map(lambda make: make())
ANY_VALUE = st.one_of(SCALARS, CONTAINERS, HOSTILE)

ROLES = ("nullable", "not null", "primary key")
TIMESTAMP_PATTERNS = {
    "YYYY-MM-DD HH:MM:SS": r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d",
    "YYYY-MM-DDTHH:MM:SSZ": r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ",
    "YYYY-MM-DD HH:MM:SS+00:00": r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\+00:00",
}


@cache
def encoder_for(kind: str, role: str, fmt: str, zone: str) -> RowEncoder:
    """A one-field resource ("v", of ``kind`` in ``role``) keyed by "id"."""
    field = Field("v", kind, required=role != "nullable", nullable=role == "nullable")
    key = ("id", "v") if role == "primary key" else ("id",)
    probe = Resource("probe", "PROBE", (Field("id", "string", True, False), field), key, (), "UPSERT", "test")
    return RowEncoder(probe, fmt, source_zone=parse_zone(zone))


def utc_of(value: datetime, zone: str) -> datetime | None:
    """What zoneinfo makes of a datetime in UTC (None: outside years 1..9999): the oracle for timestamps."""
    try:
        return (value if value.tzinfo else value.replace(tzinfo=ZoneInfo(zone))).astimezone(UTC)
    except OverflowError:
        return None


def check_sent(kind: str, fmt: str, zone: str, value: Any, sent: Any) -> None:
    """The value the API reads back is a sensible reading of ``value`` for a field of ``kind``."""
    if kind == "string":
        assert isinstance(sent, str)
        if isinstance(value, str):
            assert sent == str.__str__(value)
    elif kind == "integer":
        assert type(sent) is int and -(2**63) <= sent < 2**63 and sent == value
    elif kind == "float":
        assert type(sent) in (int, float) and math.isfinite(sent)
        assert (sent == 0) == (value == 0), (value, sent)  # never a non-zero value read as 0, nor the reverse
        if isinstance(value, float | int):
            assert sent == value
    elif kind == "boolean":
        assert type(sent) is bool
    elif kind == "date":
        assert isinstance(sent, str) and date.fromisoformat(sent).isoformat() == sent
    elif kind == "timestamp":
        assert isinstance(sent, str) and re.fullmatch(TIMESTAMP_PATTERNS[fmt], sent), sent
        if type(value) is datetime:
            utc = utc_of(value, zone)
            assert utc is not None and sent == wire_text(utc, fmt), (value, sent)


#: What a warehouse most likely puts in a field of each type: drawn half the time, any value the other half.
LIKELY = {
    "string": st.one_of(ODD_TEXTS, TEXTS),
    "integer": st.one_of(EXTREME_NUMBERS, NUMBERS),
    "float": st.one_of(EXTREME_NUMBERS, NUMBERS),
    "boolean": st.one_of(st.booleans(), NUMBERS, TEXTS),
    "date": st.one_of(st.dates(), DATETIMES, TEXTS),
    "timestamp": st.one_of(DATETIMES, EDGE_DATETIMES, DST_DATETIMES, st.dates(), TEXTS),
    "json": st.one_of(CONTAINERS, ODD_TEXTS.map(lambda text: {text: [text]})),
}


@pytest.mark.parametrize("kind", FIELD_TYPES)
@settings(max_examples=300, deadline=None)
@given(
    data=st.data(),
    role=st.sampled_from(ROLES),
    fmt=st.sampled_from(TIMESTAMP_FORMATS),
    zone=st.sampled_from(ZONE_NAMES),
)
def test_any_value_in_any_field_is_valid_json_or_a_rejection_of_its_row(kind, data, role, fmt, zone):
    value = data.draw(st.one_of(LIKELY[kind], ANY_VALUE), label="value")
    encoder = encoder_for(kind, role, fmt, zone)
    row = {"id": "R1", "v": value}
    out = encoder.encode(row, encoder.plan(tuple(row), positional=False))
    if isinstance(out, Rejection):
        assert out.field == "v" and out.reason.startswith("probe: ") and len(out.reason) <= 300, out.reason
        out.reason.encode("utf-8")
        key_text = json.dumps(out.key, ensure_ascii=False, allow_nan=False)
        assert len(key_text.encode("utf-8")) <= 1_000 and json.loads(key_text)["id"] == "R1"
        if kind == "timestamp" and type(value) is datetime:
            assert utc_of(value, zone) is None  # rejected only when its UTC instant is outside years 1..9999
        return
    assert value is not None or role == "nullable"
    sent = json.loads(out.decode("utf-8"))  # strict UTF-8: no surrogate got through
    assert set(sent) == {"id", "v"} and sent["id"] == "R1"
    if value is not None:
        check_sent(kind, fmt, zone, value, sent["v"])


@pytest.mark.parametrize("kind", FIELD_TYPES)
@pytest.mark.parametrize("role", ROLES)
def test_every_field_type_and_role_meets_hostile_values(kind, role):
    """The fixed worst cases for every type and role (the property above samples them at random)."""
    fmt, zone = "YYYY-MM-DDTHH:MM:SSZ", "America/New_York"
    encoder = encoder_for(kind, role, fmt, zone)
    hostile = [
        "\ud800", b"\x00" * 5_242_880, memoryview(b"\x00\x01"), Decimal("1E-400"), Decimal("sNaN"), 10**5000,
        math.nan, datetime(9999, 12, 31, 23, 59, 59), datetime(1, 1, 1, tzinfo=ZoneInfo("Asia/Tokyo")),
        Unprintable(), SurrogateRepr(), TextWithBrokenMethods("x"), FloatWithBrokenFloat(2.0), _cycle(),
        {"k": "\udc80"}, uuid.UUID(int=0), time(12), object(),
    ]  # fmt: skip
    for value in hostile:
        out = encoder.encode({"id": "R1", "v": value}, encoder.plan(("id", "v"), positional=False))
        if isinstance(out, Rejection):
            assert out.field == "v" and len(out.reason) <= 300, (value, out.reason)
            json.dumps(out.key, ensure_ascii=False, allow_nan=False).encode("utf-8")
        else:
            check_sent(kind, fmt, zone, value, json.loads(out.decode("utf-8"))["v"])


SALE = get_application("b2c_pricing").resource("sale")


@PROPERTY_SETTINGS
@given(st.lists(st.tuples(st.sampled_from([f.name for f in SALE.fields]), ANY_VALUE), min_size=1, max_size=8))
def test_hostile_values_through_ingest_reject_only_their_rows(peak_emulator, monkeypatch, spoilers):
    """Good sale rows, some spoilt by one arbitrary value: the load completes, every row is accepted or
    rejected once, and good rows are stored."""
    peak_emulator.reset()
    monkeypatch.setenv(
        "AIRFLOW_CONN_PEAK_DEFAULT", peak_emulator.connection_json("QP_OOTB", source_timezone="America/New_York")
    )
    rows = [{"location_id": f"L{i}", "product_id": "P", "sold_at": datetime(2025, 3, 9, 2, 30)} for i in range(12)]
    for i, (name, value) in enumerate(spoilers):
        rows[i][name] = value
    rejected: list[Rejection] = []
    result = PeakHook().upsert("sale", rows, on_rejected=rejected.append)
    assert result.rows_read == 12 == result.rows_accepted + result.rows_rejected
    assert len(rejected) == result.rows_rejected <= len(spoilers)
    names = {f.name for f in SALE.fields}
    for rejection in rejected:  # the API's own reasons (code DI_E_...) are cut at 500 by the hook
        assert len(rejection.reason) <= (300 if rejection.code is None else 600), rejection.reason
        assert rejection.field is None or rejection.field in names
        json.dumps(rejection.summary(), ensure_ascii=False, allow_nan=False).encode("utf-8")
    stored = {r["location_id"] for r in peak_emulator.rows("QP_SALE_OOTB")}
    assert {f"L{i}" for i in range(len(spoilers), 12)} <= stored
    assert len(stored) <= result.rows_accepted  # a spoilt key may equal another row's: UPSERT merges them
