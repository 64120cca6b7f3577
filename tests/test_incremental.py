"""``incremental.add_filter`` in every DB-API placeholder style, run on real databases: SQLite for qmark,
numeric and named (it parses all three), PostgreSQL through psycopg2 for format and pyformat."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import pytest

from peak_provider.exceptions import PeakConfigError
from peak_provider.incremental import add_filter

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


@pytest.fixture
def sqlite_db() -> Iterator[sqlite3.Connection]:
    db = sqlite3.connect(":memory:")
    db.execute("CREATE TABLE events (kind TEXT, updated_at TEXT)")
    db.executemany("INSERT INTO events VALUES (?, ?)", ROWS)
    yield db
    db.close()


@pytest.fixture
def pg_db(postgres: dict[str, Any]) -> Iterator[Any]:
    import psycopg2

    db = psycopg2.connect(**postgres)
    db.autocommit = True
    with db.cursor() as cur:
        cur.execute("DROP TABLE IF EXISTS events")
        cur.execute("CREATE TABLE events (kind text, updated_at text)")
        cur.executemany("INSERT INTO events VALUES (%s, %s)", ROWS)
    yield db
    with db.cursor() as cur:
        cur.execute("DROP TABLE events")
    db.close()


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
    assert [r[1] for r in sqlite_db.execute(sql, params)] == sorted(r[1] for r in ROWS)

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
