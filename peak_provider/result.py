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
    :param row: the row as read (client-side rejections) or as sent (API rejections); not kept in results.
    """

    key: dict[str, Any] | None
    field: str | None
    reason: str
    code: str | None = None
    row: dict[str, Any] | None = None

    def summary(self) -> dict[str, Any]:
        """JSON-safe, row-free form used in results and logs."""
        return {"key": self.key, "field": self.field, "reason": self.reason, "code": self.code}


@dataclass
class IngestResult:
    """Counts of one load; small and JSON-serialisable, so it is what operators push to XCom.

    ``rows_read == rows_accepted + rows_rejected`` once a load completes: rows are read, then either
    accepted by the API or rejected (by client validation, by size, or in the API's ``failed`` array).
    """

    resource: str
    object_name: str
    operation: str
    dry_run: bool = False
    rows_read: int = 0
    rows_sent: int = 0
    rows_accepted: int = 0
    rows_rejected: int = 0
    requests: int = 0
    retries: int = 0
    bytes_sent: int = 0
    seconds: float = 0.0
    rejected_sample: list[dict[str, Any]] = field(default_factory=list)

    def add_rejection(self, rejection: Rejection) -> None:
        self.rows_rejected += 1
        if len(self.rejected_sample) < REJECTED_SAMPLE_SIZE:
            self.rejected_sample.append(rejection.summary())

    @property
    def reconciled(self) -> bool:
        return self.rows_read == self.rows_accepted + self.rows_rejected

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def __str__(self) -> str:
        return (
            f"{self.resource} -> {self.object_name} ({self.operation}{', dry run' if self.dry_run else ''}): "
            f"read {self.rows_read}, sent {self.rows_sent}, accepted {self.rows_accepted}, "
            f"rejected {self.rows_rejected}; {self.requests} requests, {self.retries} retries, "
            f"{self.bytes_sent} bytes in {self.seconds:.2f}s"
        )
