"""Getting batches to the API: size-bounded batching, the tenant rate limit, and retries.

- :class:`Batcher` closes a batch at ``max_rows_per_request`` rows or before the encoded body would pass
  ``max_request_bytes``.
- :class:`RateLimiter` spaces requests at ``1 / requests_per_second`` across every thread (and every hook
  in the process that talks to the same tenant), so the tenant limit is never exceeded.
- :class:`Transport` POSTs one body with retries: exponential backoff with jitter, ``Retry-After`` honoured.
  For ``UPSERT`` (idempotent) it retries 429, 500/502/503/504, connection errors and timeouts. For
  ``APPEND`` it retries only what certainly did not land (connection refused, 429, 503), so a batch is
  never appended twice. 413 raises :class:`PayloadTooLarge` so the caller can split the batch.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from typing import Any, ClassVar

import requests
from urllib3.exceptions import MaxRetryError, NewConnectionError

from peak_provider.exceptions import PeakAuthError, PeakHTTPError

log = logging.getLogger(__name__)

#: Statuses retried for every operation: the request was certainly not applied.
RETRY_ALWAYS = frozenset({429, 503})
#: Statuses retried only for idempotent operations (UPSERT): the request may have been applied.
RETRY_IF_IDEMPOTENT = frozenset({500, 502, 504})


class PayloadTooLarge(Exception):
    """The API answered 413 for a body (the caller splits the batch)."""


@dataclass
class Batch:
    """Encoded rows waiting to be sent together, with their running body size.

    ``first_row`` is the read position (0-based) of the batch's first row, used to checkpoint progress.
    """

    rows: list[bytes] = field(default_factory=list)
    size: int = 0
    first_row: int = 0


class Batcher:
    """Group encoded rows into batches bounded by row count and encoded body size.

    :param envelope_bytes: the size of the body around the rows (``{"solutionName": …, "data": []…}``).
    """

    def __init__(self, max_rows: int, max_bytes: int, envelope_bytes: int):
        self.max_rows = max_rows
        self.room = max_bytes - envelope_bytes  # bytes available for rows and the commas between them
        self._batch = Batch()

    def fits_alone(self, row: bytes) -> bool:
        """Whether a row can be sent at all (on its own in a body)."""
        return len(row) <= self.room

    @property
    def open_first_row(self) -> int | None:
        """Read position of the first row of the batch being filled, if it has any rows."""
        return self._batch.first_row if self._batch.rows else None

    def add(self, row: bytes, position: int) -> Batch | None:
        """Add the row read at ``position``; return the batch it closed, if adding it closed one."""
        closed = None
        extra = len(row) + (1 if self._batch.rows else 0)
        if self._batch.rows and (len(self._batch.rows) >= self.max_rows or self._batch.size + extra > self.room):
            closed, self._batch = self._batch, Batch()
            extra = len(row)
        if not self._batch.rows:
            self._batch.first_row = position
        self._batch.rows.append(row)
        self._batch.size += extra
        return closed

    def flush(self) -> Batch | None:
        """The last, partly filled batch, if any."""
        batch, self._batch = self._batch, Batch()
        return batch if batch.rows else None


class RateLimiter:
    """Thread-safe pacing: at most ``rate`` request starts in any one-second window.

    Requests are spaced ``1/rate`` seconds apart (plus 1% headroom for network jitter), which is what a
    server-side token bucket of the same rate accepts without a single 429.
    """

    _shared: ClassVar[dict[tuple[str, float], RateLimiter]] = {}
    _shared_lock = threading.Lock()

    def __init__(self, rate: float):
        self.interval = 1.01 / rate if rate > 0 else 0.0
        self._next = 0.0
        self._lock = threading.Lock()

    @classmethod
    def shared(cls, key: str, rate: float) -> RateLimiter:
        """One limiter per tenant key and rate in this process, shared by every hook that uses it."""
        with cls._shared_lock:
            limiter = cls._shared.get((key, rate))
            if limiter is None:
                limiter = cls._shared[(key, rate)] = cls(rate)
            return limiter

    def acquire(self) -> None:
        if not self.interval:
            return
        with self._lock:
            now = time.monotonic()
            start = max(now, self._next)
            self._next = start + self.interval
        if start > now:
            time.sleep(start - now)


@dataclass
class Counters:
    """Request counts of a load, updated from worker threads."""

    requests: int = 0
    retries: int = 0
    bytes_sent: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, requests: int = 0, retries: int = 0, bytes_sent: int = 0) -> None:
        with self._lock:
            self.requests += requests
            self.retries += retries
            self.bytes_sent += bytes_sent


def parse_retry_after(value: str | None) -> float | None:
    """``Retry-After`` in seconds, from delta-seconds or an HTTP date."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError):
        return None


def _connection_refused(exc: requests.ConnectionError) -> bool:
    """True when the TCP connection was never made, so the request certainly did not land."""
    if isinstance(exc, requests.ConnectTimeout):
        return True
    reason = exc.args[0] if exc.args else None
    return isinstance(reason, MaxRetryError) and isinstance(reason.reason, NewConnectionError)


class Transport:
    """POST bodies to one URL with the connection's retry, timeout and rate-limit settings.

    :param scrub: removes secrets from any text that goes into an exception.
    """

    def __init__(
        self,
        session: requests.Session,
        limiter: RateLimiter,
        *,
        timeout: float,
        max_retries: int,
        backoff: float,
        backoff_max: float,
        verify: bool,
        conn_id: str,
        scrub: Callable[[str], str],
        sleep: Callable[[float], None] = time.sleep,
    ):
        self.session = session
        self.limiter = limiter
        self.timeout = timeout
        self.max_retries = max_retries
        self.backoff = backoff
        self.backoff_max = backoff_max
        self.verify = verify
        self.conn_id = conn_id
        self.scrub = scrub
        self.sleep = sleep

    def _delay(self, attempt: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return retry_after
        base = min(self.backoff_max, self.backoff * 2 ** (attempt - 1))
        return base * random.uniform(0.5, 1.0)

    def request(
        self,
        method: str,
        url: str,
        *,
        body: bytes | None = None,
        params: dict[str, str] | None = None,
        idempotent: bool,
        counters: Counters,
    ) -> requests.Response:
        """Send one request; return the 2xx response or raise a typed error once retries are exhausted."""
        attempt = 0
        while True:
            self.limiter.acquire()
            counters.add(requests=1, bytes_sent=len(body or b""))
            retry_after: float | None = None
            status: int | None = None
            try:
                response = self.session.request(
                    method, url, data=body, params=params, timeout=self.timeout, verify=self.verify
                )
            except requests.ConnectionError as exc:
                landed_maybe = not _connection_refused(exc)
                retryable = idempotent or not landed_maybe
                problem = f"connection error ({type(exc).__name__})"
                if isinstance(exc, requests.exceptions.SSLError):
                    retryable, problem = False, f"TLS error: {self.scrub(str(exc))[:300]}"
            except requests.Timeout:
                retryable, problem = idempotent, f"no answer within {self.timeout}s (timeout)"
            else:
                status = response.status_code
                if status < 300:
                    return response
                text = self.scrub(response.text[:500])
                if status in (401, 403):
                    raise PeakAuthError(
                        f"Peak refused the Personal Access Token of connection {self.conn_id!r} (HTTP {status}): {text}"
                    )
                if status == 413:
                    raise PayloadTooLarge(text)
                retry_after = parse_retry_after(response.headers.get("Retry-After"))
                retryable = status in RETRY_ALWAYS or (idempotent and status in RETRY_IF_IDEMPOTENT)
                problem = f"HTTP {status}: {text}"
                if not retryable and status not in RETRY_IF_IDEMPOTENT:
                    raise PeakHTTPError(f"Peak API call to {url} failed: {problem}", status=status)
            if not retryable or attempt >= self.max_retries:
                why = "not retried for APPEND (it may have landed)" if not retryable else f"after {attempt} retries"
                raise PeakHTTPError(f"Peak API call to {url} failed {why}: {problem}", status=status)
            attempt += 1
            counters.add(retries=1)
            delay = self._delay(attempt, retry_after)
            log.warning(
                "Peak API: %s; retry %d/%d in %.1fs",
                f"HTTP {status}" if status else problem,
                attempt,
                self.max_retries,
                delay,
            )
            self.sleep(delay)


def json_or_none(response: requests.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None
