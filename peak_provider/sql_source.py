"""Streaming rows out of any common-sql connection with flat memory.

The rows come ``fetch_size`` at a time from a cursor that streams (what that takes differs between
drivers: :mod:`peak_provider.drivers`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from airflow.providers.common.compat.sdk import BaseHook

from peak_provider.drivers import driver_of, end_session, prepare_session, streaming_cursor
from peak_provider.exceptions import PeakConfigError

log = logging.getLogger(__name__)


Query = tuple[str, Sequence[Any] | Mapping[str, Any] | None]


@dataclass
class SqlStream:
    """An open query: the SQL and parameters that ran, its column names, driver and a row iterator (tuples)."""

    query: Query
    columns: list[str]
    driver: str
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


@contextmanager
def stream_query(sql_conn_id: str, build: Callable[[str], Query], fetch_size: int) -> Iterator[SqlStream]:
    """Run the query ``build(driver)`` returns and stream its rows ``fetch_size`` at a time.

    ``build`` gets the driver name so it can pick bind-parameter styles; the connection closes on exit.
    """
    conn = get_db_hook(sql_conn_id).get_conn()
    driver = driver_of(conn)
    cursor = None
    try:
        prepare_session(conn, driver)
        cursor = streaming_cursor(conn, driver, fetch_size)
        sql, parameters = query = build(driver)
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

        yield SqlStream(query=query, columns=columns, driver=driver, rows=rows())
    finally:
        try:
            if cursor is not None:
                cursor.close()
        finally:
            end_session(conn, driver)
            conn.close()
