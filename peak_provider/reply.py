"""The ingest API's answer: what confirms a batch, and which of its rows were rejected.

The API documents no success body beyond the ``failed`` array, so the contract is strict: a 2xx answer
confirms its batch only when it is a JSON object, with no key repeated in any of its objects (a repeated
key has two readings), that

- does not report failure itself: a ``status`` of ``FAILED``/``ERROR`` means every row not listed in
  ``failed`` was refused with the batch; ``PARTIAL_SUCCESS`` needs a non-empty ``failed``; other known
  success words (``SUCCESS``, ``OK``, ``ACCEPTED``, ``COMPLETED``) or no ``status`` are fine, anything
  else is not understood. An answer that says it failed otherwise (an ``error`` or ``errors`` that is not
  empty, a ``success`` that is not ``true``) is not understood unless its ``status`` explains it (a
  failure, or a partial success naming its rejected rows): it cannot confirm rows it says were not taken,
  nor name which;
- has no ``failed`` (none rejected) or a ``failed`` list whose entries each name a row of the batch by a
  0-based integer index in range (several entries may name one row: one per error). An entry that carries
  only the row (the API's exact shape is not documented) names the one row of the batch with the same
  primary key as sent (:func:`index_by_key`); an entry that matches no row, or several, is not understood,
  and so is one whose index and row name different rows (a 1-based index, say), and one with two index keys
  (or two echoed rows) that disagree. An index with an echoed row that names no row of the batch (the API
  may echo a key normalised: a timestamp reformatted, say) is named by its index;
- agrees with the batch in its counts, when it gives any (the API does not document them; the emulator
  sends ``received`` and ``accepted``): ``received`` is the number of rows sent and ``accepted`` the
  number not rejected, both non-negative integers.

Anything else (an HTML page, invalid JSON, a JSON array, an index out of range, more failures than
rows) raises :class:`NotUnderstood`: nothing is confirmed and the batch's rows are *in doubt*. A 204
has no body, so it confirms nothing either; a 202 is judged by its body like a 200.
"""

from __future__ import annotations

import json
import threading
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
#: The answer's counts, in the spellings looked for: the API documents none; the emulator sends the first of
#: each, the others are guesses. Every one present must agree with the batch.
_RECEIVED_KEYS = ("received", "receivedCount", "rowsReceived")
_ACCEPTED_KEYS = ("accepted", "acceptedCount", "rowsAccepted")


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
        payload = _decoder().decode(body.decode(json.detect_encoding(body), "surrogatepass"))  # as json.loads
    except _RepeatedKey as exc:
        raise NotUnderstood(
            f"HTTP {status} answer repeats the key {excerpt(str(exc.args[0]), scrub, 60)!r} in one object"
        ) from None
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
    if state in _SUCCESS:  # a failure or a partial status (with failed entries, checked above) explains it
        _no_failure_said(status, payload, scrub)
    _counts_agree(payload, rows, rows - len(failures), scrub)
    return [failures[i] for i in sorted(failures)]


class _RepeatedKey(Exception):
    """A key repeated in one JSON object: ``json.loads`` would silently keep the last value."""


_local = threading.local()


def _decoder() -> json.JSONDecoder:
    """This thread's decoder of answers: ``json.loads`` with a hook would build a new one for every answer (most
    of its cost on a short answer); one per thread, as a decoder's scanner is not promised to be re-entrant."""
    try:
        decoder: json.JSONDecoder = _local.decoder
    except AttributeError:
        decoder = _local.decoder = json.JSONDecoder(object_pairs_hook=_unique_keys)
    return decoder


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """``object_pairs_hook`` for the answer: its objects as dicts, refusing a repeated key."""
    obj = dict(pairs)
    if len(obj) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise _RepeatedKey(key)
            seen.add(key)
    return obj


def _no_failure_said(status: int, payload: dict[str, Any], scrub: Callable[[str], str]) -> None:
    """Raise :class:`NotUnderstood` when an answer without a failure ``status`` says it failed otherwise."""
    for name in ("error", "errors"):
        said = payload.get(name)
        if said not in (None, False, "", [], {}):  # 0 == False: an error code 0 is no error either
            raise NotUnderstood(
                f"HTTP {status} answer carries {name!r} without a failure status: {_quote(said, scrub)}"
            )
    success = payload.get("success")
    if success is not None and success is not True:
        raise NotUnderstood(f"HTTP {status} answer says success {_quote(success, scrub)}")


def _quote(value: Any, scrub: Callable[[str], str]) -> str:
    """A short, scrubbed word for a value of the answer: an object by its message or code, if any."""
    if isinstance(value, dict):
        value = _first(value, (*_MESSAGE_KEYS, *_CODE_KEYS))
    if isinstance(value, bool | int | float | str):
        return excerpt(json.dumps(value), scrub, 120)
    if isinstance(value, list):
        return f"a list of {len(value)}"
    return "an object" if value is None else type(value).__name__


def _counts_agree(payload: dict[str, Any], rows: int, accepted: int, scrub: Callable[[str], str]) -> None:
    """Raise :class:`NotUnderstood` unless every count the answer gives agrees with the batch as read."""
    for keys, expected in ((_RECEIVED_KEYS, rows), (_ACCEPTED_KEYS, accepted)):
        for key in keys:
            count = payload.get(key)
            if count is None or count is True or (count == expected and type(count) is int):
                continue  # "accepted": true (on a 202, say) is a flag, not a count; false is no confirmation
            if type(count) is not int or count < 0:
                said = json.dumps(count) if isinstance(count, bool | int | float | str) else type(count).__name__
                raise NotUnderstood(f"the answer's {key!r} is {excerpt(said, scrub, 40)}, not a count of rows")
            meaning = (
                f"the batch had {rows} rows"
                if keys is _RECEIVED_KEYS
                else f"{rows - accepted} of the batch's {rows} rows are rejected"
            )
            raise NotUnderstood(f"the answer's {key!r} count is {count}, but {meaning} (expected {expected})")


def index_by_key(rows: Sequence[bytes], primary_key: Sequence[str]) -> KeyIndex:
    """A ``key_index`` for :func:`read_ingest_reply`: ``find(echoed, index)`` is the index of the batch row
    (encoded JSON objects, as sent) whose primary key equals the echoed row's, or ``None`` when no row or
    several rows match, or the echoed row lacks a key part. The entry's own ``index``, if any, is checked
    first (one row decoded); otherwise the batch is decoded once, so the usual answer costs nothing.
    """
    return _ByKey(rows, tuple(primary_key))


class _ByKey:
    """:func:`index_by_key`'s finder."""

    def __init__(self, rows: Sequence[bytes], primary_key: tuple[str, ...]):
        self._rows = rows
        self._primary_key = primary_key
        self._by_key: dict[tuple[Any, ...], int | None] | None = None

    def _key(self, row: Mapping[str, Any]) -> tuple[Any, ...] | None:
        if not self._primary_key or any(name not in row for name in self._primary_key):
            return None
        return tuple((type(row[name]), row[name]) for name in self._primary_key)  # 1, 1.0, True: not one key

    def _sent_key(self, position: int) -> tuple[Any, ...] | None:
        try:
            return self._key(json.loads(self._rows[position]))
        except (ValueError, RecursionError):  # e.g. a json attribute nested deeper than json.loads goes
            return None

    def __call__(self, echoed: Mapping[str, Any], index: Any = None) -> int | None:
        wanted = self._key(echoed)
        if wanted is None:
            return None
        rows = self._rows
        if type(index) is int and 0 <= index < len(rows) and self._sent_key(index) == wanted:
            return index
        if self._by_key is None:
            by_key: dict[tuple[Any, ...], int | None] = {}
            for position in range(len(rows)):
                if (sent := self._sent_key(position)) is not None:
                    by_key[sent] = None if sent in by_key else position  # a key sent twice names no one row
            self._by_key = by_key
        try:
            return self._by_key.get(wanted)
        except TypeError:  # an unhashable key part (a list or an object): sent keys are scalars
            return None


def _failure(
    entry: Any,
    rows: int,
    scrub: Callable[[str], str],
    key_index: KeyIndex | None,
) -> Failure:
    if not isinstance(entry, dict):
        raise NotUnderstood(f"a 'failed' entry is {type(entry).__name__}, not an object")
    index = _only(entry, _INDEX_KEYS, scrub)
    row = _only(entry, _ROW_KEYS, scrub)
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


def _only(entry: Mapping[str, Any], keys: Sequence[str], scrub: Callable[[str], str]) -> Any:
    """The value of the one of ``keys`` that ``entry`` carries; raise :class:`NotUnderstood` when it carries
    several that disagree (``{"index": 0, "rowIndex": 3}``): neither can be trusted over the other."""
    first: str | None = None
    value: Any = None
    for key in keys:
        other = entry.get(key)
        if other is None:
            continue
        if first is None:
            first, value = key, other
        elif type(other) is not type(value) or other != value:
            words = (_word(value, scrub), _word(other, scrub))
            values = f": {words[0]} and {words[1]}" if all(words) else ""
            raise NotUnderstood(f"a 'failed' entry's {first!r} and {key!r} disagree{values}")
    return value


def _word(value: Any, scrub: Callable[[str], str]) -> str:
    """A scalar as a short, scrubbed word; an object or list as nothing (it is not quoted)."""
    return excerpt(repr(value), scrub, 40) if isinstance(value, bool | int | float | str) else ""


def json_or_none(body: bytes) -> Any:
    """A schema call's JSON answer, or ``None`` when it is not JSON."""
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return None
