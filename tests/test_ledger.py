"""The missed-window ledger (issue 15): interval arithmetic, what a run is told, concurrent writers, the
multi-window query of ``fill`` on real databases, and the operator's ledger path against the emulator.

The asset state store here is an in-memory stand-in with the accessor interface of Airflow's (get/set by
key per asset name, last writer wins); real Airflow runs are in tests/test_ledger_runs.py.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from peak_provider import ledger as ledger_module
from peak_provider.exceptions import PeakHTTPError, PeakMissedWindowsError, PeakRejectedRowsError
from peak_provider.incremental import add_filter
from peak_provider.ledger import Ledger, intersect, merge, subtract, to_json
from peak_provider.operators.peak import SqlToPeakOperator
from tests.context import MemoryAssetStateStore, alias_events, task_context


@pytest.fixture(autouse=True)
def no_ledger_variables_from_other_tests():
    """Other tests' loads record ledgers too (in Variables, where Airflow 2.11 lets code outside a task
    write them); each test here starts from none."""
    from airflow.models import Variable
    from airflow.utils.session import create_session
    from sqlalchemy.exc import OperationalError

    try:
        with create_session() as session:
            session.query(Variable).filter(Variable.key.like("peak_ledger__%")).delete(synchronize_session=False)
    except OperationalError:  # no metadata database yet in this run: no Variable either
        pass


TARGET = "peak://127.0.0.1:1/INV_OOTB/INV_PRODUCTS_OOTB"


def day(n: int) -> datetime:
    return datetime(2025, 3, 1, tzinfo=UTC) + timedelta(days=n - 1)


def days(a: int, b: int) -> tuple[datetime, datetime]:
    return day(a), day(b)


def ledger(store: MemoryAssetStateStore, task_id: str = "load", target: str = TARGET) -> Ledger:
    return Ledger({"asset_state_store": store}, target, "dag", task_id)


# --- interval arithmetic ---------------------------------------------------------------------------


def test_merge_joins_overlapping_and_adjacent_intervals():
    assert merge([days(3, 4), days(1, 2), days(2, 3), days(6, 8), days(7, 9), days(5, 5)]) == [
        days(1, 4),
        days(6, 9),
    ]


def test_subtract_and_intersect():
    covered = [days(2, 3), days(4, 5)]
    assert subtract(days(1, 6), covered) == [days(1, 2), days(3, 4), days(5, 6)]
    assert subtract(days(2, 3), covered) == []
    assert intersect(days(1, 6), covered) == covered
    assert intersect((day(2) + timedelta(hours=12), day(4) + timedelta(hours=1)), covered) == [
        (day(2) + timedelta(hours=12), day(3)),
        (day(4), day(4) + timedelta(hours=1)),
    ]


# --- what a run is told ----------------------------------------------------------------------------


def test_missing_is_only_between_the_first_recorded_load_and_this_run():
    store = MemoryAssetStateStore()
    assert ledger(store).plan(days(5, 6), policy="warn", operation="UPSERT", serialized=False).missing == []
    ledger(store).record([days(3, 4)])
    earlier = ledger(store).plan(days(1, 2), policy="warn", operation="UPSERT", serialized=False)
    assert earlier.missing == [] and earlier.windows == [days(1, 2)]  # before the first record: nothing
    plan = ledger(store).plan(days(6, 7), policy="warn", operation="UPSERT", serialized=False)
    assert plan.missing == [days(4, 6)] and plan.windows == [days(6, 7)]
    assert plan.report() == {"missing_intervals": to_json([days(4, 6)])}


def test_the_user_path_of_the_issue_reports_exactly_the_never_loaded_window(caplog):
    """dags test on D2 and D3 (intervals ending there), then backfill D1..D5 (intervals starting there)."""
    store = MemoryAssetStateStore()
    for window in (days(1, 2), days(2, 3)):
        ledger(store).record([window])
    assert ledger(store).plan(days(1, 2), policy="warn", operation="UPSERT", serialized=True).missing == []
    ledger(store).record([days(1, 2)])
    with caplog.at_level("WARNING", logger="peak_provider.ledger"):
        plan = ledger(store).plan(days(4, 5), policy="warn", operation="UPSERT", serialized=True)
    assert plan.missing == [days(3, 4)]
    assert "[2025-03-03 00:00:00, 2025-03-04 00:00:00) UTC were never loaded" in caplog.text


def test_fail_names_the_missing_windows_and_how_to_load_them():
    store = MemoryAssetStateStore()
    ledger(store).record([days(1, 2)])
    with pytest.raises(PeakMissedWindowsError, match=r"Never loaded: \[2025-03-02 00:00:00, 2025-03-03") as failure:
        ledger(store).plan(days(3, 4), policy="fail", operation="UPSERT", serialized=True)
    assert "missed_windows='fill'" in str(failure.value) and "nothing was read or sent" in str(failure.value)


def test_fill_loads_each_missing_window_but_not_the_loaded_ones_between():
    store = MemoryAssetStateStore()
    ledger(store).record([days(1, 2), days(3, 4)])
    plan = ledger(store).plan(days(5, 6), policy="fill", operation="UPSERT", serialized=True)
    assert plan.filled == plan.missing == [days(2, 3), days(4, 5)]
    assert plan.windows == [days(2, 3), days(4, 6)]  # [3, 4) was loaded: not sent again
    ledger(store).record(plan.windows)
    assert ledger(store).loaded() == [days(1, 6)]


def test_overlaps_are_reported_under_append_only():
    store = MemoryAssetStateStore()
    ledger(store).record([days(1, 3)])
    upsert = ledger(store).plan(days(2, 3), policy="fail", operation="UPSERT", serialized=True)
    assert upsert.overlapping == [] and "overlapping_intervals" not in upsert.report()
    append = ledger(store).plan(days(2, 4), policy="warn", operation="APPEND", serialized=True)
    assert append.report()["overlapping_intervals"] == to_json([days(2, 3)])
    with pytest.raises(PeakMissedWindowsError, match="appends those rows twice"):
        ledger(store).plan(days(2, 4), policy="fail", operation="APPEND", serialized=True)


def test_each_task_and_each_target_has_its_own_ledger():
    store = MemoryAssetStateStore()
    ledger(store, "a").record([days(1, 2), days(2, 3)])
    ledger(store, "b").record([days(1, 2)])
    ledger(store, "a", target="peak://other/S/O").record([days(5, 6)])
    assert ledger(store, "a").plan(days(3, 4), policy="warn", operation="UPSERT", serialized=True).missing == []
    assert ledger(store, "b").plan(days(3, 4), policy="warn", operation="UPSERT", serialized=True).missing == [
        days(2, 3)
    ]
    assert ledger(store, "a").loaded() == [days(1, 3)]


def test_a_variable_record_is_read_with_the_asset_record_and_only_for_its_target(monkeypatch):
    """Before the alias's asset can hold state, runs record in the Variable; reads take both."""
    value = {TARGET: to_json([days(1, 2)]), "peak://other/S/O": to_json([days(1, 9)])}
    monkeypatch.setenv("AIRFLOW_VAR_PEAK_LEDGER__DAG__LOAD", json.dumps(value))
    store = MemoryAssetStateStore()
    ledger(store).record([days(3, 4)])
    assert ledger(store).loaded() == [days(1, 2), days(3, 4)]
    assert ledger(store).plan(days(4, 5), policy="warn", operation="UPSERT", serialized=True).missing == [days(2, 3)]


def test_a_malformed_record_is_ignored_with_a_warning(caplog):
    store = MemoryAssetStateStore()
    store[TARGET].set("peak_ledger__dag__load", [["not a time", "2025-03-02T00:00:00+00:00"], 7])
    with caplog.at_level("WARNING", logger="peak_provider.ledger"):
        assert ledger(store).loaded() == []
    assert "malformed ledger entry" in caplog.text


def test_the_record_stays_bounded(monkeypatch, caplog):
    monkeypatch.setattr(ledger_module, "MAX_INTERVALS", 3)
    store = MemoryAssetStateStore()
    for n in range(1, 10, 2):
        ledger(store).record([days(n, n + 1)])
    with caplog.at_level("WARNING", logger="peak_provider.ledger"):
        ledger(store).record([days(11, 12)])
    assert len(store.values[TARGET]["peak_ledger__dag__load"]) == 3
    assert "forgetting the oldest" in caplog.text


def test_long_ids_give_keys_the_stores_accept():
    long = Ledger({}, TARGET, "d" * 250, "t" * 250)
    assert len(long.key) <= 400 and len(long.variable_key) <= 250
    assert long.key != Ledger({}, TARGET, "d" * 250, "u" * 250).key


# --- concurrent writers ----------------------------------------------------------------------------


def test_runs_finishing_at_the_same_moment_lose_no_interval():
    store = MemoryAssetStateStore(delay=0.01)  # every get and set takes a moment: the writers interleave
    windows = [days(n, n + 1) for n in range(1, 9)]
    start = threading.Barrier(len(windows))

    def run(window: tuple[datetime, datetime]) -> None:
        start.wait()
        ledger(store).record([window])

    threads = [threading.Thread(target=run, args=(w,)) for w in windows]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert ledger(store).loaded() == [days(1, 9)]
    record = ledger_module.from_json(store.values[TARGET]["peak_ledger__dag__load"])
    assert merge(record) == [days(1, 9)]


@pytest.mark.parametrize(
    ("overwritten", "lost"),
    [
        ([days(3, 4)], days(2, 3)),  # the lost interval just before the record's start
        ([days(1, 2), days(4, 5)], days(3, 4)),  # in a gap, a window never loaded before it
        ([days(1, 2), days(4, 5)], days(2, 3)),  # in a gap, a window never loaded after it
    ],
)
def test_an_interval_a_stale_writer_overwrote_is_found_under_its_own_keys(overwritten, lost, caplog):
    """A writer that read the record before another's write and wrote it after that one's confirmation
    drops the other's interval from the record; the interval's own keys bring it back."""
    store = MemoryAssetStateStore()
    ledger(store).record([lost])
    store[TARGET].set("peak_ledger__dag__load", to_json(overwritten))  # the stale writer's record
    with caplog.at_level("WARNING", logger="peak_provider.ledger"):
        assert ledger(store).loaded() == merge([*overwritten, lost])
    assert "merged back" in caplog.text
    assert merge(ledger_module.from_json(store.values[TARGET]["peak_ledger__dag__load"])) == merge([*overwritten, lost])


# --- fill's query: one condition per window, on real databases -------------------------------------

EVENTS = [(f"e{d}", f"2025-03-0{d} 12:00:00") for d in range(1, 7)]
WINDOWS = [("2025-03-02 00:00:00", "2025-03-03 00:00:00"), ("2025-03-04 00:00:00", "2025-03-06 00:00:00")]


def alternatives() -> list[list[tuple[str, str, Any]]]:
    return [[(f"peak_lower_{i}", ">=", lo), (f"peak_upper_{i}", "<", hi)] for i, (lo, hi) in enumerate(WINDOWS)]


@pytest.mark.parametrize(
    ("style", "sql", "params"),
    [
        ("qmark", "SELECT name, updated_at FROM events WHERE name <> ?", ["e5"]),
        ("named", "SELECT name, updated_at FROM events WHERE name <> :skip", {"skip": "e5"}),
    ],
)
def test_several_windows_in_one_sqlite_query(style, sql, params):
    db = sqlite3.connect(":memory:")
    db.execute("CREATE TABLE events (name TEXT, updated_at TEXT)")
    db.executemany("INSERT INTO events VALUES (?, ?)", EVENTS)
    wrapped, bound = add_filter(sql, params, "updated_at", [], style, alternatives=alternatives())
    assert " OR " in wrapped and "2025" not in wrapped
    assert sorted(r[0] for r in db.execute(wrapped, bound)) == ["e2", "e4"]
    db.close()


@pytest.mark.parametrize(
    ("style", "sql", "params"),
    [
        ("format", "SELECT name, updated_at FROM events WHERE name <> %s", ["e5"]),
        ("pyformat", "SELECT name, updated_at FROM events WHERE name <> %(skip)s", {"skip": "e5"}),
    ],
)
def test_several_windows_in_one_postgres_query(postgres, style, sql, params):
    import psycopg2

    db = psycopg2.connect(**postgres)
    db.autocommit = True
    try:
        with db.cursor() as cur:
            cur.execute("DROP TABLE IF EXISTS events")
            cur.execute("CREATE TABLE events (name text, updated_at text)")
            cur.executemany("INSERT INTO events VALUES (%s, %s)", EVENTS)
            wrapped, bound = add_filter(sql, params, "updated_at", [], style, alternatives=alternatives())
            cur.execute(wrapped, bound)
            assert sorted(r[0] for r in cur.fetchall()) == ["e2", "e4"]
            cur.execute("DROP TABLE events")
    finally:
        db.close()


# --- the operator's ledger path, against the emulator ----------------------------------------------

COLUMNS = "product_id, source_id, pack_size, updated_at"


@pytest.fixture
def warehouse(tmp_path, monkeypatch):
    """A SQLite warehouse with 3 product versions per day, March 1..8; returns its connection id."""
    path = tmp_path / "wh.db"
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE products (product_id TEXT, source_id TEXT, pack_size, updated_at TEXT)")
    db.executemany(
        "INSERT INTO products VALUES (?, ?, ?, ?)",
        [(f"P{d}{i}", "S1", 6, f"2025-03-0{d} 0{i}:00:00") for d in range(1, 9) for i in range(3)],
    )
    db.commit()
    db.close()
    monkeypatch.setenv("AIRFLOW_CONN_LEDGER_WH", json.dumps({"conn_type": "sqlite", "host": str(path)}))
    return "ledger_wh"


@pytest.fixture
def peak_conn(peak_emulator, monkeypatch):
    monkeypatch.setenv("AIRFLOW_CONN_PEAK_DEFAULT", peak_emulator.connection_json("INV_OOTB", max_retries=0))
    return "peak_default"


def load(wh: str, **kwargs: Any) -> SqlToPeakOperator:
    kwargs.setdefault("sql", f"SELECT {COLUMNS} FROM products")
    return SqlToPeakOperator(
        task_id="load", resource="products", sql_conn_id=wh, incremental_column="updated_at", **kwargs
    )


def run(task: SqlToPeakOperator, store: MemoryAssetStateStore, window: tuple[datetime, datetime]) -> dict[str, Any]:
    context = task_context(*window, asset_state_store=store)
    summary = task.execute(context)  # type: ignore[arg-type]
    events = alias_events(context["outlet_events"], task.outlet)
    if task.peak_dry_run:
        assert events == []  # a dry run writes nothing: no asset event
        return summary
    ((_, extra),) = events
    assert extra["missing_intervals"] == summary["missing_intervals"]  # the asset event carries them too
    return summary


def sent_days(emulator) -> list[str]:
    return sorted({r["updated_at"][:10] for r in emulator.rows("INV_PRODUCTS_OOTB")})


def test_warn_reports_the_window_in_the_summary_and_the_asset_event(warehouse, peak_conn, peak_emulator):
    store = MemoryAssetStateStore()
    assert run(load(warehouse), store, days(1, 2))["missing_intervals"] == []
    summary = run(load(warehouse), store, days(3, 4))
    assert summary["missing_intervals"] == [["2025-03-02T00:00:00+00:00", "2025-03-03T00:00:00+00:00"]]
    assert sent_days(peak_emulator) == ["2025-03-01", "2025-03-03"]  # warn sends only the run's window


def test_fail_fails_before_reading_the_warehouse_or_sending(warehouse, peak_conn, peak_emulator):
    store = MemoryAssetStateStore()
    run(load(warehouse), store, days(1, 2))
    sent = len(peak_emulator.request_log())
    # a warehouse connection that does not exist: reading it would fail differently
    with pytest.raises(PeakMissedWindowsError, match=r"Never loaded: \[2025-03-02"):
        run(load("no_such_warehouse", missed_windows="fail"), store, days(3, 4))
    assert len(peak_emulator.request_log()) == sent


def test_fill_sends_the_missing_windows_once_and_records_them(warehouse, peak_conn, peak_emulator):
    store = MemoryAssetStateStore()
    run(load(warehouse), store, days(1, 2))
    run(load(warehouse), store, days(3, 4))
    filled = load(warehouse, missed_windows="fill")
    assert filled.max_active_tis_per_dag == 1
    summary = run(filled, store, days(5, 6))
    assert summary["filled_intervals"] == summary["missing_intervals"] == to_json([days(2, 3), days(4, 5)])
    assert summary["rows_read"] == 9  # days 2, 4 and 5; day 3 was loaded already
    assert sent_days(peak_emulator) == [f"2025-03-0{d}" for d in range(1, 6)]
    assert sum(e["rows"] for e in peak_emulator.request_log()) == 15  # each version sent exactly once
    assert run(load(warehouse), store, days(6, 7))["missing_intervals"] == []


def test_dry_runs_and_failed_loads_record_nothing(warehouse, peak_conn, peak_emulator):
    store = MemoryAssetStateStore()
    run(load(warehouse), store, days(1, 2))
    run(load(warehouse, dry_run=True), store, days(2, 3))
    peak_emulator.set_faults(error_rate=1.0, error_statuses=(500,))
    with pytest.raises(PeakHTTPError):
        run(load(warehouse), store, days(3, 4))
    peak_emulator.set_faults(None)
    summary = run(load(warehouse), store, days(4, 5))
    assert summary["missing_intervals"] == to_json([days(2, 4)])


def test_a_load_failed_only_by_max_rejected_rows_is_recorded(warehouse, peak_conn, peak_emulator):
    """Its accepted rows are stored; re-running it is an overlap (reported under APPEND), not a gap."""
    store = MemoryAssetStateStore()
    run(load(warehouse), store, days(1, 2))
    bad = load(warehouse, sql="SELECT product_id, source_id, NULL AS pack_size, updated_at FROM products")
    with pytest.raises(PeakRejectedRowsError):
        run(bad, store, days(2, 3))
    assert run(load(warehouse), store, days(3, 4))["missing_intervals"] == []


def test_append_overlap_is_reported_and_fail_refuses_it(warehouse, peak_conn, peak_emulator):
    store = MemoryAssetStateStore()
    run(load(warehouse, operation="APPEND"), store, days(1, 2))
    again = run(load(warehouse, operation="APPEND"), store, days(1, 2))
    assert again["overlapping_intervals"] == to_json([days(1, 2)])
    sent = len(peak_emulator.request_log())
    with pytest.raises(PeakMissedWindowsError, match="appends those rows twice"):
        run(load(warehouse, operation="APPEND", missed_windows="fail"), store, days(1, 2))
    assert len(peak_emulator.request_log()) == sent


def test_missed_windows_is_checked_when_the_dag_is_parsed():
    from peak_provider.exceptions import PeakConfigError

    with pytest.raises(PeakConfigError, match="missed_windows must be one of warn, fail, fill"):
        load("wh", missed_windows="ignore")
    with pytest.raises(PeakConfigError, match="watermark loads cannot miss"):
        load("wh", incremental_mode="watermark", missed_windows="warn")
    assert load("wh", missed_windows="fill", max_active_tis_per_dag=2).max_active_tis_per_dag == 2
