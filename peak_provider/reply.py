"""The ingest API's answer: what confirms a batch, and which of its rows were rejected.

The API documents no success body beyond the ``failed`` array, so the contract is strict: a 2xx answer
confirms its batch only when it is a JSON object that

- does not report failure itself: a ``status`` of ``FAILED``/``ERROR`` means every row not listed in
  ``failed`` was refused with the batch; ``PARTIAL_SUCCESS`` needs a non-empty ``failed``; other known
  success words (``SUCCESS``, ``OK``, ``ACCEPTED``, ``COMPLETED``) or no ``status`` are fine, anything
  else is not understood;
- has no ``failed`` (none rejected) or a ``failed`` list whose entries each name a row of the batch by a
  0-based integer index in range (several entries may name one row: one per error). An entry that carries
  only the row (the API's exact shape is not documented) names the one row of the batch with the same
  primary key as sent (:func:`index_by_key`); an entry that matches no row, or several, is not understood,
  and so is one whose index and row name different rows (a 1-based index, say).

Anything else (an HTML page, invalid JSON, a JSON array, an index out of range, more failures than
rows) raises :class:`NotUnderstood`: nothing is confirmed and the batch's rows are *in doubt*. A 204
has no body, so it confirms nothing either; a 202 is judged by its body like a 200.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

#: Longest server text quoted in a reason or error (after scrubbing).
EXCERPT = 300

_SUCCESS = frozenset({"SUCCESS", "SUCCEEDED", "OK", "ACCEPTED", "COMPLETED", "COMPLETE"})
_PARTIAL = frozenset({"PARTIAL_SUCCESS", "PARTIAL", "PARTIALLY_SUCCEEDED"})
_FAILURE = frozenset({"FAILED", "FAILURE", "ERROR"})

_INDEX_KEYS = ("index", "rowIndex", "row_index", "idx", "position")
_ROW_KEYS = ("row", "record", "data")
_FIELD_KEYS = ("field", "column", "attribute", "columnName")
_MESSAGE_KEYS = ("message", "reason", "errorMessage", "error", "description")
_CODE_KEYS = ("code", "errorCode", "error_code")


#: Finds the row of a batch that an echoed row names: ``(echoed row, the entry's index or None) -> index``.
KeyIndex = Callable[[Mapping[str, Any], Any], int | None]


class NotUnderstood(Exception):
    """A 2xx answer that does not confirm its batch; the message is short and scrubbed."""


@dataclass(frozen=True)
class Failure:
    """One rejected row of a batch: its index in the batch, and the API's words."""

    index: int
    field: str | None
    code: str | None
    reason: str


def excerpt(text: str, scrub: Callable[[str], str], limit: int = EXCERPT) -> str:
    """Scrub first, then cut: a cut must never split a secret so that part of it survives."""
    text = scrub(text)
    return text if len(text) <= limit else text[:limit] + "…"


def read_ingest_reply(
    status: int,
    body: bytes,
    rows: int,
    scrub: Callable[[str], str],
    key_index: KeyIndex | None = None,
) -> list[Failure]:
    """The rows a 2xx ingest answer rejected; raise :class:`NotUnderstood` when it confirms nothing.

    :param rows: how many rows the batch had.
    :param key_index: finds the row of the batch that a ``failed`` entry's echoed row names, given the
        entry's index if it has one (see :func:`index_by_key`).
    """
    if status == 204 or not body.strip():
        raise NotUnderstood(f"HTTP {status} with an empty body confirms nothing")
    try:
        payload = json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError):  # RecursionError: JSON nested too deep
        raise NotUnderstood(
            f"HTTP {status} answer is not JSON: {excerpt(body.decode('utf-8', 'replace'), scrub, 120)!r}"
        ) from None
    if not isinstance(payload, dict):
        raise NotUnderstood(f"HTTP {status} answer is JSON {type(payload).__name__}, not an object")
    word = payload.get("status")
    state = str(word).upper() if word is not None else "SUCCESS"
    if state not in _SUCCESS | _PARTIAL | _FAILURE:
        raise NotUnderstood(f"HTTP {status} answer has an unknown status {excerpt(str(word), scrub, 60)!r}")
    raw = payload.get("failed", [])
    if raw is None:
        raw = []
    if not isinstance(raw, list):
        raise NotUnderstood(f"'failed' is a {type(raw).__name__}, not a list")
    failures: dict[int, Failure] = {}
    for entry in raw:
        failure = _failure(entry, rows, scrub, key_index)
        failures.setdefault(failure.index, failure)
    if state in _PARTIAL and not failures:
        raise NotUnderstood(f"status {state} without any 'failed' entry")
    if state in _FAILURE:
        reason = f"the API reported status {state} for the whole batch"
        for index in range(rows):
            failures.setdefault(index, Failure(index, None, None, reason))
    return [failures[i] for i in sorted(failures)]


def index_by_key(rows: Sequence[bytes], primary_key: Sequence[str]) -> KeyIndex:
    """A ``key_index`` for :func:`read_ingest_reply`: ``find(echoed, index)`` is the index of the batch row
    (encoded JSON objects, as sent) whose primary key equals the echoed row's, or ``None`` when no row or
    several rows match, or the echoed row lacks a key part. The entry's own ``index``, if any, is checked
    first (one row decoded); otherwise the batch is decoded once, so the usual answer costs nothing.
    """
    by_key: dict[tuple[Any, ...], int | None] | None = None

    def key(row: Mapping[str, Any]) -> tuple[Any, ...] | None:
        if not primary_key or any(name not in row for name in primary_key):
            return None
        return tuple((type(row[name]), row[name]) for name in primary_key)  # 1, 1.0 and True are not one key

    def sent_key(position: int) -> tuple[Any, ...] | None:
        try:
            return key(json.loads(rows[position]))
        except (ValueError, RecursionError):  # e.g. a json attribute nested deeper than json.loads goes
            return None

    def find(echoed: Mapping[str, Any], index: Any = None) -> int | None:
        nonlocal by_key
        wanted = key(echoed)
        if wanted is None:
            return None
        if type(index) is int and 0 <= index < len(rows) and sent_key(index) == wanted:
            return index
        if by_key is None:
            by_key = {}
            for position in range(len(rows)):
                if (sent := sent_key(position)) is not None:
                    by_key[sent] = None if sent in by_key else position  # a key sent twice names no one row
        try:
            return by_key.get(wanted)
        except TypeError:  # an unhashable key part (a list or an object): sent keys are scalars
            return None

    return find


def _failure(
    entry: Any,
    rows: int,
    scrub: Callable[[str], str],
    key_index: KeyIndex | None,
) -> Failure:
    if not isinstance(entry, dict):
        raise NotUnderstood(f"a 'failed' entry is {type(entry).__name__}, not an object")
    index = _first(entry, _INDEX_KEYS)
    row = _first(entry, _ROW_KEYS)
    found = key_index(row, index) if key_index is not None and isinstance(row, dict) else None
    if index is None:
        if found is None:
            raise NotUnderstood("a 'failed' entry names no row of the batch (no index, no matching row)")
        index = found
    elif found is not None and found != index:
        raise NotUnderstood(
            f"a 'failed' entry's index {excerpt(repr(index), scrub, 40)} and its row (row {found}) disagree"
        )
    if not isinstance(index, int) or isinstance(index, bool):
        raise NotUnderstood(f"a 'failed' index is {excerpt(repr(index), scrub, 40)}, not an integer")
    if not 0 <= index < rows:
        raise NotUnderstood(f"a 'failed' index {index} is outside the batch of {rows} rows")
    parts = _error_parts(entry)
    reasons = []
    for part in parts:
        message = _first(part, _MESSAGE_KEYS)
        category = part.get("category")
        field = _first(part, _FIELD_KEYS)
        if message is None:
            message = json.dumps({k: v for k, v in part.items() if k not in _ROW_KEYS}, default=str)
        words = (f"[{category}]" if category else None, f"{field}:" if field else None, str(message))
        reasons.append(" ".join(w for w in words if w))
    field = _first(parts[0], _FIELD_KEYS)
    code = _first(parts[0], _CODE_KEYS)
    return Failure(
        index=index,
        field=excerpt(str(field), scrub, 100) if field is not None else None,
        code=excerpt(str(code), scrub, 40) if code is not None else None,
        reason=excerpt("; ".join(reasons), scrub),
    )


def _error_parts(entry: dict[str, Any]) -> list[dict[str, Any]]:
    errors = entry.get("errors")
    if isinstance(errors, list) and errors:
        return [e if isinstance(e, dict) else {"message": str(e)} for e in errors]
    if isinstance(entry.get("error"), dict):
        return [entry["error"]]
    return [entry]


def _first(mapping: Mapping[str, Any], keys: Sequence[str]) -> Any:
    return next((mapping[k] for k in keys if mapping.get(k) is not None), None)


def json_or_none(body: bytes) -> Any:
    """A schema call's JSON answer, or ``None`` when it is not JSON."""
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return None
