"""Resuming a load after a crash: a checkpoint of settled rows in Airflow 3.3's ``task_state_store``.

With ``resumable=True`` the operator orders the query by the primary key, so every attempt reads rows
in the same order. While loading it records how many leading rows are settled (accepted or rejected);
a retry of the same task instance skips that many rows instead of sending them again, so what is
re-sent after a crash is at most the batches that were in flight. The checkpoint is tied to the exact
query and parameters, and deleted when the load succeeds.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

KEY = "peak_checkpoint"


def fingerprint(sql: str, parameters: Any) -> str:
    return hashlib.sha256(json.dumps([sql, parameters], default=str, sort_keys=True).encode()).hexdigest()[:16]


class Checkpoint:
    """Read, advance (the hook calls it after every batch that grows the settled prefix) and clear a
    load's checkpoint."""

    def __init__(self, context: Mapping[str, Any], query_fingerprint: str):
        self.store = context.get("task_state_store")
        self.fingerprint = query_fingerprint
        self.skipped = 0

    @property
    def available(self) -> bool:
        return self.store is not None

    def load(self) -> int:
        """Rows settled by an earlier attempt of this task instance for the same query (0 if none)."""
        if self.store is None:
            return 0
        saved = self.store.get(KEY)
        if isinstance(saved, dict) and saved.get("query") == self.fingerprint:
            self.skipped = int(saved.get("rows_done", 0))
        return self.skipped

    def advance(self, rows_done_this_attempt: int) -> None:
        """Record that the first ``rows_done_this_attempt`` rows of this attempt are settled."""
        if self.store is not None:
            self.store.set(KEY, {"rows_done": self.skipped + rows_done_this_attempt, "query": self.fingerprint})

    def clear(self) -> None:
        if self.store is not None:
            self.store.delete(KEY)
