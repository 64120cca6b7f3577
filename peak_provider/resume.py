"""Resuming a load on a retry: a checkpoint of settled rows in Airflow 3.3's ``task_state_store``.

A resumable load orders its query by the primary key, so every attempt reads rows in the same order.
While loading it records which rows are settled for good (:class:`~peak_provider.ingest.Progress`):
the settled prefix of the read order with the primary key of its last row, and — when an APPEND load
stops — also the ranges past the prefix that were stored, rejected or left in doubt, so a retry never
sends them again. Each range keeps its counts, so the retry's summary (and ``max_rejected_rows``)
covers every attempt. A retry skips those rows after checking that the source still has the same key at
the end of each range; if the source changed, it fails instead of guessing.

The checkpoint is tied to the exact query, parameters and operation, and deleted when the load succeeds.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

from peak_provider.exceptions import PeakResumeError
from peak_provider.ingest import Progress
from peak_provider.result import IngestResult

KEY = "peak_checkpoint"


def fingerprint(sql: str, parameters: Any) -> str:
    return hashlib.sha256(json.dumps([sql, parameters], default=str, sort_keys=True).encode()).hexdigest()[:16]


class Checkpoint:
    """Read, save (the hook reports progress after every batch that grows it) and clear a load's checkpoint."""

    def __init__(self, context: Mapping[str, Any], query_fingerprint: str, operation: str):
        self.store = context.get("task_state_store")
        self.fingerprint = query_fingerprint
        self.operation = operation
        self.earlier: Progress | None = None
        self.earlier_mark: Any = None  # watermark mode: the mark of the rows earlier attempts read (JSON form)
        self.attempts = 1

    @property
    def available(self) -> bool:
        return self.store is not None

    @property
    def rows_skipped(self) -> int:
        return sum(r[1] - r[0] for r in self.earlier.ranges) if self.earlier else 0

    def load(self) -> Progress | None:
        """What earlier attempts of this task instance settled for the same query and operation, if any."""
        if self.store is None:
            return None
        saved = self.store.get(KEY)
        if (
            isinstance(saved, dict)
            and saved.get("query") == self.fingerprint
            and saved.get("operation") == self.operation
            and isinstance(saved.get("ranges"), list)
        ):
            self.earlier = Progress(
                ranges=[[int(v) for v in r] for r in saved["ranges"]],
                keys={int(k): v for k, v in (saved.get("keys") or {}).items()},
            )
            self.attempts = int(saved.get("attempts", 1)) + 1
            self.earlier_mark = saved.get("mark")
        return self.earlier

    def save(self, progress: Progress, mark: Any = None) -> None:
        """Store ``progress``; ``mark``: watermark mode's mark of the rows read so far (JSON form), which a
        retry starts from, since it skips the settled rows rather than reading their values again."""
        if self.store is not None:
            self.store.set(
                KEY,
                {
                    "query": self.fingerprint,
                    "operation": self.operation,
                    "ranges": progress.ranges,
                    "keys": {str(k): jsonable_key(v) for k, v in progress.keys.items()},
                    "mark": mark,
                    "attempts": self.attempts,
                },
            )

    def clear(self) -> None:
        if self.store is not None:
            self.store.delete(KEY)


def jsonable_key(key: Any) -> Any:
    """A wire key as JSON keeps it (a tuple comes back a list), so keys compare across attempts."""
    return list(key) if isinstance(key, tuple | list) else key


class Skipper:
    """Skips the rows an earlier attempt settled for good, checking the key at the end of each range.

    A range is walked as a whole: its counts are carried, and its rows count as read, only at its last row.
    Until then it is still the earlier attempts' (:meth:`pending`), so a stop part-way through it neither
    loses it from the checkpoint nor counts its rows.
    """

    def __init__(self, progress: Progress, result: IngestResult):
        self.ranges = sorted(progress.ranges)
        self.keys = {int(k): v for k, v in progress.keys.items()}
        self.result = result
        self._i = 0
        self._done = 0  # the ranges before this one were walked to their end

    def skips(self, position: int) -> bool:
        ranges = self.ranges
        while self._i < len(ranges) and position >= ranges[self._i][1]:
            self._i += 1
        return self._i < len(ranges) and ranges[self._i][0] <= position

    def check(self, position: int, key: Any) -> tuple[Any, list[int] | None]:
        """Key and, on a range's last row (after its key check), the range with the counts it carries:
        ``[start, end, accepted, rejected, in_doubt]``."""
        walked = self.ranges[self._i]
        _start, end, accepted, rejected, in_doubt = walked
        if position != end - 1:
            return key, None
        # the range's counts are the earlier attempts' facts: carried even if the check below fails
        self.result.rows_accepted += accepted
        self.result.rows_rejected += rejected
        self.result.rows_in_doubt += in_doubt
        self._done = self._i + 1
        expected = self.keys.get(position)
        if expected is not None and key is not None and jsonable_key(key) != jsonable_key(expected):
            raise PeakResumeError(
                f"Cannot resume: row {position + 1} of the query now has key {jsonable_key(key)}, but the earlier "
                f"attempt settled {jsonable_key(expected)} there; the source changed between attempts. The "
                "checkpoint is dropped: a new attempt starts from the top (for APPEND it appends again what the "
                "earlier attempts stored)"
            )
        return key, walked

    def unfinished(self, last_position: int) -> int:
        """Rows up to ``last_position`` read in a range not yet walked to its end: not counted as read (the
        range's counts come at its end)."""
        if self._done < len(self.ranges):
            start, end = self.ranges[self._done][:2]
            if start <= last_position:
                return min(last_position, end - 1) + 1 - start
        return 0

    def pending(self, progress: Progress) -> Progress:
        """``progress`` (this attempt's) with every earlier range it does not cover: still settled, so every
        checkpoint this attempt saves keeps them (a range walked to its end is covered only once this
        attempt's prefix, or its final progress, reaches it)."""
        covered = progress.ranges
        rest = [r for r in self.ranges if not any(c[0] <= r[0] and r[1] <= c[1] for c in covered)]
        if not rest:
            return progress
        keys = {**progress.keys, **{r[1] - 1: self.keys.get(r[1] - 1) for r in rest}}
        return Progress(sorted([*progress.ranges, *(list(r) for r in rest)]), keys)

    def finish(self, last_position: int) -> None:
        if self.ranges and self.ranges[-1][1] - 1 > last_position:
            raise PeakResumeError(
                f"Cannot resume: the query now yields {last_position + 1} rows, but the earlier attempt settled "
                f"rows up to {self.ranges[-1][1]}; the source changed between attempts"
            )
