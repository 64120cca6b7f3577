"""What differs between DB-API drivers, in one place: every other module asks here instead of naming drivers.

- Which driver a connection comes from (:func:`driver_of`) and its bind-parameter style
  (:func:`paramstyle_of`, :func:`placeholder`).
- A cursor that streams (:func:`streaming_cursor`): ``fetchmany`` bounds memory only when the driver
  streams. PostgreSQL (psycopg2 and psycopg 3) needs a named, server-side cursor, MySQL an unbuffered
  ``SSCursor``; SQLite, Snowflake and most others stream with their ordinary cursor.
- The session around it (:func:`prepare_session`, :func:`end_session`).
- How a datetime bound is compared (:func:`bound_value`): SQLite stores timestamps as text.
"""

from __future__ import annotations

import sys
import uuid
from datetime import UTC, datetime, tzinfo
from typing import Any

_POSTGRES = ("psycopg2", "psycopg")
_MYSQL = ("pymysql", "MySQLdb")

#: Other names of the zone PostgreSQL calls ``UTC`` (same offset and abbreviation at every instant).
_UTC_ALIASES = frozenset({"etc/utc", "etc/uct", "uct", "etc/universal", "universal", "etc/zulu", "zulu"})


def driver_of(conn: Any) -> str:
    """The DB-API driver's top-level module name (``psycopg2``, ``psycopg``, ``sqlite3``, …)."""
    return type(conn).__module__.split(".")[0]


def paramstyle_of(driver: str) -> str:
    """The driver's DB-API ``paramstyle`` (``format`` when it does not say)."""
    return getattr(sys.modules.get(driver), "paramstyle", "format")


def placeholder(name: str, position: int, paramstyle: str, positional: bool) -> str:
    """The placeholder of bind parameter ``name`` (``position``: 1-based, when ``positional``) in
    ``paramstyle``. Positional parameters bind by position whatever the style's names; named ones by name."""
    if positional:
        return {"qmark": "?", "numeric": f":{position}", "named": f":{position}"}.get(paramstyle, "%s")
    return f"%({name})s" if paramstyle in ("pyformat", "format") else f":{name}"


def bound_value(moment: datetime, driver: str, zone: tzinfo) -> Any:
    """A datetime bound as the driver compares it: SQLite stores text, so a text timestamp in the
    warehouse's ``zone``; other drivers get an aware UTC datetime."""
    moment = datetime.fromtimestamp(moment.timestamp(), tz=UTC)
    if driver == "sqlite3":
        return moment.astimezone(zone).strftime("%Y-%m-%d %H:%M:%S")
    return moment


def streaming_cursor(conn: Any, driver: str, fetch_size: int) -> Any:
    """A cursor whose ``fetchmany`` reads from the server as it goes rather than holding the whole result."""
    if driver in _POSTGRES:
        cursor = conn.cursor(name=f"peak_{uuid.uuid4().hex[:12]}")
        cursor.itersize = fetch_size
        return cursor
    if driver in _MYSQL:
        cursors = __import__(f"{driver}.cursors", fromlist=["SSCursor"])
        return conn.cursor(cursors.SSCursor)
    return conn.cursor()


def prepare_session(conn: Any, driver: str) -> None:
    """psycopg 3 reads ``timestamptz`` twice as fast when the session zone is spelled ``UTC``: for any
    other name, such as the ``Etc/UTC`` initdb picks on many Linux hosts, it converts every value with a
    Python ``astimezone`` call. For a UTC alias the switch changes no timestamp, date or zone abbreviation
    a query computes (only ``current_setting('TimeZone')`` shows the new name), so make it."""
    if driver != "psycopg":
        return
    zone = conn.info.parameter_status("TimeZone") or ""
    if zone.lower() in _UTC_ALIASES:
        conn.execute("SET TIME ZONE 'UTC'")


def end_session(conn: Any, driver: str) -> None:
    """Before closing: end the read-only transaction a PostgreSQL named cursor lived in."""
    if hasattr(conn, "rollback") and driver in _POSTGRES:
        conn.rollback()
