"""``peak_provider.incremental``: ``add_filter`` in every DB-API placeholder style, run on real databases
(SQLite for qmark, numeric and named, as it parses all three; PostgreSQL through psycopg2 for format and
pyformat), and ``IncrementalLoad`` step by step."""

from __future__ import annotations

import importlib
import sqlite3
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from peak_provider.exceptions import PeakConfigError, PeakEmptyIntervalError
from peak_provider.incremental import IncrementalLoad, WatermarkStore, add_filter
from peak_provider.ledger import Ledger, LedgerPlan
from peak_provider.sql_source import Query
from tests.context import MemoryAssetStateStore, task_context

ROWS = [
    ("a", "2025-03-01 00:00:00"),  # the lower bound is inclusive
    ("a", "2025-03-01 12:00:00"),
    ("b", "2025-03-01 13:00:00"),  # in the interval, but not of the user's kind
    ("a", "2025-03-02 00:00:00"),  # the upper bound is exclusive
    ("a", "2025-02-28 23:59:59"),
]
LOWER, UPPER = "2025-03-01 00:00:00", "2025-03-02 00:00:00"
INTERVAL = [("peak_lower", ">=", LOWER), ("peak_upper", "<", UPPER)]
EXPECTED = [("a", "2025-03-01 00:00:00"), ("a", "2025-03-01 12:00:00")]

# The user's query filters on its own bind parameter, written in each style.
USER_QUERY: dict[str, tuple[str, Sequence[Any] | Mapping[str, Any]]] = {
    "qmark": ("SELECT kind, updated_at FROM events WHERE kind = ?", ["a"]),
    "numeric": ("SELECT kind, updated_at FROM events WHERE kind = :1", ["a"]),
    "named": ("SELECT kind, updated_at FROM events WHERE kind = :kind", {"kind": "a"}),
    "format": ("SELECT kind, updated_at FROM events WHERE kind = %s", ["a"]),
    "pyformat": ("SELECT kind, updated_at FROM events WHERE kind = %(kind)s", {"kind": "a"}),
}


def sqlite_events(rows: Sequence[tuple[str, str]]) -> sqlite3.Connection:
    db = sqlite3.connect(":memory:")
    db.execute("CREATE TABLE events (kind TEXT, updated_at TEXT)")
    db.executemany("INSERT INTO events VALUES (?, ?)", rows)
    return db


@pytest.fixture
def sqlite_db() -> Iterator[sqlite3.Connection]:
    db = sqlite_events(ROWS)
    yield db
    db.close()


@contextmanager
def pg_table(driver: str, postgres: dict[str, Any], table: str, columns: str, rows: Any) -> Iterator[Any]:
    """A connection of ``driver`` (autocommit) to the session's PostgreSQL, with ``table`` made and filled
    for the ``with`` block, then dropped."""
    db = importlib.import_module(driver).connect(**postgres)
    db.autocommit = True
    with db.cursor() as cur:
        cur.execute(f"DROP TABLE IF EXISTS {table}")
        cur.execute(f"CREATE TABLE {table} ({columns})")
        cur.executemany(f"INSERT INTO {table} VALUES (%s, %s)", rows)
    try:
        yield db
    finally:
        with db.cursor() as cur:
            cur.execute(f"DROP TABLE {table}")
        db.close()


@pytest.fixture
def pg_db(postgres: dict[str, Any]) -> Iterator[Any]:
    with pg_table("psycopg2", postgres, "events", "kind text, updated_at text", ROWS) as db:
        yield db


def run(db: Any, sql: str, params: Sequence[Any] | Mapping[str, Any] | None) -> list[tuple[Any, ...]]:
    cur = db.cursor()
    try:
        cur.execute(sql, params)
        return sorted(tuple(r) for r in cur.fetchall())
    finally:
        cur.close()


@pytest.mark.parametrize("style", ["qmark", "numeric", "named"])
def test_sqlite_runs_the_filter_with_the_users_own_parameter(sqlite_db, style):
    sql, params = USER_QUERY[style]
    wrapped, bound = add_filter(sql, params, "updated_at", INTERVAL, style)
    assert run(sqlite_db, wrapped, bound) == EXPECTED


@pytest.mark.parametrize("style", ["format", "pyformat"])
def test_postgres_runs_the_filter_with_the_users_own_parameter(pg_db, style):
    sql, params = USER_QUERY[style]
    wrapped, bound = add_filter(sql, params, "updated_at", INTERVAL, style)
    assert run(pg_db, wrapped, bound) == EXPECTED


@pytest.mark.parametrize(
    ("style", "params", "placeholders"),
    [
        ("qmark", ["a"], ("?", "?")),
        ("numeric", ["a"], (":2", ":3")),
        ("named", ["a"], (":2", ":3")),  # a sequence binds by position whatever the names
        ("format", ["a"], ("%s", "%s")),
        ("pyformat", ("a",), ("%s", "%s")),
        ("qmark", {"kind": "a"}, (":peak_lower", ":peak_upper")),
        ("numeric", None, (":peak_lower", ":peak_upper")),
        ("named", {"kind": "a"}, (":peak_lower", ":peak_upper")),
        ("format", {"kind": "a"}, ("%(peak_lower)s", "%(peak_upper)s")),
        ("pyformat", None, ("%(peak_lower)s", "%(peak_upper)s")),
    ],
)
def test_placeholders_follow_the_style_and_the_shape_of_the_parameters(style, params, placeholders):
    sql, bound = add_filter("SELECT * FROM events", params, "updated_at", INTERVAL, style)
    lower, upper = placeholders
    assert sql == (
        f"SELECT * FROM (\nSELECT * FROM events\n) peak_src\n"
        f"WHERE peak_src.updated_at >= {lower} AND peak_src.updated_at < {upper}"
    )
    if isinstance(params, list | tuple):
        assert bound == [*params, LOWER, UPPER]
    else:
        assert bound == {**(params or {}), "peak_lower": LOWER, "peak_upper": UPPER}


def test_bounds_are_bound_never_written_into_the_sql():
    sql, _ = add_filter("SELECT * FROM events", None, "updated_at", INTERVAL, "qmark")
    assert LOWER not in sql and UPPER not in sql


def test_the_users_parameters_are_not_modified():
    positional, named = ["a"], {"kind": "a"}
    add_filter("SELECT 1", positional, "updated_at", INTERVAL, "qmark")
    add_filter("SELECT 1", named, "updated_at", INTERVAL, "named")
    assert positional == ["a"] and named == {"kind": "a"}


def test_without_conditions_or_order_the_query_is_unchanged_but_for_a_trailing_semicolon():
    params = {"kind": "a"}
    sql, bound = add_filter("  SELECT * FROM events;\n", params, None, [], "named")
    assert (sql, bound) == ("SELECT * FROM events", params)


def test_a_trailing_semicolon_does_not_break_the_wrapped_query(sqlite_db):
    sql, params = add_filter("SELECT kind, updated_at FROM events;\n", None, "updated_at", INTERVAL, "qmark")
    assert run(sqlite_db, sql, params) == sorted([*EXPECTED, ("b", "2025-03-01 13:00:00")])


def test_order_by_alone_and_with_a_watermark(sqlite_db):
    sql, params = add_filter("SELECT kind, updated_at FROM events", None, None, [], "qmark", ["updated_at", "kind"])
    assert sql.endswith("\nORDER BY peak_src.updated_at, peak_src.kind") and "WHERE" not in sql
    assert params is None  # nothing bound: the query runs without parameters, as the user's would
    assert [r[1] for r in sqlite_db.execute(sql)] == sorted(r[1] for r in ROWS)

    sql, params = add_filter(
        "SELECT kind, updated_at FROM events", [], "updated_at", [("peak_mark", ">", LOWER)], "qmark", ["kind"]
    )
    assert sql.endswith("\nWHERE peak_src.updated_at > ?\nORDER BY peak_src.kind")
    assert sqlite_db.execute(sql, params).fetchall() == [
        ("a", "2025-03-01 12:00:00"),
        ("a", "2025-03-02 00:00:00"),
        ("b", "2025-03-01 13:00:00"),
    ]


def test_order_by_refuses_anything_but_a_plain_column_name():
    with pytest.raises(PeakConfigError, match="plain column name"):
        add_filter("SELECT 1", None, None, [], "qmark", ["id; DROP TABLE events"])


# --- IncrementalLoad, the operator's one incremental object, step by step -------------------------
# Each mode's query run on real SQLite (bounds written in the warehouse's zone), the mark it tracks and
# stores, what the ledger records, and what a full load or a dry run leaves alone. Whole runs are in
# tests/test_ledger*.py and tests/dags/.

TARGET = "peak://127.0.0.1:1/INV_OOTB/INV_PRODUCTS_OOTB"
DAG_ID = "test_incremental_load"  # its own ledger, whatever other tests recorded
NEW_YORK = ZoneInfo("America/New_York")
SQL = "SELECT kind, updated_at FROM events"
# Local New York times as SQLite holds them; 2025-03-01 00:00 UTC is 2025-02-28 19:00 EST.
ZONED_ROWS = [
    ("a", "2025-02-28 18:59:59"),
    ("b", "2025-02-28 19:00:00"),  # the first instant of 2025-03-01 UTC
    ("c", "2025-03-01 18:59:59"),
    ("d", "2025-03-01 19:00:00"),  # the first of 2025-03-02 UTC: outside a window ending there
    ("e", "2025-03-02 19:00:00"),
    ("f", "2025-03-03 18:59:59"),
]


def utc(day: int) -> datetime:
    return datetime(2025, 3, day, tzinfo=UTC)


@pytest.fixture
def db() -> Iterator[sqlite3.Connection]:
    db = sqlite_events(ZONED_ROWS)
    yield db
    db.close()


def kinds(db: sqlite3.Connection, query: Query) -> list[str]:
    sql, parameters = query
    return [row[0] for row in db.execute(sql, parameters or ())]


def test_a_full_load_reads_everything_and_records_nothing(db):
    load = IncrementalLoad()
    query = load.query(SQL, None, "sqlite3")
    rows = iter([("a", 1)])

    assert kinds(db, query) == list("abcdef")
    assert load.track(rows, ["kind", "updated_at"]) is rows
    assert load.record_sent() == {}
    load.commit()  # nothing to store, and nowhere to store it


def test_one_window_reads_its_rows_by_the_warehouse_zone(db):
    load = IncrementalLoad("updated_at", NEW_YORK, plan=LedgerPlan(windows=[(utc(1), utc(2))]))
    assert kinds(db, load.query(SQL, None, "sqlite3", order_by=["kind"])) == ["b", "c"]


def test_several_windows_read_each_one_and_nothing_between(db):
    plan = LedgerPlan(windows=[(utc(1), utc(2)), (utc(3), utc(4))])
    load = IncrementalLoad("updated_at", NEW_YORK, plan=plan)
    assert kinds(db, load.query(SQL, None, "sqlite3", order_by=["kind"])) == ["b", "c", "e", "f"]


def test_the_same_window_in_utc_reads_other_rows(db):
    load = IncrementalLoad("updated_at", UTC, plan=LedgerPlan(windows=[(utc(1), utc(2))]))
    assert kinds(db, load.query(SQL, None, "sqlite3", order_by=["kind"])) == ["c", "d"]


def begin(
    store: MemoryAssetStateStore,
    mode: str,
    start: datetime | None = None,
    end: datetime | None = None,
    dry_run: bool = False,
) -> IncrementalLoad:
    return IncrementalLoad.begin(
        task_context(start, end, asset_state_store=store),
        "updated_at",
        mode,
        zone=NEW_YORK,
        keys=[TARGET],
        dag_id=DAG_ID,
        task_id="load",
        policy="fill",
        operation="UPSERT",
        serialized=True,
        dry_run=dry_run,
    )


def test_interval_mode_records_the_window_once_sent_and_fills_a_missed_one_next_time(db):
    store = MemoryAssetStateStore()
    first = ledger_load(store, utc(1), utc(2))
    assert kinds(db, first.query(SQL, None, "sqlite3", ["kind"])) == ["b", "c"]
    assert first.record_sent() == {"missing_intervals": []}

    third = ledger_load(store, utc(3), utc(4))  # the run of day 2 never happened
    assert third.plan is not None and third.plan.windows == [(utc(2), utc(4))]
    assert kinds(db, third.query(SQL, None, "sqlite3", ["kind"])) == ["d", "e", "f"]
    report = third.record_sent()
    assert report["filled_intervals"] == report["missing_intervals"] != []
    assert Ledger({"asset_state_store": store}, TARGET, DAG_ID, "load").loaded() == [(utc(1), utc(4))]


def test_a_dry_run_records_no_window(db):
    store = MemoryAssetStateStore()
    ledger_load(store, utc(1), utc(2), dry_run=True).record_sent()
    assert ledger_load(store, utc(1), utc(2)).plan == LedgerPlan(windows=[(utc(1), utc(2))])
    assert Ledger({"asset_state_store": store}, TARGET, DAG_ID, "load").loaded() == []


def test_interval_mode_refuses_an_empty_interval():
    with pytest.raises(PeakEmptyIntervalError):
        ledger_load(MemoryAssetStateStore(), utc(1), utc(1))


def ledger_load(store: MemoryAssetStateStore, start: datetime, end: datetime, dry_run: bool = False) -> IncrementalLoad:
    return begin(store, "interval", start, end, dry_run)


def watermark_load(store: MemoryAssetStateStore, dry_run: bool = False) -> IncrementalLoad:
    return begin(store, "watermark", dry_run=dry_run)


def marked(mark: Any) -> MemoryAssetStateStore:
    return MemoryAssetStateStore({TARGET: {WatermarkStore.KEY: mark}})


def test_watermark_mode_reads_after_the_mark_and_stores_the_largest_value_once_committed(db):
    store = marked("2025-03-01 18:59:59")
    load = watermark_load(store)
    sql, parameters = load.query(SQL, None, "sqlite3", ["kind"])
    streamed = list(load.track(iter(db.execute(sql, parameters)), ["kind", "updated_at"]))

    assert [row[0] for row in streamed] == ["d", "e", "f"]
    assert store.values[TARGET][WatermarkStore.KEY] == "2025-03-01 18:59:59"  # not before the task succeeded
    load.commit()
    assert store.values[TARGET][WatermarkStore.KEY] == "2025-03-03 18:59:59"
    assert kinds(db, watermark_load(store).query(SQL, None, "sqlite3")) == []


@pytest.mark.parametrize("dry_run", [True, False], ids=["dry-run", "no-row-read"])
def test_watermark_mode_keeps_the_mark_after_a_dry_run_or_when_no_row_was_read(db, dry_run):
    store = marked("2025-03-01 18:59:59")
    load = watermark_load(store, dry_run=dry_run)
    rows = [("x", "2025-03-09 00:00:00")] if dry_run else []
    list(load.track(iter(rows), ["kind", "updated_at"]))
    load.commit()
    assert store.values[TARGET][WatermarkStore.KEY] == "2025-03-01 18:59:59"


def test_watermark_mode_stores_the_largest_value_read_not_the_last():
    """A resumable load reads in primary-key order, so the newest row need not come last."""
    store = marked("2025-03-01 00:00:00")
    load = watermark_load(store)
    rows = [("x", "2025-03-05 00:00:00"), ("y", None), ("z", "2025-03-04 00:00:00")]
    assert list(load.track(iter(rows), ["kind", "updated_at"])) == rows
    load.commit()
    assert store.values[TARGET][WatermarkStore.KEY] == "2025-03-05 00:00:00"


def test_watermark_mode_refuses_a_query_without_the_column():
    load = watermark_load(marked("2025-03-01 00:00:00"))
    with pytest.raises(PeakConfigError, match="updated_at"):
        load.track(iter([("a",)]), ["kind"])


# --- a literal % in the user's query (PostgreSQL: psycopg2 and psycopg 3, both pyformat) ----------------
# Bound parameters make the driver read every % of the query as a placeholder. A query without parameters
# runs as written on a full load, so once bounds are added its % must be doubled; a query with parameters
# is already written for the driver and must not be escaped twice.

PERCENT_ROWS = [
    ("PROD-1", "2025-03-01 00:00:00+00"),
    ("PROD-2", "2025-03-01 12:00:00+00"),
    ("OTHER-3", "2025-03-01 13:00:00+00"),  # in the window, but not LIKE 'PROD%'
    ("PROD-4", "2025-03-02 00:00:00+00"),
    ("PROD-5", "2025-03-03 12:00:00+00"),
]
PERCENT_SQL = "SELECT name, updated_at, '100%' AS label FROM percent_products WHERE name LIKE 'PROD%'"


@pytest.fixture(params=["psycopg2", "psycopg"])
def pg_percent(request: pytest.FixtureRequest, postgres: dict[str, Any]) -> Iterator[tuple[str, Any]]:
    """A ``percent_products`` table on real PostgreSQL; returns (driver, a connection of that driver)."""
    with pg_table(request.param, postgres, "percent_products", "name text, updated_at timestamptz", PERCENT_ROWS) as db:
        yield request.param, db


def names_and_labels(db: Any, query: Query) -> list[tuple[str, str]]:
    return [(name, label) for name, _, label in run(db, *query)]


@pytest.mark.parametrize(
    ("load", "order_by", "expected"),
    [
        (IncrementalLoad("updated_at", plan=LedgerPlan(windows=[(utc(1), utc(2))])), (), ["PROD-1", "PROD-2"]),
        (
            IncrementalLoad("updated_at", plan=LedgerPlan(windows=[(utc(1), utc(2)), (utc(3), utc(4))])),
            ["name"],
            ["PROD-1", "PROD-2", "PROD-5"],
        ),
        (IncrementalLoad(), ["name"], ["PROD-1", "PROD-2", "PROD-4", "PROD-5"]),  # resumable: ORDER BY only
    ],
    ids=["interval", "two-windows-resumable", "full-resumable"],
)
def test_a_literal_percent_without_parameters_survives_the_filter_on_postgres(pg_percent, load, order_by, expected):
    driver, db = pg_percent
    query = load.query(PERCENT_SQL, None, driver, order_by)
    assert names_and_labels(db, query) == [(name, "100%") for name in expected]


def test_a_literal_percent_without_parameters_survives_a_watermark_on_postgres(pg_percent):
    driver, db = pg_percent
    query = watermark_load(marked("2025-03-01 06:00:00+00:00")).query(PERCENT_SQL, None, driver, ["name"])
    assert names_and_labels(db, query) == [("PROD-2", "100%"), ("PROD-4", "100%"), ("PROD-5", "100%")]


@pytest.mark.parametrize(
    ("sql", "parameters"),
    [
        ("name LIKE %s || '%%'", ["PROD"]),
        ("name LIKE %(prefix)s || '%%'", {"prefix": "PROD"}),
    ],
    ids=["positional", "named"],
)
@pytest.mark.parametrize("order_by", [(), ["name"]], ids=["unordered", "resumable"])
def test_a_query_with_parameters_keeps_its_escaped_percent_on_postgres(pg_percent, sql, parameters, order_by):
    driver, db = pg_percent
    user_sql = f"SELECT name, updated_at, '100%%' AS label FROM percent_products WHERE {sql}"
    load = IncrementalLoad("updated_at", plan=LedgerPlan(windows=[(utc(1), utc(2))]))
    query = load.query(user_sql, parameters, driver, order_by)
    assert names_and_labels(db, query) == [("PROD-1", "100%"), ("PROD-2", "100%")]


@pytest.mark.parametrize(
    ("style", "parameters", "conditions", "order_by", "user_sql", "bound"),
    [
        ("pyformat", None, INTERVAL, (), "LIKE 'P%'", {"peak_lower": LOWER, "peak_upper": UPPER}),
        ("format", None, INTERVAL, ["kind"], "LIKE 'P%'", {"peak_lower": LOWER, "peak_upper": UPPER}),
        ("pyformat", {"k": "P"}, INTERVAL, (), "LIKE 'P%%'", {"k": "P", "peak_lower": LOWER, "peak_upper": UPPER}),
        ("format", ["P"], INTERVAL, (), "LIKE 'P%%'", ["P", LOWER, UPPER]),
        ("pyformat", None, [], ["kind"], "LIKE 'P%'", None),  # no bound added: run as written, no parameters
        ("pyformat", {}, [], ["kind"], "LIKE 'P%%'", {}),
        ("qmark", None, INTERVAL, (), "LIKE 'P%'", {"peak_lower": LOWER, "peak_upper": UPPER}),
        ("named", None, INTERVAL, (), "LIKE 'P%'", {"peak_lower": LOWER, "peak_upper": UPPER}),
        ("numeric", None, [], ["kind"], "LIKE 'P%'", None),
    ],
)
def test_percent_is_doubled_only_for_format_styles_when_bounds_are_added_to_a_query_without_parameters(
    style, parameters, conditions, order_by, user_sql, bound
):
    doubled = style in ("format", "pyformat") and parameters is None and conditions
    sql, params = add_filter(
        f"SELECT kind FROM events WHERE kind {user_sql}", parameters, "updated_at", conditions, style, order_by
    )
    expected = user_sql.replace("%", "%%") if doubled else user_sql
    assert f"SELECT * FROM (\nSELECT kind FROM events WHERE kind {expected}\n) peak_src" in sql
    assert params == bound
