"""10,000 rows, 10% bad in every way we know, mixed with awkward good rows: every bad row is reported
(resource, key, field, reason) and written to the sink, every good row is stored as sent, and
read = accepted + rejected."""

from __future__ import annotations

import json
import random
from collections import Counter
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest

from peak_provider.hooks.peak import PeakHook
from peak_provider.rejected import MAX_VALUE_CHARS, RejectedRowsSink
from peak_provider.result import Rejection

GOOD_NAMES = [
    'Café "Zürich" — ünïcödé',
    "emoji 🚀🧪👩‍🔬",
    "quote ' and \" and \\ backslash",
    "x" * 20_000,
    "",
    "line\nbreak\ttab",
]

# kind -> (how to spoil a good row, the field blamed, words in the reason, rejected by the API rather than the client)
BAD: dict[str, tuple[Any, str | None, str, bool]] = {
    "missing required field": (
        lambda r: r.pop("source_id"),
        "source_id",
        "required field 'source_id' is missing",
        False,
    ),
    "null primary-key part": (lambda r: r.update(product_id=None), "product_id", "primary-key part is null", False),
    "wrong type": (lambda r: r.update(pack_size="twelve"), "pack_size", "expected an integer", False),
    "2.5 in an integer field": (lambda r: r.update(pack_size=2.5), "pack_size", "2.5 is not an integer", False),
    "NaN": (lambda r: r.update(pack_size=float("nan")), "pack_size", "nan is not a finite number", False),
    "unparseable timestamp": (lambda r: r.update(updated_at="31/02/2025 25:61"), "updated_at", "cannot parse", False),
    "row over the byte limit": (
        lambda r: r.update(product_description="y" * 1_100_000),
        None,
        "over max_request_bytes",
        False,
    ),
    "unknown column": (lambda r: r.update(colour="red"), "colour", "unknown column 'colour'", False),
    "rejected by the API": (lambda r: r.update(product_name="z" * 70_000), "product_name", "rejected by the API", True),
}


def build_rows(n: int, seed: int = 7) -> tuple[list[dict[str, Any]], dict[str, str]]:
    rng = random.Random(seed)
    rows, bad_kind = [], {}
    kinds = list(BAD)
    for i in range(n):
        row = {
            "product_id": f"P{i:05d}",
            "product_name": GOOD_NAMES[i % len(GOOD_NAMES)],
            "source_id": f"S{i % 9}",
            "pack_size": 1 + i % 24,
            "updated_at": f"2025-03-01 {i % 24:02d}:{i % 60:02d}:00",
        }
        if rng.random() < 0.10:
            kind = kinds[len(bad_kind) % len(kinds)]
            BAD[kind][0](row)
            bad_kind[f"P{i:05d}"] = kind  # (the null-key rows lose this id in the row itself)
        rows.append(row)
    return rows, bad_kind


@pytest.mark.slow
def test_every_bad_row_is_reported_and_every_good_row_stored(peak_emulator, monkeypatch, tmp_path):
    monkeypatch.setenv("AIRFLOW_CONN_PEAK_DEFAULT", peak_emulator.connection_json("INV_OOTB"))
    rows, bad_kind = build_rows(10_000)
    assert 900 <= len(bad_kind) <= 1100 and set(bad_kind.values()) == set(BAD)
    sink = RejectedRowsSink(str(tmp_path / "rejects.jsonl"), "products")
    result = PeakHook().upsert("products", rows, on_rejected=sink.write)
    sink.close()

    assert result.rows_read == 10_000 == result.rows_accepted + result.rows_rejected
    assert result.rows_rejected == len(bad_kind)
    records = [json.loads(line) for line in (tmp_path / "rejects.jsonl").read_text().splitlines()]
    assert len(records) == len(bad_kind)
    seen: Counter[str] = Counter()
    for record in records:
        (kind,) = [k for k, (_, _, words, _) in BAD.items() if words in record["reason"]]
        _, field, _, by_api = BAD[kind]
        assert record["resource"] == "products" and record["reason"].startswith("products:")
        assert record["field"] == field, (kind, record["field"])
        assert (record["code"] or "").startswith("DI_E_") == by_api, (kind, record["code"])
        key = record["key"]["product_id"]
        assert key is None if kind == "null primary-key part" else bad_kind[key] == kind
        seen[kind] += 1
    assert seen == Counter(bad_kind.values())

    stored = {r["product_id"]: r for r in peak_emulator.rows("INV_PRODUCTS_OOTB")}
    good = {r["product_id"]: r for r in rows if r["product_id"] is not None and r["product_id"] not in bad_kind}
    assert set(stored) == set(good)
    for pid, row in good.items():
        assert stored[pid] == row  # unicode, emoji, quotes, 20k-character strings: values preserved


# Values that once killed a whole load or made its summary huge: (field, value, words in the reason).
HOSTILE_VALUES: dict[str, tuple[str, Any, str]] = {
    "surrogate": ("customer_id", "caf\udce9", "lone surrogate (U+DCE9)"),
    "SCD2 placeholder": ("updated_at", datetime(9999, 12, 31, 23, 59, 59), "outside years 1..9999"),
    "5 MB BLOB": ("sale_id", bytes(range(256)) * 20_480, "expected a string, got bytes of 5,242,880 bytes"),
    "1E-400": ("demand_value", Decimal("1E-400"), "a double reads it as 0"),
}


def test_hostile_values_reject_their_rows_alone(peak_emulator, monkeypatch, tmp_path):
    """Good sale rows mixed with one bad row of each kind (source_timezone America/New_York): each bad row
    is rejected once with a bounded reason, the good rows are stored, and neither the sink nor the summary
    carries the 5 MB value."""
    conn = peak_emulator.connection_json("QP_OOTB", source_timezone="America/New_York")
    monkeypatch.setenv("AIRFLOW_CONN_PEAK_DEFAULT", conn)
    rows: list[dict[str, Any]] = []
    for i in range(40):
        row = {
            "location_id": f"L{i:02d}",
            "product_id": "P1",
            "sold_at": datetime(2025, 3, 9, 2, 30),  # in New York's spring-forward gap: sent, and counted
            "customer_id": "Zoë 🚀 \x00",
            "sale_id": f"S{i}",
            "demand_value": Decimal("12.50"),
            "updated_at": datetime(2025, 3, 9, 12, 0, 0, 250_000, tzinfo=UTC),
        }
        rows.append(row)
    bad_at = {10 * n + 3: kind for n, kind in enumerate(HOSTILE_VALUES)}
    for index, kind in bad_at.items():
        field, value, _ = HOSTILE_VALUES[kind]
        rows[index][field] = value
    sink = RejectedRowsSink(str(tmp_path / "rejects.jsonl"), "sale")
    result = PeakHook().upsert("sale", rows, on_rejected=sink.write)
    sink.close()

    assert (result.rows_read, result.rows_accepted, result.rows_rejected) == (40, 36, 4)
    reasons = {s["key"]["location_id"]: s for s in result.rejected_sample}
    assert set(reasons) == {f"L{i:02d}" for i in bad_at}
    for index, kind in bad_at.items():
        field, _, words = HOSTILE_VALUES[kind]
        rejected = reasons[f"L{index:02d}"]
        assert rejected["field"] == field and words in rejected["reason"] and len(rejected["reason"]) <= 300, kind
        assert rejected["key"] == {"location_id": f"L{index:02d}", "product_id": "P1", "sold_at": "2025-03-09T02:30:00"}
    assert len(json.dumps(result.to_dict())) < 5_000  # what goes to XCom

    stored = {r["location_id"]: r for r in peak_emulator.rows("QP_SALE_OOTB")}
    assert set(stored) == {f"L{i:02d}" for i in range(40) if i not in bad_at}
    assert stored["L00"]["sold_at"] == "2025-03-09T07:30:00Z" and stored["L00"]["customer_id"] == "Zoë 🚀 \x00"
    assert stored["L00"]["updated_at"] == "2025-03-09T12:00:00Z"

    sink_file = tmp_path / "rejects.jsonl"
    assert sink_file.stat().st_size < 100_000
    records = [json.loads(line) for line in sink_file.read_text(encoding="utf-8").splitlines()]
    assert sorted(r["key"]["location_id"] for r in records) == sorted(reasons)
    blob = next(r for r in records if r["field"] == "sale_id")["row"]["sale_id"]
    assert blob.startswith("bytes of 5,242,880 bytes: b'\\x00\\x01") and len(blob) < MAX_VALUE_CHARS + 100
    surrogate = next(r for r in records if r["field"] == "customer_id")
    assert surrogate["row"]["customer_id"] == "caf\udce9" and surrogate["key"]["location_id"] == "L03"


def test_rows_of_a_bad_shape_reject_themselves_alone(peak_emulator, monkeypatch, tmp_path):
    """Rows that are not mappings of column names (``None``, a number, a mapping with a ``None`` or an integer
    key, as records of unnamed columns have, a list holding a list) are rejected one by one; the rows around them are stored, and the
    sink writes each."""
    monkeypatch.setenv("AIRFLOW_CONN_PEAK_DEFAULT", peak_emulator.connection_json("INV_OOTB"))
    good = [
        {"product_id": f"P{i}", "source_id": "S", "pack_size": 1, "updated_at": "2025-03-01 00:00:00"} for i in range(6)
    ]
    bad: list[Any] = [None, 42, {**good[0], None: "x"}, {0: "P9", 1: "S"}, [["P9"], "S"]]
    rows = [good[0], bad[0], good[1], bad[1], good[2], bad[2], good[3], bad[3], good[4], bad[4], good[5]]
    sink = RejectedRowsSink(str(tmp_path / "rejects.jsonl"), "products")
    result = PeakHook().upsert("products", rows, on_rejected=sink.write)
    sink.close()
    assert (result.rows_read, result.rows_accepted, result.rows_rejected) == (11, 6, 5)
    not_a_mapping, not_text = "products: the row is not a mapping", "products: a column name is not text"
    assert [r["reason"] for r in result.rejected_sample] == [
        not_a_mapping,
        not_a_mapping,
        f"{not_text}: NoneType None",
        f"{not_text}: int 0",
        not_a_mapping,  # a sequence, with an unhashable item: not column names
    ]
    assert len((tmp_path / "rejects.jsonl").read_text().splitlines()) == 5
    assert {r["product_id"] for r in peak_emulator.rows("INV_PRODUCTS_OOTB")} == {f"P{i}" for i in range(6)}


class Unprintable:
    def __str__(self) -> str:
        raise ValueError("no str")

    def __repr__(self) -> str:
        raise ValueError("no repr")


def test_the_sink_writes_any_row_and_cuts_huge_values(tmp_path):
    cycle: list[Any] = []
    cycle.append(cycle)
    row = {
        "text": "t" * 50_000,
        "surrogate": "\ud800 \\ \udfff",
        "nul": "a\x00b",
        "blob": memoryview(b"\x01" * 2_000_000),
        "huge_int": 10**5000,
        "nan": float("nan"),
        "unprintable": Unprintable(),
        "cycle": cycle,
        "nested": {"k": ["v" * 30_000]},
        "decimal": Decimal("1.50"),
        "when": datetime(2025, 1, 2, 3, 4, 5),
        7: "a key that is not text",
    }
    sink = RejectedRowsSink(str(tmp_path / "r.jsonl"), "products")
    sink.write(Rejection(key={"product_id": "P\ud800"}, field="text", reason="r", row=row))
    sink.close()
    raw = (tmp_path / "r.jsonl").read_bytes()
    assert len(raw) < 60_000
    (record,) = [json.loads(line) for line in raw.decode("utf-8").splitlines()]  # strict UTF-8
    got = record["row"]
    assert got["text"] == "t" * MAX_VALUE_CHARS + "… [cut: 50,000 characters in all]"
    assert got["surrogate"] == "\ud800 \\ \udfff" and got["nul"] == "a\x00b"  # escaped as JSON \ud800, read back
    assert got["blob"].startswith("memoryview of 2,000,000 bytes: b'\\x01\\x01") and "<memory at" not in got["blob"]
    assert got["huge_int"] == "int of about 5,001 digits" and got["nan"] == "nan"
    assert got["unprintable"].startswith("<Unprintable instance at") and got["cycle"].startswith("list")
    assert got["nested"].startswith('{"k": ["vvv') and got["nested"].endswith("characters in all]")
    assert (got["decimal"], got["when"], got["7"]) == ("1.50", "2025-01-02 03:04:05", "a key that is not text")
    assert record["key"] == {"product_id": "P\ud800"}
