"""One API call with the connection's rules: pacing, a total deadline, classification and retries.

- Pacing is :mod:`peak_provider.ratecontrol`'s: even spacing at the tenant's rate, adaptive backoff on
  throttles (a throttle pauses every thread of the process), one budget for every process of the host (the
  default) or in Redis for every worker.
  A throttle (429, or 503 with ``Retry-After`` on an idempotent call) is not a failure: it does not use up
  ``max_retries``; it fails the call only when waiting would pass ``max_throttle_wait``.
- :class:`Transport` sends one request. Redirects are never followed. Every failure is classified by
  :mod:`peak_provider.retries` (the one retry table) and retried or not by it; what is finally raised is a
  :class:`~peak_provider.exceptions.PeakHTTPError` carrying the status, the cause and whether the request
  may have been applied. A request is bounded in total (connect + send + the whole answer) by
  ``request_deadline``: a watchdog shuts the socket of a request that runs past it, so a server that
  trickles its answer cannot hold a load forever. 413 raises :class:`PayloadTooLarge` for the caller to
  split the batch.
"""

from __future__ import annotations

import contextlib
import heapq
import logging
import random
import re
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar
from urllib.parse import urljoin, urlsplit

import requests
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import MaxRetryError, NewConnectionError

from peak_provider.exceptions import PeakAuthError, PeakHTTPError
from peak_provider.ratecontrol import RateControl, parse_retry_after
from peak_provider.reply import NotUnderstood, excerpt
from peak_provider.retries import TABLE, Applied, Cause, cause_of_status, retryable

log = logging.getLogger(__name__)

T = TypeVar("T")


class PayloadTooLarge(Exception):
    """The API answered 413 for a body (the caller splits the batch)."""


@dataclass
class Counters:
    """Request counts of a load, updated from worker threads."""

    requests: int = 0
    retries: int = 0
    throttled: int = 0
    bytes_sent: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, requests: int = 0, retries: int = 0, bytes_sent: int = 0, throttled: int = 0) -> None:
        with self._lock:
            self.requests += requests
            self.retries += retries
            self.bytes_sent += bytes_sent
            self.throttled += throttled


# --- the total deadline ---------------------------------------------------------------------------------

_current = threading.local()  # .deadline: monotonic deadline of the request this thread is sending


class _Watchdog:
    """Shuts the socket of any request still running past its deadline (one daemon thread per process)."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._heap: list[tuple[float, int, int, HTTPConnection]] = []
        self._seq = 0
        self._active: dict[int, HTTPConnection] = {}  # id(conn) -> conn, while its request runs
        self._thread: threading.Thread | None = None

    def watch(self, deadline: float, conn: HTTPConnection) -> None:
        with self._cond:
            self._active[id(conn)] = conn
            self._seq += 1
            heapq.heappush(self._heap, (deadline, self._seq, id(conn), conn))
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="peak-deadline", daemon=True)
                self._thread.start()
            self._cond.notify()

    def release(self, conn: HTTPConnection) -> None:
        with self._cond:
            self._active.pop(id(conn), None)

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._heap:
                    self._cond.wait()
                deadline, _, key, conn = self._heap[0]
                wait = deadline - time.monotonic()
                if wait > 0:
                    self._cond.wait(min(wait, 60.0))
                    continue
                heapq.heappop(self._heap)
                expired = self._active.get(key) is conn
                if expired:
                    del self._active[key]
            sock = (getattr(conn, "sock", None) or getattr(conn, "_peak_sock", None)) if expired else None
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)


_WATCHDOG = _Watchdog()


class _DeadlineMixin:
    """A urllib3 connection that hands itself to the watchdog for the request the thread is sending."""

    def request(self, *args: Any, **kwargs: Any) -> Any:
        deadline = getattr(_current, "deadline", None)
        if deadline is not None:
            _current.conn = self
            _WATCHDOG.watch(deadline, self)  # type: ignore[arg-type]
        return super().request(*args, **kwargs)  # type: ignore[misc]

    def getresponse(self, *args: Any, **kwargs: Any) -> Any:
        # http.client drops .sock once an answer will close the connection: keep it for the watchdog
        self._peak_sock = getattr(self, "sock", None)
        response = super().getresponse(*args, **kwargs)  # type: ignore[misc]
        if response.status < 200:
            # http.client skips only "100 Continue": another 1xx (102, 103 Early Hints) comes back as if it were
            # the answer, with the real one still to come on this connection. Close it now, before the pool
            # takes it back, so that no later request reads this request's answer as its own. What the 1xx
            # means for the request is retries.cause_of_status's to say.
            self.close()  # type: ignore[attr-defined]
        return response


class _HTTPConnection(_DeadlineMixin, HTTPConnection):
    pass


class _HTTPSConnection(_DeadlineMixin, HTTPSConnection):
    pass


class _HTTPPool(HTTPConnectionPool):
    ConnectionCls = _HTTPConnection


class _HTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _HTTPSConnection


_POOLS = {"http": _HTTPPool, "https": _HTTPSPool}


class DeadlineAdapter(HTTPAdapter):
    """An :class:`HTTPAdapter` whose connections honour the calling thread's request deadline."""

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = _POOLS

    def proxy_manager_for(self, proxy: str, **proxy_kwargs: Any) -> Any:
        manager = super().proxy_manager_for(proxy, **proxy_kwargs)
        manager.pool_classes_by_scheme = _POOLS
        return manager


# --- classification ---------------------------------------------------------------------------------------

_OBJECT_REPR = re.compile(r"<[\w.]+ object at 0x[0-9a-fA-F]+>:?\s*")


def _reason_of(exc: BaseException) -> str:
    """The underlying reason of a requests/urllib3 exception, without object reprs."""
    inner: Any = exc.args[0] if exc.args else exc
    if isinstance(inner, MaxRetryError) and inner.reason is not None:
        inner = inner.reason
    text = str(inner) or type(inner).__name__
    return _OBJECT_REPR.sub("", text).strip()


def _classify_exception(exc: requests.RequestException, reached: bool) -> Cause:
    """The cause of a failed send; ``reached``: whether the request got as far as a connection's ``request()``.

    Before that point nothing of the request can have been sent: requests prepares the request (and refuses a
    bad header of ours) before it takes a connection, and urllib3 runs the TLS handshake of a new connection
    (certificate verification included) before it sends on it. From that point on, the request may be on the
    wire: an invalid header or a TLS error is then the answer's, and the request may have been applied.
    """
    if isinstance(exc, requests.exceptions.SSLError):
        return Cause.DROPPED if reached else Cause.TLS  # after the handshake: the connection broke mid-exchange
    if isinstance(exc, requests.ConnectTimeout):
        return Cause.REFUSED
    if isinstance(exc, requests.Timeout):
        return Cause.TIMEOUT
    if isinstance(exc, requests.exceptions.ChunkedEncodingError | requests.exceptions.ContentDecodingError):
        return Cause.TRUNCATED
    if isinstance(exc, requests.ConnectionError):
        reason = exc.args[0] if exc.args else None
        if isinstance(reason, MaxRetryError) and isinstance(reason.reason, NewConnectionError):
            return Cause.REFUSED
        return Cause.DROPPED
    if isinstance(
        exc,
        requests.exceptions.InvalidHeader
        | requests.exceptions.InvalidURL
        | requests.exceptions.MissingSchema
        | requests.exceptions.InvalidSchema,
    ):
        return Cause.TRUNCATED if reached else Cause.INVALID_REQUEST  # reached: a header of the answer
    return Cause.DROPPED  # any other failure after the request started: it may have been sent


def _read_status_body(status: int, body: bytes) -> tuple[int, bytes]:
    return status, body


class Transport:
    """Send requests to one API with the connection's retry, timeout, deadline and rate-limit settings.

    :param scrub: removes secrets from any text that goes into an exception or a log line.
    """

    def __init__(
        self,
        session: requests.Session,
        control: RateControl,
        *,
        timeout: float,
        max_throttle_wait: float = 900.0,
        deadline: float,
        max_retries: int,
        backoff: float,
        backoff_max: float,
        verify: bool,
        conn_id: str,
        scrub: Callable[[str], str],
        sleep: Callable[[float], None] = time.sleep,
    ):
        self.session = session
        self.control = control
        self.max_throttle_wait = max_throttle_wait
        self.timeout = timeout
        self.deadline = deadline
        self.max_retries = max_retries
        self.backoff = backoff
        self.backoff_max = backoff_max
        self.verify = verify
        self.conn_id = conn_id
        self.scrub = scrub
        self.sleep = sleep

    def _delay(self, attempt: int) -> float:
        base = min(self.backoff_max, self.backoff * 2 ** (attempt - 1))
        return base * random.uniform(0.5, 1.0)

    def _send(self, method: str, url: str, body: bytes | None, params: dict[str, str] | None) -> requests.Response:
        _current.deadline = time.monotonic() + self.deadline
        _current.conn = None
        try:
            return self.session.request(
                method,
                url,
                data=body,
                params=params,
                timeout=(min(self.timeout, self.deadline), self.timeout),
                verify=self.verify,
                allow_redirects=False,
            )
        except Exception:
            # failures only: whether the request reached a connection (see _classify_exception)
            _current.reached = _current.conn is not None
            raise
        finally:
            conn = _current.conn
            _current.deadline = _current.conn = None
            if conn is not None:
                _WATCHDOG.release(conn)

    def request(
        self,
        method: str,
        url: str,
        *,
        what: str,
        body: bytes | None = None,
        params: dict[str, str] | None = None,
        idempotent: bool,
        counters: Counters,
        read: Callable[[int, bytes], T] = _read_status_body,  # type: ignore[assignment]
        max_retries: int | None = None,
    ) -> T:
        """Send one request and return ``read(status, body)`` of its 2xx answer.

        ``read`` may raise :class:`~peak_provider.reply.NotUnderstood`; that answer is then a failure
        like any other (cause ``UNRECOGNISED``). Raises :class:`PeakHTTPError` (or :class:`PeakAuthError`)
        once the retry table says stop, :class:`PayloadTooLarge` on 413.

        :param what: the operation, in words, for messages (e.g. ``ingest APPEND INV_SALE_OOTB``).
        """
        retries = self.max_retries if max_retries is None else max_retries
        attempt = 0
        throttled_since: float | None = None  # first throttle of this call since it last got an answer
        while True:
            sent_at = self.control.acquire()
            counters.add(requests=1, bytes_sent=len(body or b""))
            retry_after: float | None = None
            status: int | None = None
            started = time.monotonic()
            try:
                response = self._send(method, url, body, params)
            except Exception as exc:  # requests' own, or a socket error from under it (e.g. the watchdog's)
                if isinstance(exc, requests.RequestException):
                    cause = _classify_exception(exc, reached=_current.reached)
                else:
                    cause = Cause.DROPPED
                if cause in (Cause.DROPPED, Cause.TRUNCATED) and time.monotonic() - started >= self.deadline:
                    cause, detail = Cause.TIMEOUT, f"request_deadline of {self.deadline:g}s passed"
                elif cause is Cause.TIMEOUT:
                    detail = f"no data for {self.timeout:g}s (timeout)"
                else:
                    detail = f"{type(exc).__name__}: {excerpt(_reason_of(exc), self.scrub)}"
            else:
                status = response.status_code
                if 200 <= status < 300:
                    self.control.on_success(sent_at)
                    try:
                        return read(status, response.content)
                    except NotUnderstood as exc:
                        cause, detail = Cause.UNRECOGNISED, f"HTTP {status}: {exc}"
                elif status == 413:
                    raise PayloadTooLarge(excerpt(response.text, self.scrub, 200))
                else:
                    cause = cause_of_status(status)
                    detail = f"HTTP {status}"
                    if cause is Cause.REDIRECT:
                        location = response.headers.get("Location", "")
                        host = (urlsplit(urljoin(url, location)).netloc if location else "") or "(no Location)"
                        detail += f" to {excerpt(host, self.scrub, 100)}; rows were not sent on"
                    text = response.text
                    if text.strip():
                        detail += f": {excerpt(' '.join(text.split()), self.scrub)}"
                    retry_after = parse_retry_after(response.headers.get("Retry-After"))
                    if cause is Cause.THROTTLED or (cause is Cause.UNAVAILABLE and retry_after is not None):
                        now = time.monotonic()
                        throttled_since = now if throttled_since is None else throttled_since
                        counters.add(throttled=1)
                        waited = now - throttled_since
                        if retry_after is not None and waited + retry_after > self.max_throttle_wait:
                            raise PeakHTTPError(
                                f"Peak {what} failed: the tenant is saturated: the API asked to wait "
                                f"{retry_after:g}s (Retry-After) after {waited:.0f}s of throttling, over "
                                f"max_throttle_wait ({self.max_throttle_wait:g}s). {detail}",
                                status=status,
                                cause=cause,
                                applied=TABLE[cause].applied,
                            )
                        pause = self.control.on_throttle(retry_after, sent_at=sent_at)
                        if cause is Cause.THROTTLED or idempotent:
                            if waited + pause > self.max_throttle_wait:
                                raise PeakHTTPError(
                                    f"Peak {what} failed: the tenant is saturated: throttled for {waited:.0f}s "
                                    f"without progress (max_throttle_wait {self.max_throttle_wait:g}s). {detail}",
                                    status=status,
                                    cause=cause,
                                    applied=TABLE[cause].applied,
                                )
                            log.info("Peak %s: %s; sending paused %.1fs", what, cause.value, pause)
                            continue  # a throttle is not a failure: no retry used; acquire() waits the pause out
            rule = TABLE[cause]
            if not retryable(cause, idempotent) or attempt >= retries:
                if not retryable(cause, idempotent):
                    scope = " for APPEND" if rule.retry_idempotent else ""
                    why = f"not retried{scope}: {rule.why}"
                else:
                    why = f"after {attempt} retries" if attempt else "not retried (no retries allowed)"
                error_type = PeakAuthError if cause is Cause.AUTH else PeakHTTPError
                message = f"Peak {what} failed: {cause.value}; {why}. {detail}"
                if cause is Cause.AUTH:
                    message = (
                        f"Peak refused the Personal Access Token of connection {self.conn_id!r} ({what}): {detail}"
                    )
                raise error_type(message, status=status, cause=cause, applied=rule.applied)
            attempt += 1
            counters.add(retries=1)
            delay = self._delay(attempt)
            log.warning("Peak %s: %s; retry %d/%d in %.1fs", what, cause.value, attempt, retries, delay)
            self.sleep(delay)


__all__ = ["Applied", "Counters", "DeadlineAdapter", "PayloadTooLarge", "Transport"]
