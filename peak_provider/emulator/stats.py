"""Counters, the request log and the optional access log. Nothing here ever sees a token."""

from __future__ import annotations

import threading
import time
from collections import Counter, deque
from typing import IO, Any


class Recorder:
    """Records every API request (control endpoints excluded).

    :param log_size: how many request-log entries to keep (oldest dropped first).
    :param access_log: a text stream to write one line per request to, or ``None``.
    """

    def __init__(self, log_size: int = 100_000, access_log: IO[str] | None = None):
        self._lock = threading.Lock()
        self._log: deque[dict[str, Any]] = deque(maxlen=log_size)
        self.access_log = access_log
        self.reset()

    def reset(self) -> None:
        with self._lock:
            self._log.clear()
            self._by_status: Counter[str] = Counter()
            self._faults: Counter[str] = Counter()
            self._total = self._accepted = self._failed = self._bytes = self._throttled = 0

    def record(
        self,
        *,
        t: float,
        method: str,
        path: str,
        status: int | None,
        rows: int = 0,
        nbytes: int = 0,
        accepted: int = 0,
        failed: int = 0,
        fault: str | None = None,
    ) -> None:
        """Count one request; ``status`` is ``None`` when no response was sent."""
        entry = {
            "t": t,
            "method": method,
            "path": path,
            "status": status,
            "rows": rows,
            "bytes": nbytes,
            "fault": fault,
        }
        with self._lock:
            self._log.append(entry)
            self._total += 1
            self._by_status["no_response" if status is None else str(status)] += 1
            self._accepted += accepted
            self._failed += failed
            self._bytes += nbytes
            if status == 429:
                self._throttled += 1
            if fault:
                self._faults[fault] += 1
            if self.access_log is not None:
                stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))
                shown = "-" if status is None else status
                extra = f" fault={fault}" if fault else ""
                self.access_log.write(f"{stamp} {method} {path} {shown} rows={rows} bytes={nbytes}{extra}\n")
                self.access_log.flush()

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {
                "requests_total": self._total,
                "requests_by_status": dict(self._by_status),
                "rows_accepted": self._accepted,
                "rows_failed": self._failed,
                "bytes_received": self._bytes,
                "throttled": self._throttled,
                "faults": dict(self._faults),
            }

    def entries(self) -> list[dict[str, Any]]:
        with self._lock:
            return [dict(e) for e in self._log]
