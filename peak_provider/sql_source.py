"""Streaming rows out of any common-sql connection with flat memory.

``fetchmany`` bounds memory only when the driver streams: PostgreSQL (psycopg2 and psycopg 3) needs a
named, server-side cursor, MySQL an unbuffered ``SSCursor``; SQLite, Snowflake and most others stream
with their ordinary cursor.
"""

from __future__ import annotations

import logging
import sys
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from airflow.providers.common.compat.sdk import BaseHook

from peak_provider.exceptions import PeakConfigError

log = logging.getLogger(__name__)


@dataclass
class SqlStream:
    """An open query: its column names, driver family, cursor kind and a row iterator (tuples)."""

    columns: list[str]
    driver: str
    server_side: bool
    rows: Iterator[Sequence[Any]]


def get_db_hook(sql_conn_id: str) -> Any:
    """The common-sql ``DbApiHook`` of a connection, or a clear error."""
    from airflow.providers.common.sql.hooks.sql import DbApiHook

    hook = BaseHook.get_connection(sql_conn_id).get_hook()
    if not isinstance(hook, DbApiHook):
        raise PeakConfigError(
            f"Connection {sql_conn_id!r} gives a {type(hook).__name__}, not a common-sql DbApiHook; "
            "use a SQL connection (postgres, sqlite, snowflake, mysql, …)"
        )
    return hook


def driver_of(conn: Any) -> str:
    """The DB-API driver's top-level module name (``psycopg2``, ``psycopg``, ``sqlite3``, …)."""
    return type(conn).__module__.split(".")[0]


def paramstyle_of(driver: str) -> str:
    return getattr(sys.modules.get(driver), "paramstyle", "format")


SERVER_SIDE_DRIVERS = ("psycopg2", "psycopg", "pymysql", "MySQLdb")


def _cursor(conn: Any, driver: str, fetch_size: int) -> Any:
    if driver in ("psycopg2", "psycopg"):
        cursor = conn.cursor(name=f"peak_{uuid.uuid4().hex[:12]}")
        cursor.itersize = fetch_size
        return cursor
    if driver in ("pymysql", "MySQLdb"):
        cursors = __import__(f"{driver}.cursors", fromlist=["SSCursor"])
        return conn.cursor(cursors.SSCursor)
    return conn.cursor()


#: Other names of the zone PostgreSQL calls ``UTC`` (same offset and abbreviation at every instant).
_UTC_ALIASES = frozenset({"etc/utc", "etc/uct", "uct", "etc/universal", "universal", "etc/zulu", "zulu"})


def _spell_utc_as_utc(conn: Any, driver: str) -> None:
    """psycopg 3 reads ``timestamptz`` twice as fast when the session zone is spelled ``UTC``: for any
    other name, such as the ``Etc/UTC`` initdb picks on many Linux hosts, it converts every value with a
    Python ``astimezone`` call. For a UTC alias the switch changes no timestamp, date or zone abbreviation
    a query computes (only ``current_setting('TimeZone')`` shows the new name), so make it."""
    if driver != "psycopg":
        return
    zone = conn.info.parameter_status("TimeZone") or ""
    if zone.lower() in _UTC_ALIASES:
        conn.execute("SET TIME ZONE 'UTC'")


Query = tuple[str, Sequence[Any] | Mapping[str, Any] | None]


@contextmanager
def stream_query(sql_conn_id: str, build: Callable[[str], Query], fetch_size: int) -> Iterator[SqlStream]:
    """Run the query ``build(driver)`` returns and stream its rows ``fetch_size`` at a time.

    ``build`` gets the driver name so it can pick bind-parameter styles; the connection closes on exit.
    """
    conn = get_db_hook(sql_conn_id).get_conn()
    driver = driver_of(conn)
    cursor = None
    try:
        _spell_utc_as_utc(conn, driver)
        cursor = _cursor(conn, driver, fetch_size)
        sql, parameters = build(driver)
        try:
            cursor.execute(sql, parameters) if parameters is not None else cursor.execute(sql)
            # a psycopg2 named cursor has no description until the first fetch
            first = cursor.fetchmany(fetch_size) if cursor.description is None else None
        except Exception:
            # the user's query is wrapped (incremental filter, ORDER BY): show what ran, never the bind values
            log.error("The warehouse query failed (%s). The SQL that ran:\n%s", sql_conn_id, sql)
            raise
        columns = [d[0] for d in cursor.description or []]

        def rows() -> Iterator[Sequence[Any]]:
            if first is not None:
                yield from first
                if len(first) < fetch_size:
                    return
            while batch := cursor.fetchmany(fetch_size):
                yield from batch

        yield SqlStream(columns=columns, driver=driver, server_side=driver in SERVER_SIDE_DRIVERS, rows=rows())
    finally:
        try:
            if cursor is not None:
                cursor.close()
        finally:
            if hasattr(conn, "rollback") and driver in ("psycopg2", "psycopg"):
                conn.rollback()  # end the read-only transaction the named cursor lived in
            conn.close()
