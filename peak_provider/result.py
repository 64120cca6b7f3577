"""What a load reports: every rejected row (:class:`Rejection`) and the summary (:class:`IngestResult`)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

#: How many rejected rows the summary keeps as examples (all of them go to ``on_rejected``).
REJECTED_SAMPLE_SIZE = 20


@dataclass(frozen=True)
class Rejection:
    """One row that did not make it into Peak, and why.

    :param key: the row's primary-key values (what a user searches the warehouse with), when known.
    :param field: the field at fault, when the problem is one field.
    :param reason: what is wrong, in words.
    :param code: the API's error code (``DI_E_…``) for rows the API rejected; ``None`` for client checks.
    :param row: the row as read; not kept in results.
    :param outcome: ``rejected`` (certainly not stored) or ``in_doubt`` (sent, outcome unknown: it may
        have been stored; look it up before sending it again).
    """

    key: dict[str, Any] | None
    field: str | None
    reason: str
    code: str | None = None
    row: dict[str, Any] | None = None
    outcome: str = "rejected"

    def summary(self) -> dict[str, Any]:
        """JSON-safe, row-free form used in results and logs."""
        return {"key": self.key, "field": self.field, "reason": self.reason, "code": self.code, "outcome": self.outcome}


@dataclass
class IngestResult:
    """Counts of one load; small and JSON-serialisable, so it is what operators push to XCom.

    Every row read is in exactly one bucket, after success and after any failure
    (``rows_read == rows_accepted + rows_rejected + rows_in_doubt + rows_unsent``):

    - accepted: the API confirmed it;
    - rejected: client validation, size, or the API's ``failed`` array refused it (certainly not stored);
    - in doubt: sent, but the outcome is unknown (lost answer, timeout, 5xx on APPEND, an answer not
      understood): it may have been stored; each goes to ``on_rejected`` with ``outcome="in_doubt"``;
    - unsent: read but never applied, because the load stopped first (a retry sends it).

    ``rows_sent`` counts rows in requests that got an answer the load could read.
    """

    resource: str
    object_name: str
    operation: str
    dry_run: bool = False
    rows_read: int = 0
    rows_sent: int = 0
    rows_accepted: int = 0
    rows_rejected: int = 0
    rows_in_doubt: int = 0
    rows_unsent: int = 0
    repeated_keys: int = 0  # rows whose key (as sent) repeated one still in flight: sent after it, in order
    ambiguous_times: int = 0  # naive timestamps in a DST fall-back hour (read as the earlier instant)
    nonexistent_times: int = 0  # naive timestamps in a DST gap (shifted forward by the gap)
    truncated_subseconds: int = 0  # timestamps whose fraction of a second was dropped (whole-second format)
    requests: int = 0
    retries: int = 0
    throttled: int = 0  # answers that throttled this load (429), each followed by a process-wide pause
    throttle_wait_seconds: float = 0.0  # time this process's sending was paused by throttles during the load
    bytes_sent: int = 0
    seconds: float = 0.0
    rejected_sample: list[dict[str, Any]] = field(default_factory=list)

    def add_rejection(self, rejection: Rejection) -> None:
        """Count a rejected or in-doubt row (by its ``outcome``) and keep it as an example if there is room."""
        if rejection.outcome == "in_doubt":
            self.rows_in_doubt += 1
        else:
            self.rows_rejected += 1
        if len(self.rejected_sample) < REJECTED_SAMPLE_SIZE:
            self.rejected_sample.append(rejection.summary())

    @property
    def rows_counted(self) -> int:
        """Rows in a bucket: accepted, rejected, in doubt or unsent."""
        return self.rows_accepted + self.rows_rejected + self.rows_in_doubt + self.rows_unsent

    @property
    def reconciled(self) -> bool:
        return self.rows_read == self.rows_counted

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def __str__(self) -> str:
        return (
            f"{self.resource} -> {self.object_name} ({self.operation}{', dry run' if self.dry_run else ''}): "
            f"read {self.rows_read}, sent {self.rows_sent}, accepted {self.rows_accepted}, "
            f"rejected {self.rows_rejected}, in doubt {self.rows_in_doubt}, unsent {self.rows_unsent}; "
            f"{self.requests} requests, {self.retries} retries, {self.throttled} throttled "
            f"({self.throttle_wait_seconds:.1f}s paused), "
            f"{self.bytes_sent} bytes in {self.seconds:.2f}s"
        )
