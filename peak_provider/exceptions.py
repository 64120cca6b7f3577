"""Typed errors: each says what went wrong in the caller's terms and never carries the token."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from airflow.providers.common.compat.sdk import AirflowException, AirflowFailException

if TYPE_CHECKING:
    from peak_provider.result import IngestResult


class PeakError(AirflowException):
    """Base class of every error this provider raises."""


class PeakConfigError(PeakError, ValueError):
    """The ``peak`` connection or an operator argument is missing or invalid."""


class PeakAuthError(PeakError):
    """The API refused the Personal Access Token (401/403). Not retried."""


class PeakHTTPError(PeakError):
    """A request failed for good: a non-retryable status, or retries ran out.

    :param status: the HTTP status, or ``None`` for a connection error or timeout.
    :param result: the partial :class:`IngestResult` of the load, when raised from ``ingest``.
    """

    def __init__(self, message: str, *, status: int | None = None, retry_after: float | None = None):
        super().__init__(message)
        self.status = status
        self.retry_after = retry_after
        self.result: IngestResult | None = None


class PeakRejectedRowsError(PeakError, AirflowFailException):
    """More rows were rejected than the task allows (``max_rejected_rows``).

    The task fails without retries: the same rows would be rejected again.
    """

    def __init__(self, message: str, summary: dict[str, Any]):
        super().__init__(message)
        self.summary = summary
