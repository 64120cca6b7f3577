"""10,000 rows, 10% bad in every way we know, mixed with awkward good rows: every bad row is reported
(resource, key, field, reason) and written to the sink, every good row is stored as sent, and
read = accepted + rejected."""

from __future__ import annotations

import json
import random
from collections import Counter
from typing import Any

from peak_provider.hooks.peak import PeakHook
from peak_provider.rejected import RejectedRowsSink

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
