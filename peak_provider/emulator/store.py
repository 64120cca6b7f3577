"""SQLite storage: one table per object plus ``<OBJECT>_failed_rows``, rows kept as JSON text."""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from peak_provider.api import UPSERT
from peak_provider.emulator.config import DEFAULT_UPSERT, UPSERT_MODES

#: Primary keys per ``SELECT … IN (…)`` when merging (well under SQLite's bound-parameter limit).
_MERGE_CHUNK = 500


def _unserialisable(value: Any) -> Any:
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def _make_dumps() -> Callable[[Any], str]:
    """Compact JSON encoding, calling the C encoder directly when available (rows are encoded one by one)."""
    make = getattr(json.encoder, "c_make_encoder", None)
    if make is None:
        return json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode
    encoder = make(None, _unserialisable, json.encoder.encode_basestring, None, ":", ",", False, False, True)
    return lambda value: "".join(encoder(value, 0))


_dumps = _make_dumps()


def _key(row: dict[str, Any], primary_key: Sequence[str]) -> str:
    """The primary-key value of a row as text (``repr`` keeps 1, 1.0, "1" and true apart)."""
    return repr(tuple([row.get(k) for k in primary_key]))


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def failed_table(object_name: str) -> str:
    return f"{object_name}_failed_rows"


class Store:
    """One sqlite connection guarded by a lock; writes go through ``executemany``.

    Rows are stored as sent (keys normalised to the catalogue names) in insertion order. ``UPSERT``
    replaces every stored row with the same primary key by one row (it goes to the end of the order):
    the sent row (``upsert="replace"``), or the latest stored row with the sent columns written over
    it (``upsert="merge"``).
    """

    def __init__(self, path: str = ":memory:", upsert: str = DEFAULT_UPSERT):
        if upsert not in UPSERT_MODES:
            raise ValueError(f"Unknown UPSERT mode {upsert!r}; known: {', '.join(UPSERT_MODES)}")
        self.path = path
        self.upsert = upsert
        self._lock = threading.Lock()
        self._conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        if path != ":memory:":
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=OFF")
        self._tables: set[str] = {
            r[0]
            for r in self._conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
            if not r[0].startswith("sqlite_")
        }

    def _ensure(self, object_name: str) -> None:
        if object_name not in self._tables:
            t = _quote(object_name)
            self._conn.execute(
                f"CREATE TABLE IF NOT EXISTS {t} (seq INTEGER PRIMARY KEY AUTOINCREMENT, pk TEXT, data TEXT NOT NULL)"
            )
            self._conn.execute(f"CREATE INDEX IF NOT EXISTS {_quote(object_name + '_pk')} ON {t} (pk)")
            self._tables.add(object_name)
        failed = failed_table(object_name)
        if failed not in self._tables:
            self._conn.execute(
                f"CREATE TABLE IF NOT EXISTS {_quote(failed)} (seq INTEGER PRIMARY KEY AUTOINCREMENT, "
                "row_index INTEGER, row TEXT, errors TEXT, operation TEXT, received_at REAL)"
            )
            self._tables.add(failed)

    def write(
        self,
        object_name: str,
        operation: str,
        rows: Sequence[dict[str, Any]],
        primary_key: Sequence[str],
        failed: Sequence[dict[str, Any]] = (),
    ) -> None:
        """Store valid ``rows`` (UPSERT or APPEND) and ``failed`` entries in one transaction."""
        if not rows and not failed:
            return
        upsert = operation == UPSERT and bool(primary_key)
        merge = upsert and self.upsert == "merge"
        sent: dict[str, dict[str, Any]] = {}
        records: list[tuple[str, str]] = []
        if merge:
            for row in rows:
                key = _key(row, primary_key)
                sent[key] = {**sent[key], **row} if key in sent else row
        elif upsert:
            latest: dict[str, str] = {}
            for row in rows:
                latest[_key(row, primary_key)] = _dumps(row)
            records = list(latest.items())
        else:
            records = [(_key(row, primary_key), _dumps(row)) for row in rows]
        now = time.time()
        failed_records = [(f["index"], _dumps(f["row"]), _dumps(f["errors"]), operation, now) for f in failed]
        with self._lock:
            self._ensure(object_name)
            t = _quote(object_name)
            self._conn.execute("BEGIN")
            try:
                if merge:
                    stored = self._latest(t, list(sent))
                    records = [
                        (key, _dumps({**json.loads(stored[key]), **row} if key in stored else row))
                        for key, row in sent.items()
                    ]
                if upsert:
                    self._conn.executemany(f"DELETE FROM {t} WHERE pk = ?", [(r[0],) for r in records])
                self._conn.executemany(f"INSERT INTO {t} (pk, data) VALUES (?, ?)", records)
                if failed_records:
                    self._conn.executemany(
                        f"INSERT INTO {_quote(failed_table(object_name))} "
                        "(row_index, row, errors, operation, received_at) VALUES (?, ?, ?, ?, ?)",
                        failed_records,
                    )
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")

    def _latest(self, table: str, keys: list[str]) -> dict[str, str]:
        """The latest stored row (JSON text) per primary key of ``keys`` that has one."""
        found: dict[str, str] = {}
        for i in range(0, len(keys), _MERGE_CHUNK):
            chunk = keys[i : i + _MERGE_CHUNK]
            marks = ",".join("?" * len(chunk))
            query = f"SELECT pk, data FROM {table} WHERE pk IN ({marks}) ORDER BY seq"
            found.update(self._conn.execute(query, chunk).fetchall())
        return found

    def rows(self, object_name: str) -> list[dict[str, Any]]:
        """Stored rows of ``object_name`` in insertion order ([] for an object never written)."""
        with self._lock:
            if object_name not in self._tables:
                return []
            data = self._conn.execute(f"SELECT data FROM {_quote(object_name)} ORDER BY seq").fetchall()
        return [json.loads(d[0]) for d in data]

    def failed_rows(self, object_name: str) -> list[dict[str, Any]]:
        """Rejected rows of ``object_name``: ``{"index", "row", "errors", "operationType"}``."""
        table = failed_table(object_name)
        with self._lock:
            if table not in self._tables:
                return []
            data = self._conn.execute(
                f"SELECT row_index, row, errors, operation FROM {_quote(table)} ORDER BY seq"
            ).fetchall()
        return [
            {"index": i, "row": json.loads(r), "errors": json.loads(e), "operationType": op} for i, r, e, op in data
        ]

    def count(self, object_name: str) -> int:
        with self._lock:
            if object_name not in self._tables:
                return 0
            return int(self._conn.execute(f"SELECT COUNT(*) FROM {_quote(object_name)}").fetchone()[0])

    def reset(self) -> None:
        """Drop every table."""
        with self._lock:
            for name in sorted(self._tables):
                self._conn.execute(f"DROP TABLE IF EXISTS {_quote(name)}")
            self._tables.clear()

    def close(self) -> None:
        with self._lock:
            self._conn.close()
