"""SqlToPeakOperator on real SQLite and PostgreSQL warehouses, sending to the bundled emulator."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import threading
import time
from datetime import UTC, datetime
from typing import Any

import pytest
from airflow.providers.common.compat.sdk import AirflowFailException

from peak_provider.exceptions import (
    PeakConfigError,
    PeakEmptyIntervalError,
    PeakRejectedRowsError,
    PeakStoppedError,
)
from peak_provider.hooks.peak import PeakHook
from peak_provider.operators.peak import SqlToPeakOperator
from tests.context import MemoryAssetStateStore, alias_events, task_context

COLUMNS = "product_id, product_name, source_id, pack_size, updated_at"
DAY1, DAY2, DAY3 = (datetime(2025, 3, d, tzinfo=UTC) for d in (1, 2, 3))


def product_rows(n: int, day: int = 1, start: int = 0) -> list[tuple[Any, ...]]:
    return [
        (f"P{i:05d}", f"Product {i} ✓", f"S{i % 7}", 1 + i % 12, f"2025-03-{day:02d} {i % 24:02d}:00:00")
        for i in range(start, start + n)
    ]


@pytest.fixture
def sqlite_wh(tmp_path, monkeypatch):
    """A SQLite warehouse with a ``products`` table; returns (conn_id, sqlite3 connection)."""
    path = tmp_path / "wh.db"
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE products (product_id TEXT, product_name TEXT, source_id TEXT, pack_size, updated_at TEXT)")
    monkeypatch.setenv("AIRFLOW_CONN_SQLITE_WH", json.dumps({"conn_type": "sqlite", "host": str(path)}))
    yield "sqlite_wh", db
    db.close()


@pytest.fixture
def pg_wh(postgres_conn_id):
    """A PostgreSQL warehouse with a ``products`` table (timestamptz updated_at)."""
    import psycopg2
    from airflow.providers.common.compat.sdk import BaseHook

    conn = BaseHook.get_connection(postgres_conn_id)
    db = psycopg2.connect(host=conn.host, port=conn.port, user=conn.login, dbname=conn.schema)
    db.autocommit = True
    with db.cursor() as cur:
        cur.execute("DROP TABLE IF EXISTS products")
        cur.execute(
            "CREATE TABLE products (product_id text, product_name text, source_id text, pack_size numeric, "
            "updated_at timestamptz)"
        )
    yield postgres_conn_id, db
    db.close()


def insert(wh, rows):
    _, db = wh
    if isinstance(db, sqlite3.Connection):
        db.executemany("INSERT INTO products VALUES (?, ?, ?, ?, ?)", rows)
        db.commit()
    else:
        with db.cursor() as cur:
            cur.executemany("INSERT INTO products VALUES (%s, %s, %s, %s, %s)", rows)


@pytest.fixture(params=["sqlite", "postgres"])
def wh(request):
    return request.getfixturevalue("sqlite_wh" if request.param == "sqlite" else "pg_wh")


@pytest.fixture
def peak_conn(peak_emulator, monkeypatch):
    monkeypatch.setenv("AIRFLOW_CONN_PEAK_DEFAULT", peak_emulator.connection_json("INV_OOTB"))
    return "peak_default"


def context(start=DAY1, end=DAY2, **extra):
    return task_context(start, end, **extra)


def op(wh_conn_id, **kwargs):
    kwargs.setdefault("sql", f"SELECT {COLUMNS} FROM products")
    return SqlToPeakOperator(task_id="load", resource="products", sql_conn_id=wh_conn_id, **kwargs)


def stored(peak_emulator):
    return sorted(peak_emulator.rows("INV_PRODUCTS_OOTB"), key=lambda r: (r["product_id"], r["updated_at"]))


def test_full_load(wh, peak_conn, peak_emulator):
    insert(wh, product_rows(1234))
    task = op(wh[0], fetch_size=100)
    ctx = context()
    summary = task.execute(ctx)
    assert summary["rows_read"] == summary["rows_accepted"] == 1234
    assert summary["rows_rejected"] == 0
    assert summary["requests"] == 3  # 500 + 500 + 234
    assert len(json.dumps(summary)) < 2000  # a summary, never rows
    rows = stored(peak_emulator)
    assert len(rows) == 1234
    assert rows[5] == {
        "product_id": "P00005",
        "product_name": "Product 5 ✓",
        "source_id": "S5",
        "pack_size": 6,
        "updated_at": "2025-03-01 05:00:00",
    }
    host = peak_emulator.url.split("://")[1]
    ((uri, extra),) = alias_events(ctx["outlet_events"], task.outlet)
    assert (uri, extra["rows_accepted"]) == (f"peak://{host}/INV_OOTB/INV_PRODUCTS_OOTB", 1234)


def test_interval_mode_sends_only_rows_in_the_interval(wh, peak_conn, peak_emulator):
    insert(wh, product_rows(50, day=1) + product_rows(70, day=2, start=1000) + product_rows(30, day=3, start=2000))
    task = op(wh[0], incremental_column="updated_at")
    summary = task.execute(context(DAY2, DAY3))
    assert summary["rows_read"] == summary["rows_accepted"] == 70
    assert {r["updated_at"][:10] for r in stored(peak_emulator)} == {"2025-03-02"}


def test_interval_bounds_are_bind_parameters(sqlite_wh, peak_conn, peak_emulator, caplog, monkeypatch):
    insert(sqlite_wh, product_rows(3, day=1))
    task = op(sqlite_wh[0], incremental_column="updated_at", sql=f"SELECT {COLUMNS} FROM products;")
    hook_sql: list[str] = []
    from peak_provider import sql_source

    original = sql_source.streaming_cursor

    def spy(conn, driver, fetch_size):
        cursor = original(conn, driver, fetch_size)

        class Spy:
            def __getattr__(self, name):
                return getattr(cursor, name)

            def execute(self, sql, params=None):
                hook_sql.append(sql)
                return cursor.execute(sql, params)

        return Spy()

    monkeypatch.setattr(sql_source, "streaming_cursor", spy)
    task.execute(context())
    (sql,) = hook_sql
    assert ":peak_lower" in sql and ":peak_upper" in sql and "2025" not in sql


def test_user_parameters_combine_with_incremental_bounds(sqlite_wh, peak_conn, peak_emulator):
    insert(sqlite_wh, product_rows(20, day=1))
    task = op(
        sqlite_wh[0],
        sql=f"SELECT {COLUMNS} FROM products WHERE source_id = :src",
        parameters={"src": "S3"},
        incremental_column="updated_at",
    )
    assert task.execute(context())["rows_read"] == 3


@pytest.mark.parametrize("interval", [(DAY1, DAY1), (None, None)])
def test_empty_interval_fails_at_once_with_the_fix(sqlite_wh, peak_conn, interval):
    task = op(sqlite_wh[0], incremental_column="updated_at")
    with pytest.raises(PeakEmptyIntervalError, match="CronDataIntervalTimetable") as failed:
        task.execute(context(*interval))
    assert isinstance(failed.value, AirflowFailException)  # not retried: a retry has the same interval


def test_watermark_mode(wh, peak_conn, peak_emulator, monkeypatch):
    marks: dict[str, Any] = {}  # the state of the task's asset
    host = peak_emulator.url.split("://")[1]
    store = MemoryAssetStateStore({f"peak://{host}/INV_OOTB/INV_PRODUCTS_OOTB": marks})
    insert(wh, product_rows(10, day=1))
    task = op(wh[0], incremental_column="updated_at", incremental_mode="watermark")
    assert task.execute(context(asset_state_store=store))["rows_read"] == 10
    assert marks["peak_watermark"].startswith("2025-03-01")
    assert "09:00:00" in marks["peak_watermark"]
    insert(wh, product_rows(4, day=2, start=100))
    assert task.execute(context(asset_state_store=store))["rows_read"] == 4
    assert task.execute(context(asset_state_store=store))["rows_read"] == 0
    assert len(stored(peak_emulator)) == 14


AIRFLOW_3 = int(__import__("airflow").__version__.split(".")[0]) >= 3


@pytest.mark.skipif(
    AIRFLOW_3,
    reason="Airflow 3: Variable.set needs a running task (the Execution API); Airflow >= 3.3 keeps the watermark "
    "in asset_state_store (test_watermark_mode)",
)
def test_watermark_falls_back_to_a_variable_without_asset_state_store(sqlite_wh, peak_conn, peak_emulator, airflow_db):
    from airflow.models import Variable

    insert(sqlite_wh, product_rows(10, day=1))
    task = op(sqlite_wh[0], incremental_column="updated_at", incremental_mode="watermark")
    key = f"peak_watermark__{task.dag_id}__{task.task_id}"
    Variable.delete(key)
    try:
        assert task.execute(context())["rows_read"] == 10  # no asset_state_store in the context: a Variable
        assert Variable.get(key) == "2025-03-01 09:00:00"
        insert(sqlite_wh, product_rows(4, day=2, start=100))
        assert task.execute(context())["rows_read"] == 4
        assert Variable.get(key) == "2025-03-02 07:00:00"
        assert task.execute(context())["rows_read"] == 0
        assert len(stored(peak_emulator)) == 14
    finally:
        Variable.delete(key)  # later tests of a task "load" must not find this mark


def test_a_load_that_fails_before_sending_closes_the_hook(sqlite_wh, peak_conn, peak_emulator, monkeypatch):
    closed: list[PeakHook] = []
    close = PeakHook.close
    monkeypatch.setattr(PeakHook, "close", lambda self: (closed.append(self), close(self)))
    insert(sqlite_wh, product_rows(3))
    task = op(sqlite_wh[0], sql="SELECT product_id, product_name, source_id, pack_size FROM products")
    with pytest.raises(PeakConfigError, match="required fields missing from the query: updated_at"):
        task.execute(context())  # the preflight check fails, inside the warehouse stream, before any send
    assert closed  # the hook's HTTP session
    assert peak_emulator.request_log() == []  # nothing was sent


def test_rejected_rows_threshold_and_sink(sqlite_wh, peak_conn, peak_emulator, tmp_path):
    rows = product_rows(10)
    rows[2] = ("P00002", "x", "S2", 2.5, "2025-03-01 02:00:00")  # not an integer
    rows[4] = ("P00004", "x", None, 3, "2025-03-01 04:00:00")  # required field null
    insert(sqlite_wh, rows)
    sink = tmp_path / "rejects" / "products.jsonl"
    strict = op(sqlite_wh[0], rejected_rows_path=str(sink))
    with pytest.raises(PeakRejectedRowsError, match=r"2 rows rejected \(max_rejected_rows=0\)") as failure:
        strict.execute(context())
    assert failure.value.summary["rows_accepted"] == 8
    records = [json.loads(line) for line in sink.read_text().splitlines()]
    assert [(r["key"]["product_id"], r["field"]) for r in records] == [("P00002", "pack_size"), ("P00004", "source_id")]
    assert "2.5 is not an integer" in records[0]["reason"] and records[0]["row"]["pack_size"] == 2.5
    tolerant = op(sqlite_wh[0], rejected_rows_path=str(sink), max_rejected_rows=2)
    summary = tolerant.execute(context())
    assert (summary["rows_read"], summary["rows_accepted"], summary["rows_rejected"]) == (10, 8, 2)
    assert summary["rejected_rows_path"] == str(sink)


def test_api_rejections_are_counted_and_written(sqlite_wh, peak_conn, peak_emulator, tmp_path):
    rows = product_rows(5)
    rows[1] = ("P00001", "y" * 70_000, "S1", 1, "2025-03-01 01:00:00")  # the API caps strings at 65,535
    insert(sqlite_wh, rows)
    sink = tmp_path / "r.jsonl"
    summary = op(sqlite_wh[0], rejected_rows_path=str(sink), max_rejected_rows=1).execute(context())
    assert (summary["rows_accepted"], summary["rows_rejected"]) == (4, 1)
    (record,) = [json.loads(line) for line in sink.read_text().splitlines()]
    assert record["code"].startswith("DI_E_") and record["key"]["product_id"] == "P00001"
    assert "rejected by the API" in record["reason"]


def test_column_map_and_uppercase_columns(sqlite_wh, peak_conn, peak_emulator):
    insert(sqlite_wh, product_rows(2))
    sql = "SELECT product_id AS SKU, product_name AS PRODUCT_NAME, source_id AS SOURCE_ID, pack_size, updated_at FROM products"
    op(sqlite_wh[0], sql=sql, column_map={"SKU": "product_id"}).execute(context())
    assert [r["product_id"] for r in stored(peak_emulator)] == ["P00000", "P00001"]


def test_dry_run_writes_nothing(sqlite_wh, peak_conn, peak_emulator):
    """Nothing is written, so there is no outlet and no asset event to trigger a consumer DAG."""
    insert(sqlite_wh, product_rows(3))
    task = op(sqlite_wh[0], dry_run=True)
    ctx = context()
    summary = task.execute(ctx)
    assert summary["dry_run"] is True and summary["rows_accepted"] == 3
    assert stored(peak_emulator) == []
    assert task.outlets == [] and alias_events(ctx["outlet_events"], task.outlet) == []


def test_postgres_streams_with_a_server_side_cursor(pg_wh):
    """The server says so: while the stream is open, its session's last statement is a ``FETCH`` from a
    cursor (a client-side cursor would have run the ``SELECT`` and holds every row already)."""
    from peak_provider.sql_source import stream_query

    insert(pg_wh, product_rows(10))
    _, db = pg_wh
    with stream_query(pg_wh[0], lambda driver: (f"SELECT {COLUMNS} FROM products", None), 3) as stream:
        assert stream.driver in ("psycopg", "psycopg2")
        assert stream.columns == ["product_id", "product_name", "source_id", "pack_size", "updated_at"]
        rows = [next(stream.rows)]  # one batch of 3 read
        with db.cursor() as cur:
            cur.execute(
                "SELECT query FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
            others = [query for (query,) in cur.fetchall()]
        assert any(q.startswith("FETCH FORWARD 3 FROM") and "peak_" in q for q in others), others
        rows += list(stream.rows)
    assert len(rows) == 10


def test_missing_connection_at_parse_time_does_not_break_the_dag_import():
    task = SqlToPeakOperator(task_id="t", resource="products", sql="select 1", sql_conn_id="x", peak_conn_id="nope")
    assert task.outlet.name == "peak/nope/products"  # an AssetAlias: the asset is known at run time
    pinned = SqlToPeakOperator(
        task_id="u", resource="products", sql="select 1", sql_conn_id="x", peak_conn_id="nope", asset_uri="peak://h/S/O"
    )
    assert pinned.outlet.uri == "peak://h/S/O"


def test_bad_arguments_fail_at_parse_time(peak_conn):
    with pytest.raises(PeakConfigError, match="incremental_mode must be one of interval, watermark"):
        op("x", incremental_column="updated_at", incremental_mode="daily")
    with pytest.raises(PeakConfigError, match="plain column name"):
        op("x", incremental_column="updated_at; DROP TABLE products")
    with pytest.raises(PeakConfigError, match="Unknown resource 'prodcts'"):
        SqlToPeakOperator(task_id="t", resource="prodcts", sql="select 1", sql_conn_id="x")


def test_sql_error_fails_with_the_database_message(sqlite_wh, peak_conn):
    with pytest.raises(sqlite3.OperationalError, match="no such table: nope"):
        op(sqlite_wh[0], sql="SELECT * FROM nope").execute(context())


def test_templated_fields_never_hold_the_token(peak_conn, peak_emulator):
    task = op("wh", rejected_rows_path="/tmp/{{ ds }}.jsonl")
    assert set(task.template_fields) == {"sql", "parameters", "sql_conn_id", "rejected_rows_path"}
    assert task.template_ext == (".sql",)
    assert all(peak_emulator.token not in str(getattr(task, f)) for f in task.template_fields)


@pytest.mark.parametrize(
    ("zone", "expected"), [("Etc/UTC", "UTC"), ("Zulu", "UTC"), ("UTC", "UTC"), ("Europe/Paris", "Europe/Paris")]
)
def test_a_utc_alias_session_zone_is_spelled_utc_for_psycopg3(postgres_conn_id, monkeypatch, zone, expected):
    from airflow.providers.common.compat.sdk import BaseHook

    from peak_provider.sql_source import stream_query

    conn = BaseHook.get_connection(postgres_conn_id)
    extra = {"options": f"-c TimeZone={zone}"}
    uri = {"conn_type": "postgres", "host": conn.host, "port": conn.port, "login": conn.login, "schema": conn.schema}
    monkeypatch.setenv("AIRFLOW_CONN_PG_ZONED", json.dumps({**uri, "extra": extra}))
    sql = "SELECT current_setting('TimeZone'), TIMESTAMPTZ '2025-03-01 09:30:00+00', to_char(now(), 'TZ')"
    with stream_query("pg_zoned", lambda driver: (sql, None), 10) as stream:
        (seen, moment, abbreviation), *_ = list(stream.rows)
    assert seen == (zone if stream.driver == "psycopg2" else expected)  # psycopg2 is fast either way: untouched
    assert moment == datetime(2025, 3, 1, 9, 30, tzinfo=UTC)
    if expected == "UTC":
        assert abbreviation == "UTC"  # what a query sees is the same under either name


def test_a_failing_query_logs_the_sql_that_ran_without_bind_values(tmp_path, monkeypatch, caplog):
    from peak_provider.sql_source import stream_query

    path = tmp_path / "wh.db"
    sqlite3.connect(path).close()
    monkeypatch.setenv("AIRFLOW_CONN_BROKEN_WH", json.dumps({"conn_type": "sqlite", "host": str(path)}))
    wrapped = "SELECT * FROM (\nSELECT * FROM no_such_table\n) peak_src WHERE peak_src.updated_at >= ?"
    with (
        pytest.raises(sqlite3.OperationalError),
        caplog.at_level("ERROR", logger="peak_provider.sql_source"),
        stream_query("broken_wh", lambda driver: (wrapped, ["2025-01-01 SECRET-BOUND"]), 100),
    ):
        pass
    assert wrapped in caplog.text and "SECRET-BOUND" not in caplog.text


def test_sigterm_stops_the_load_and_logs_its_counts(sqlite_wh, peak_emulator, monkeypatch, caplog, capsys):
    """Airflow 3.3's task runner answers SIGTERM only by calling ``on_kill()`` (then SIGKILL follows): the load
    stops sending, the batches in flight settle, and the task fails with the counts in its log."""
    insert(sqlite_wh, product_rows(5_000))
    peak_emulator.set_faults(latency_ms=200)
    connection = peak_emulator.connection_json("INV_OOTB", max_rows_per_request=100, max_in_flight=2)
    monkeypatch.setenv("AIRFLOW_CONN_PEAK_DEFAULT", connection)
    task = op(sqlite_wh[0])

    def kill_at_first_arrival() -> None:
        while not peak_emulator.request_log():
            time.sleep(0.005)
        os.kill(os.getpid(), signal.SIGTERM)

    previous = signal.signal(signal.SIGTERM, lambda signum, frame: task.on_kill())  # as the task runner does
    killer = threading.Thread(target=kill_at_first_arrival, daemon=True)
    try:
        killer.start()
        with caplog.at_level("ERROR"), pytest.raises(PeakStoppedError, match="task was killed"):
            task.execute(context())
    finally:
        killer.join(5)
        signal.signal(signal.SIGTERM, previous)
    sent = len(stored(peak_emulator))
    assert 0 < sent <= 1_000  # the batches in flight and the one being closed (a loaded CI may add one); not 5,000
    logged = caplog.text + capsys.readouterr().out  # Airflow 3's task logger prints; Airflow 2's propagates
    assert "Peak load failed: products -> INV_PRODUCTS_OOTB (UPSERT): read " in logged
    assert f"accepted {sent}," in logged
