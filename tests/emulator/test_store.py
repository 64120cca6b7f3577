"""UPSERT (replace or merge) vs APPEND vs dryRun, and a file-backed store."""

from __future__ import annotations

import json
import sqlite3

import pytest

from peak_provider.emulator import Emulator
from tests.emulator.helpers import PRODUCTS, product


def test_upsert_replaces_the_whole_row_by_default(api):
    assert api.emulator.upsert == "replace"
    api.ingest([product(product_name="Widget", product_description="blue")])
    api.ingest([product(pack_size=6)])  # product_name and product_description not sent
    assert api.emulator.rows(PRODUCTS) == [product(pack_size=6)]


def test_upsert_merge_overwrites_only_the_sent_columns(peak_emulator_factory, make_api):
    emu = peak_emulator_factory(upsert="merge")
    api = make_api(emu)
    api.ingest([product(product_name="Widget", product_description="blue"), product(product_id="P2")])
    r = api.ingest([product(pack_size=6), product(product_id="P3", product_name="new")])
    assert r.json()["accepted"] == 2
    assert emu.rows(PRODUCTS) == [
        product(product_id="P2"),
        product(pack_size=6, product_name="Widget", product_description="blue"),  # moved to the end, merged
        product(product_id="P3", product_name="new"),  # no stored row: stored as sent
    ]
    api.ingest([product(product_name=None)])  # a null that is sent is written (pack_size 12 is sent too)
    assert emu.rows(PRODUCTS)[-1] == product(product_name=None, product_description="blue")


def test_upsert_merge_within_one_batch_and_over_appended_duplicates(peak_emulator_factory, make_api):
    emu = peak_emulator_factory(upsert="merge")
    api = make_api(emu)
    appended = [product(product_name="first", minimum_order_quantity=1), product(minimum_order_quantity=2)]
    api.ingest(appended, op="APPEND")
    # rows of one request merge in order, over the latest stored row of the key; one row remains
    api.ingest([product(product_description="a", product_name="batch"), product(product_description="b")])
    assert emu.rows(PRODUCTS) == [product(product_name="batch", product_description="b", minimum_order_quantity=2)]


def test_upsert_merge_applies_to_upserts_only(peak_emulator_factory, make_api):
    emu = peak_emulator_factory(upsert="merge")
    api = make_api(emu)
    api.ingest([product(product_name="Widget")])
    api.ingest([product()], op="APPEND")
    api.ingest([product(product_id="P2")], dryRun=True)
    assert emu.rows(PRODUCTS) == [product(product_name="Widget"), product()]


def test_unknown_upsert_mode_is_refused():
    with pytest.raises(ValueError, match="UPSERT mode 'patch'"):
        Emulator(upsert="patch")


def test_upsert_replaces_by_primary_key(api):
    api.ingest([product(pack_size=1), product(product_id="P2")])
    r = api.ingest([product(pack_size=2, product_name="new")])
    assert r.json()["status"] == "SUCCESS"
    rows = api.emulator.rows(PRODUCTS)
    assert rows == [product(product_id="P2"), product(pack_size=2, product_name="new")]


def test_upsert_key_includes_every_primary_key_part(api):
    # products' key is (product_id, updated_at): a new updated_at is a new row
    api.ingest([product(updated_at="2025-01-15 08:00:00")])
    api.ingest([product(updated_at="2025-01-16 08:00:00")])
    assert len(api.emulator.rows(PRODUCTS)) == 2


def test_upsert_within_one_batch_keeps_the_last_row(api):
    api.ingest([product(pack_size=1), product(pack_size=2)])
    assert api.emulator.rows(PRODUCTS) == [product(pack_size=2)]


def test_append_keeps_duplicates(api):
    for _ in range(2):
        assert api.ingest([product()], op="APPEND").json()["operationType"] == "APPEND"
    assert api.emulator.rows(PRODUCTS) == [product(), product()]


def test_rows_come_back_in_insertion_order_with_the_values_sent(api):
    rows = [product(product_id=f"P{i}", product_name="Ünïcødé ✓", minimum_order_quantity=i) for i in range(5)]
    api.ingest(rows, op="APPEND")
    assert api.emulator.rows(PRODUCTS) == rows


def test_dry_run_validates_but_writes_nothing(api):
    r = api.ingest([product(), product(product_id="P2", pack_size="bad")], dryRun=True)
    result = r.json()
    assert result["dryRun"] is True
    assert (result["status"], result["accepted"], len(result["failed"])) == ("PARTIAL_SUCCESS", 1, 1)
    assert api.emulator.rows(PRODUCTS) == []
    assert api.emulator.failed_rows(PRODUCTS) == []
    assert api.emulator.stats()["rows_accepted"] == 0


def test_dry_run_false_is_a_normal_load(api):
    assert api.ingest([product()], dryRun=False).json()["dryRun"] is False
    assert api.emulator.rows(PRODUCTS) == [product()]


def test_file_backed_store_persists_across_restarts(tmp_path, make_api):
    db = str(tmp_path / "peak.sqlite")
    with Emulator(tokens="t", db=db) as emu:
        api = make_api(emu)
        api.ingest([product(), product(product_id="P2", pack_size=None)])
    with sqlite3.connect(db) as conn:
        stored = [json.loads(d) for (d,) in conn.execute(f'SELECT data FROM "{PRODUCTS}" ORDER BY seq')]
        failed = conn.execute(f'SELECT COUNT(*) FROM "{PRODUCTS}_failed_rows"').fetchone()[0]
    assert stored == [product()] and failed == 1
    with Emulator(tokens="t", db=db) as again:
        assert again.rows(PRODUCTS) == [product()]
        make_api(again).ingest([product(product_id="P3")])
        assert [r["product_id"] for r in again.rows(PRODUCTS)] == ["P1", "P3"]
        again.reset()
        assert again.rows(PRODUCTS) == [] and again.failed_rows(PRODUCTS) == []
