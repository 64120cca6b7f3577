"""Typed errors: each says what went wrong in the caller's terms and never carries the token.

Every error raised out of a load carries ``result``: the :class:`~peak_provider.result.IngestResult` so far,
whose buckets (accepted, rejected, in doubt, unsent) add up to the rows read. So does any other exception
that stops a load (a task timeout, a bug), as an attribute set on it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from airflow.providers.common.compat.sdk import AirflowException, AirflowFailException

if TYPE_CHECKING:
    from peak_provider.result import IngestResult
    from peak_provider.retries import Applied, Cause


class PeakError(AirflowException):
    """Base class of every error this provider raises; ``result`` is the load's counts so far, if any."""

    result: IngestResult | None = None


class PeakConfigError(PeakError, ValueError):
    """The ``peak`` connection or an operator argument is missing or invalid."""


class PeakHTTPError(PeakError):
    """An API call failed for good: a status or network failure the retry table does not retry (any more).

    :param status: the HTTP status, or ``None`` for a network failure.
    :param cause: the classified cause (:class:`~peak_provider.retries.Cause`).
    :param applied: whether Peak may have applied the request (:class:`~peak_provider.retries.Applied`).
    """

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        cause: Cause | None = None,
        applied: Applied | None = None,
    ):
        super().__init__(message)
        self.status = status
        self.cause = cause
        self.applied = applied


class PeakAuthError(PeakHTTPError):
    """The API refused the Personal Access Token (401/403). Not retried."""


class PeakSourceError(PeakError):
    """Reading the rows to load failed (the warehouse query or the row iterator raised)."""


class PeakSinkError(PeakError):
    """The rejected-rows sink (``on_rejected``) raised: the load stops sending, since the rows it rejects from
    then on could not be recorded. The rows are still counted; the message quotes the sink's error, scrubbed
    (it is not chained: its own text could carry the token)."""


class PeakStoppedError(PeakError):
    """The load was stopped from outside (:meth:`PeakHook.stop <peak_provider.hooks.peak.PeakHook.stop>`, e.g.
    by the operator's ``on_kill``): nothing more was sent, and the batches in flight were counted."""


class PeakRejectedRowsError(PeakError, AirflowFailException):
    """More rows were rejected (or left in doubt) than the task allows.

    The task fails without retries: the same rows would be rejected again, and rows in doubt are not
    re-sent by a retry (they may have been stored).
    """

    def __init__(self, message: str, summary: dict[str, Any]):
        super().__init__(message)
        self.summary = summary


class PeakPreflightError(PeakConfigError, AirflowFailException):
    """The query cannot load into its target (found before any row was sent; not retried)."""


class PeakEmptyIntervalError(PeakConfigError, AirflowFailException):
    """An ``interval`` load whose run has an empty data interval
    (:data:`~peak_provider.incremental.EMPTY_INTERVAL_HELP`); not retried: a retry has the same interval."""


class PeakMissedWindowsError(PeakError, AirflowFailException):
    """``missed_windows="fail"``: windows were never loaded, or (APPEND) this run would load one twice."""


class PeakResumeError(PeakError, AirflowFailException):
    """The source no longer yields the rows an earlier attempt settled, so they cannot be skipped safely."""
