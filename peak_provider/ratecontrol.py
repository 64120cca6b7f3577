"""How fast this process may send to one tenant: Retry-After, adaptive pacing, and a budget per host or in Redis.

- :func:`parse_retry_after` reads a ``Retry-After`` header (delta-seconds or an HTTP date) and never raises.
- :class:`AdaptivePacer` spaces request starts evenly at a current rate shared by every thread of the process
  for one tenant. The rate starts at ``requests_per_second`` and never goes above it. A throttle (429, or 503
  with ``Retry-After``) cuts it and pauses all of the process's sending. Successes bring it back along the CUBIC
  curve of botocore (``botocore/retries/throttling.py``), scaled for many workers sharing one tenant (see the
  class). With no throttles the pacing is the plain ``1.01 / rate`` spacing.
- :class:`SharedBudget` also draws every request slot from one "next free slot" (GCRA) schedule per tenant,
  so that the processes drawing from it are spaced at ``requests_per_second`` in total: :class:`RedisSlots`
  (a Lua script run atomically against Redis's clock: every worker on every machine) or :class:`HostSlots`
  (a small file updated under ``flock``: every process of this host). If the store fails, it logs one
  warning and falls back to the pacer.
- :func:`budget_key` names a tenant's budget without the token; :func:`redis_client` builds the ``redis``
  client (an optional dependency, imported lazily) from an Airflow ``redis`` connection.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import math
import os
import random
import re
import stat
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Protocol
from urllib.parse import urlsplit

if TYPE_CHECKING:
    import redis

log = logging.getLogger(__name__)

#: Requests are spaced ``HEADROOM / rate`` apart: 1% headroom for network jitter, which a server-side token
#: bucket of the same rate accepts without a single 429.
HEADROOM = 1.01
#: A ``Retry-After`` longer than this (about 31 years) is reported as ``math.inf``: "too long".
TOO_LONG = 1e9

_DELTA_SECONDS = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?")


def parse_retry_after(value: str | None, *, now: Callable[[], float] = time.time) -> float | None:
    """``Retry-After`` in seconds from delta-seconds or an HTTP date; ``None`` when absent or unusable.

    Negative waits and dates in the past give ``0.0``. A wait that is infinite or longer than
    :data:`TOO_LONG` gives ``math.inf``. Callers compare it with their own bound and must never sleep on it.
    ``nan`` and garbage give ``None``. This function never raises.

    :param now: the wall clock that HTTP dates are measured against.
    """
    if value is None:
        return None
    text = value.strip()
    if not text:
        return None
    if text.lower().lstrip("+-") in ("inf", "infinity"):
        return 0.0 if text.startswith("-") else math.inf
    if _DELTA_SECONDS.fullmatch(text):
        seconds = float(text)
    else:
        try:
            when = parsedate_to_datetime(text)
            if when.tzinfo is None:  # "-0000": UTC without a claim about local time
                when = when.replace(tzinfo=UTC)
            seconds = when.timestamp() - now()
        except (TypeError, ValueError, OverflowError, IndexError, OSError):
            return None
    if math.isnan(seconds):
        return None
    if seconds > TOO_LONG:
        return math.inf
    return max(0.0, seconds)


class RateControl(Protocol):
    """What the transport needs from a rate controller: :class:`AdaptivePacer` or :class:`SharedBudget`."""

    def acquire(self) -> float: ...

    def on_throttle(self, retry_after: float | None = None, *, sent_at: float | None = None) -> float: ...

    def on_success(self, sent_at: float | None = None) -> None: ...

    @property
    def throttled(self) -> int: ...

    @property
    def throttle_wait_seconds(self) -> float: ...


class AdaptivePacer:
    """Even spacing at a current rate that adapts to throttling; thread-safe, one per tenant and process.

    :param rate: the configured ``requests_per_second``, which is also the ceiling. ``0`` or less means no limit.
        In that case only throttle pauses apply, plus the cuts once a send rate has been measured.
    :param backoff: the first pause after a throttle without ``Retry-After``. It doubles with each consecutive
        throttle, is capped at ``backoff_max``, and is jittered by a factor between 0.5 and 1. It is short: such
        a server (e.g. fixed one-second windows) is usually free again within the second, and the cut already
        slows the process down.
    :param max_pause: the longest pause that one throttle can impose. A caller that wants to fail the load on
        a longer ``Retry-After`` checks that before it calls :meth:`on_throttle`.
    :param clock: a monotonic clock (injectable, like ``sleep`` and ``rand``, so tests run on a fake clock).
    :param sleep: blocks the calling thread.
    :param rand: uniform in [0, 1), for the jitter.
    """

    #: CUBIC constants: botocore's cut factor, and the curve's scale (requests/s per s³) at an eighth of
    #: botocore's 0.4. Every worker on a tenant probes above its share along this curve, so the tenant sees
    #: K times its slope: at 0.4, 8 workers overshot 50 requests/s about once a second (5-9% of requests were
    #: 429s). At 0.05 a worker cut from 50 to 35 requests/s is back in 6.6 s.
    BETA = 0.7
    SCALE = 0.05
    #: The cut never leaves the rate above what the tenant admitted of this process's requests in the second
    #: before the throttled one was sent (when the process sent throughout that second): when K workers all
    #: start at the full rate, that is about their share, so they converge in one step instead of K halvings
    #: (each costing a round of 429s). At the very start the second reaches back before the first request,
    #: which is what makes the step: a limit that admits about one second's worth at once (a token bucket of
    #: one second's capacity, a one-second window) shows each worker its share within that second.
    ADMITTED_SPAN = 1.0
    #: Jitter added to a ``Retry-After`` wait: uniform in [0, max(MIN_JITTER, JITTER * wait)].
    JITTER = 0.2
    MIN_JITTER = 0.1
    #: Send-rate measurement: an exponential moving average over half-second buckets (botocore's RateClocker).
    _BUCKET = 0.5
    _SMOOTHING = 0.8

    _shared: ClassVar[dict[tuple[str, float], AdaptivePacer]] = {}
    _shared_lock = threading.Lock()

    def __init__(
        self,
        rate: float,
        *,
        backoff: float = 0.25,
        backoff_max: float = 60.0,
        max_pause: float = 900.0,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        rand: Callable[[], float] = random.random,
    ):
        self.max_rate = rate if rate > 0 else math.inf
        self.min_rate = min(0.5, self.max_rate)
        self.backoff = backoff
        self.backoff_max = backoff_max
        self.max_pause = max_pause
        self._clock = clock
        self._sleep = sleep
        self._rand = rand
        self._lock = threading.Lock()
        self._turn = threading.Condition()  # one thread at a time waits for the next slot; the others queue
        self._waiting_for_slot = False
        self.rate = self.max_rate
        self._interval = self._interval_at(self.rate)
        self._last_start = -math.inf  # the start of the last granted slot; the next is one interval later
        self._pause_until = -math.inf  # no request starts before this (process-wide throttle pause)
        self._paused_through = -math.inf  # end of the pause time already counted in throttle_wait_seconds
        self._engaged = False  # off the plain fast path: a throttle cut the rate and it has not recovered
        self._w_max = self.max_rate
        self._k = 0.0
        self._last_cut = -math.inf
        self._consecutive = 0  # throttle events since the last success (for the backoff without Retry-After)
        # Where this process last resumed sending, after a throttle pause or a stall of over ADMITTED_SPAN (a
        # warehouse stall, the next load): a cut counts admitted requests only after it.
        self._resumed = -math.inf
        self._measured = 0.0  # 0 until a measurement (started again after each pause or stall) is taken
        self._count = 0
        self._measuring_since: float | None = None  # the first send of the measurement; None: start again
        # Send times of recent answered, unthrottled requests. The newest is always kept: a non-empty deque
        # means the caller reports send times, so a cut may use what was admitted.
        self._admitted: deque[float] = deque()
        self._last_bucket = 0.0  # the bucket of the last counted send: set by the first send
        self._throttled = 0
        self._throttle_wait = 0.0

    @classmethod
    def shared(cls, key: str, rate: float) -> AdaptivePacer:
        """One pacer per tenant key and rate in this process, shared by every hook that uses it."""
        with cls._shared_lock:
            pacer = cls._shared.get((key, rate))
            if pacer is None:
                pacer = cls._shared[(key, rate)] = cls(rate)
            return pacer

    @property
    def throttled(self) -> int:
        """Throttle responses reported to this pacer (cumulative for the process: diff it per load)."""
        return self._throttled

    @property
    def throttle_wait_seconds(self) -> float:
        """Wall-clock seconds that requests of this process waited for throttle pauses to end (cumulative)."""
        return self._throttle_wait

    @property
    def consecutive_throttles(self) -> int:
        """Throttle events since the last success."""
        return self._consecutive

    def pause_remaining(self) -> float:
        """Seconds left of the current throttle pause (0 when sending is not paused)."""
        return max(0.0, self._pause_until - self._clock())

    def acquire(self) -> float:
        """Block until the next request may start; return its start time on this pacer's clock.

        Threads take turns: one sleeps until the next slot while the others queue (one wake-up per slot, so
        16 threads under the GIL do not all wake for each slot). Pass the returned value as ``sent_at`` to
        :meth:`on_throttle` if that request is throttled.
        """
        with self._turn:
            try:
                while self._waiting_for_slot:
                    self._turn.wait()
            except BaseException:  # e.g. a task timeout's signal: pass on a wake-up this thread may have taken
                self._turn.notify()
                raise
            self._waiting_for_slot = True
        try:
            while True:
                granted, value = self.try_acquire()
                if granted:
                    return value
                self._sleep(value)
        finally:
            with self._turn:
                self._waiting_for_slot = False
                self._turn.notify()

    def try_acquire(self) -> tuple[bool, float]:
        """``(True, start)`` when the next slot is due and now taken, else ``(False, seconds until it is due)``.

        Slots are granted one at a time, one interval at the rate in force after the last one: a waiting thread
        holds no reservation, so a rate change or a throttle pause that starts while it waits applies to it.
        """
        with self._lock:
            now = self._clock()
            if self._pause_until > now:
                self._count_pause(now)
                self._measuring_since = None  # the pause is not a slower send rate: measure again after it
                return False, self._pause_until - now
            due = max(self._last_start + self._interval, self._pause_until)
            if due > now:
                return False, due - now
            # A thread that wakes a little late keeps the cadence; after an idle spell, start from now.
            start = due if now - due < self._interval else now
            if start - self._last_start > self.ADMITTED_SPAN and self._last_start > -math.inf:
                self._resumed = max(self._resumed, start)  # sending resumes after a stall (see _cut)
                self._measuring_since = None  # nor is a stall: measure again from here
            self._last_start = start
            self._record(start)
            return True, start

    def on_throttle(self, retry_after: float | None = None, *, sent_at: float | None = None, cut: bool = True) -> float:
        """Report a throttled request: cut the rate (once per event) and pause every thread's sending.

        The pause lasts ``retry_after`` plus jitter. Without a ``retry_after``, it is an exponential backoff
        with jitter. A throttle of a request sent before the last cut (``sent_at``, the value
        :meth:`acquire` returned) belongs to the same event: it can lengthen the pause but does not cut again.
        Without ``sent_at``, throttles that arrive while a pause is in force belong to the same event.
        ``cut=False`` only pauses (a shared budget keeps the rate). Returns the seconds left until sending
        resumes.
        """
        with self._lock:
            now = self._clock()
            self._throttled += 1
            new_event = now >= self._pause_until if sent_at is None else sent_at > self._last_cut
            if new_event:
                self._resumed = max(self._resumed, min(self._pause_until, now))
                self._consecutive += 1
                if cut:
                    self._cut(now, sent_at)
                else:
                    self._last_cut = now
            if retry_after is not None and not math.isnan(retry_after):
                retry_after = max(0.0, retry_after)
                if math.isfinite(retry_after):
                    wait = retry_after + self._rand() * max(self.MIN_JITTER, self.JITTER * retry_after)
                else:
                    wait = math.inf
            elif new_event:
                doubling = min(self._consecutive - 1, 32)
                wait = min(self.backoff_max, self.backoff * 2.0**doubling) * (0.5 + 0.5 * self._rand())
            else:
                wait = 0.0
            wait = min(wait, self.max_pause)
            self._pause_until = max(self._pause_until, now + wait)
            return max(0.0, self._pause_until - now)

    def on_success(self, sent_at: float | None = None) -> None:
        """Report a request that was not throttled (``sent_at``: the value :meth:`acquire` returned).

        The rate climbs back along the CUBIC curve, and the request counts as admitted for the next cut.
        """
        with self._lock:
            if sent_at is not None:
                self._admitted.append(sent_at)
                while self._admitted[0] < sent_at - 2 * self.ADMITTED_SPAN and len(self._admitted) > 1:
                    self._admitted.popleft()
            self._consecutive = 0
            if not self._engaged:
                return  # the lone task's path: nothing to recover
            rate = self.SCALE * (self._clock() - self._last_cut - self._k) ** 3 + self._w_max
            if rate >= self.max_rate:
                self._engaged = False  # fully recovered: back to the plain spacing
            self._set_rate(rate)

    def _cut(self, now: float, sent_at: float | None) -> None:
        """Multiplicative decrease from the lower of the current and the measured send rate, and never above
        the rate the tenant admitted in the :data:`ADMITTED_SPAN` before ``sent_at``, unless that span reaches
        back before the process last resumed sending (after a throttle pause or a stall it was not sending for
        part of the span: the count would be far too low)."""
        base = min(self.rate, self._measured) if self._measured > 0 else self.rate
        if math.isinf(base):
            return  # no limit and nothing measured yet: only the pause applies
        rate, self._w_max = base * self.BETA, base
        if sent_at is not None and self._admitted and sent_at - self.ADMITTED_SPAN >= self._resumed:
            admitted = sum(1 for t in self._admitted if sent_at - self.ADMITTED_SPAN < t <= sent_at)
            if admitted / self.ADMITTED_SPAN < rate:
                # Throttled well below the rate: this is the share, so the curve starts on its plateau.
                rate = self._w_max = max(admitted / self.ADMITTED_SPAN, self.min_rate)
        self._k = ((self._w_max - rate) / self.SCALE) ** (1 / 3)
        self._last_cut = now
        self._engaged = True
        self._set_rate(rate)

    def _set_rate(self, rate: float) -> None:
        self.rate = min(self.max_rate, max(self.min_rate, rate))
        self._interval = self._interval_at(self.rate)

    @staticmethod
    def _interval_at(rate: float) -> float:
        return HEADROOM / rate if math.isfinite(rate) else 0.0

    def _record(self, start: float) -> None:
        """Count one send in the measured-rate average (called with the lock held).

        A measurement starts at the first send, and again after a pause or a stall of over
        :data:`ADMITTED_SPAN`. Its first value is the send rate since that send, taken at the first send in a
        later bucket at least a bucket after it; the average goes on from there. A first bucket that sending
        entered part-way through, or one that held a stall, averaged with nothing or with the rate before,
        would read a fraction of the rate (1.6 requests/s for 50 at the start of a load), and a throttle would
        cut from that.
        """
        bucket = math.floor(start / self._BUCKET) * self._BUCKET
        self._count += 1
        if self._measuring_since is None:
            self._measured, self._count, self._last_bucket, self._measuring_since = 0.0, 1, bucket, start
        elif not self._measured:
            crossed, self._last_bucket = bucket > self._last_bucket, bucket
            if crossed and start - self._measuring_since >= self._BUCKET:
                self._measured = (self._count - 1) / (start - self._measuring_since)
                self._count = 0
        elif bucket > self._last_bucket:
            current = self._count / (bucket - self._last_bucket)
            self._measured = current * self._SMOOTHING + self._measured * (1 - self._SMOOTHING)
            self._count, self._last_bucket = 0, bucket

    def _count_pause(self, now: float) -> None:
        """Add the part of the current pause not yet counted (called with the lock held)."""
        since = max(now, self._paused_through)
        if self._pause_until > since:
            self._throttle_wait += self._pause_until - since
            self._paused_through = self._pause_until


# KEYS[1]: the budget; ARGV[1]: the spacing in microseconds. The key holds the earliest free slot in
# microseconds of Redis's clock. Returns {slot, now}: the caller sends at `slot`, i.e. after slot - now.
# string.format('%d') because Lua's tostring() would round a 16-digit number.
_NEXT_SLOT = """
if redis.replicate_commands then redis.replicate_commands() end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local slot = tonumber(redis.call('GET', KEYS[1]) or '0')
if slot < now then slot = now end
local free = slot + tonumber(ARGV[1])
redis.call('SET', KEYS[1], string.format('%d', free), 'PX', math.floor((free - now) / 1000) + 1000)
return {slot, now}
"""

# KEYS[1]: the budget; ARGV[1]: a pause in microseconds. No slot is handed out before now + pause.
_PUSH = """
if redis.replicate_commands then redis.replicate_commands() end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local free = now + tonumber(ARGV[1])
if free > tonumber(redis.call('GET', KEYS[1]) or '0') then
  redis.call('SET', KEYS[1], string.format('%d', free), 'PX', math.floor((free - now) / 1000) + 1000)
end
return free
"""


@dataclass(frozen=True)
class Slot:
    """A request slot: ``start`` and the store's ``now`` when it was drawn, in microseconds of its clock."""

    start: int
    now: int

    @property
    def wait(self) -> float:
        """Seconds to wait before sending."""
        return max(0, self.start - self.now) / 1e6


class RedisSlots:
    """The evenly spaced slot schedule of one budget key in Redis (GCRA against Redis's clock)."""

    def __init__(self, client: redis.Redis, key: str, rate: float):
        if not rate > 0:
            raise ValueError(f"a shared request budget needs a positive rate, not {rate!r}")
        self.key = key
        self.interval_us = max(1, round(HEADROOM * 1e6 / rate))
        self._next_slot = client.register_script(_NEXT_SLOT)
        self._push = client.register_script(_PUSH)

    def next_slot(self) -> Slot:
        """Take the next free slot of the budget."""
        start, now = self._next_slot(keys=[self.key], args=[self.interval_us])
        return Slot(int(start), int(now))

    def push(self, pause: float) -> None:
        """Hand out no slot before ``pause`` seconds from now (a throttle seen by one worker pauses all)."""
        self._push(keys=[self.key], args=[max(0, round(pause * 1e6))])


def host_budget_dir() -> Path:
    """The default directory of host budgets: private to this user, in the system's temporary directory."""
    return Path(tempfile.gettempdir()) / f"airflow-provider-peak-{os.getuid()}"


def _boot_id() -> str:
    """This boot of the host: CLOCK_MONOTONIC starts again at boot, so a schedule from before is void.
    Empty where Linux's boot id is missing."""
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return ""


_BOOT_ID = _boot_id()
#: A schedule further ahead than this is void too: it is from before a reboot where there is no boot id.
_HORIZON_US = 3600 * 10**6
_OPEN_FLAGS = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC


def _private_dir(path: Path) -> None:
    """Create ``path`` (0o700) unless it exists; refuse it unless it is a directory of this user that no one
    else may write to (another user could otherwise stall every load through the schedule)."""
    with contextlib.suppress(FileExistsError):
        os.mkdir(path, 0o700)
    info = os.lstat(path)
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid() or info.st_mode & 0o022:
        raise PermissionError(f"{path} is not a directory of this user closed to others")


class HostSlots:
    """The evenly spaced slot schedule of one budget key in a file shared by every process of this host.

    The file, ``<directory>/<sha256 of the key>``, holds one JSON object: the next free slot (GCRA), the time
    before which no slot is handed out (a throttle pause), both in microseconds of ``time.monotonic()``
    (CLOCK_MONOTONIC, one clock for every process of a Linux host), and the boot they belong to (a schedule
    of another boot, or over an hour ahead, is void). Every draw
    opens the file and reads and rewrites it under an exclusive ``flock``: a forked process or a file that a
    temporary-files cleaner removed cannot split the schedule.

    :param directory: where the file lives; by default :func:`host_budget_dir`, created 0o700.
    """

    def __init__(
        self, key: str, rate: float, *, directory: Path | None = None, clock: Callable[[], float] = time.monotonic
    ):
        if not rate > 0:
            raise ValueError(f"a host request budget needs a positive rate, not {rate!r}")
        self.directory = host_budget_dir() if directory is None else directory
        self.path = self.directory / hashlib.sha256(key.encode()).hexdigest()
        self.interval_us = max(1, round(HEADROOM * 1e6 / rate))
        self._clock = clock
        self._checked = False  # the directory was created or found private to this user

    def next_slot(self) -> Slot:
        """Take the next free slot of the budget."""
        with self._schedule() as (state, now):
            due = max(state["next_free_us"], state["no_slot_before_us"])
            # A draw a little after its slot keeps the cadence (as the pacer does): every process's pacer has
            # already spaced it, and starting the schedule again from "now" would lose each draw's wake-up
            # delay for good (a lone load lost 4 points of the ceiling). After an idle spell, start from now.
            start = due if now - due < self.interval_us else now
            state["next_free_us"] = start + self.interval_us
        return Slot(start, now)

    def push(self, pause: float) -> None:
        """Hand out no slot before ``pause`` seconds from now (a throttle seen by one process pauses all)."""
        with self._schedule() as (state, now):
            state["no_slot_before_us"] = max(state["no_slot_before_us"], now + max(0, round(pause * 1e6)))

    @contextlib.contextmanager
    def _schedule(self) -> Iterator[tuple[dict[str, Any], int]]:
        """The schedule and the time now, under the file's lock; written back when the block succeeds."""
        fd = self._open()
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            now = round(self._clock() * 1e6)
            state: dict[str, Any] = {"boot": _BOOT_ID, "next_free_us": 0, "no_slot_before_us": 0}
            with contextlib.suppress(ValueError, TypeError, KeyError, AttributeError):  # empty, torn or stale
                saved = json.loads(os.pread(fd, 4096, 0))
                times = {name: int(saved[name]) for name in ("next_free_us", "no_slot_before_us")}
                if saved.get("boot") == _BOOT_ID and max(times.values()) <= now + _HORIZON_US:
                    state.update(times)
            yield state, now
            data = json.dumps(state).encode()
            os.pwrite(fd, data, 0)
            os.ftruncate(fd, len(data))
        finally:
            os.close(fd)  # releases the lock

    def _open(self) -> int:
        if not self._checked:
            _private_dir(self.directory)
            self._checked = True
        try:
            return os.open(self.path, _OPEN_FLAGS, 0o600)
        except FileNotFoundError:  # the directory was removed (a temporary-files cleaner)
            _private_dir(self.directory)
            return os.open(self.path, _OPEN_FLAGS, 0o600)


class Slots(Protocol):
    """Where a :class:`SharedBudget` draws request slots: :class:`RedisSlots` or :class:`HostSlots`."""

    def next_slot(self) -> Slot: ...

    def push(self, pause: float) -> None: ...


class SharedBudget:
    """Request slots drawn from one budget per tenant, on top of the process's :class:`AdaptivePacer`.

    Each request first passes the pacer (the process's throttle pause and its adaptive rate), then takes the
    budget's next slot and waits for it. A throttle goes to the pacer and also pushes the budget's next slot
    past the pause, for every process that draws from it. A budget that covers the whole tenant (Redis) sets
    the rate, so a throttle does not cut the pacer's (unless throttles repeat with no success between them); a
    host budget does not (other hosts may load into the tenant), so the pacer also cuts its rate as it does
    alone. If the store fails, one warning is logged and the pacer alone paces requests; the store is tried
    again every ``retry_down`` seconds.

    :param tenant_wide: every client of the tenant draws from this budget (Redis), not only this host's.
    :param scrub: removes secrets (the Redis password) from error text before it is logged.
    :param name: how the warning names the budget store, e.g. the Airflow connection id.
    """

    _shared: ClassVar[dict[tuple[str, str, str, float], SharedBudget]] = {}
    _shared_lock = threading.Lock()

    def __init__(
        self,
        slots: Slots,
        pacer: AdaptivePacer,
        *,
        tenant_wide: bool = True,
        name: str = "redis",
        scrub: Callable[[str], str] = lambda text: text,
        retry_down: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ):
        self.slots = slots
        self.pacer = pacer
        self.tenant_wide = tenant_wide
        self.name = name
        self.retry_down = retry_down
        self._scrub = scrub
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._down_until: float | None = None
        self._warned = False

    @classmethod
    def shared(cls, conn: RedisConnectionLike, key: str, rate: float) -> SharedBudget:
        """One budget per Redis connection, tenant key and rate in this process, over the shared pacer."""
        conn_id = str(getattr(conn, "conn_id", None) or f"{conn.host}:{conn.port}")
        with cls._shared_lock:
            budget = cls._shared.get(("redis", conn_id, key, rate))
            if budget is None:
                password = conn.password
                budget = cls._shared[("redis", conn_id, key, rate)] = cls(
                    RedisSlots(redis_client(conn), key, rate),
                    AdaptivePacer.shared(key, rate),
                    name=f"connection {conn_id!r}",
                    scrub=(lambda text: text.replace(password, "***")) if password else (lambda text: text),
                )
            return budget

    @classmethod
    def on_host(cls, key: str, rate: float) -> SharedBudget:
        """One host budget (:class:`HostSlots`) per tenant key and rate in this process, over the shared pacer."""
        with cls._shared_lock:
            budget = cls._shared.get(("host", "", key, rate))
            if budget is None:
                slots = HostSlots(key, rate)
                budget = cls._shared[("host", "", key, rate)] = cls(
                    slots, AdaptivePacer.shared(key, rate), tenant_wide=False, name=f"host file {slots.path}"
                )
            return budget

    @property
    def throttled(self) -> int:
        return self.pacer.throttled

    @property
    def throttle_wait_seconds(self) -> float:
        return self.pacer.throttle_wait_seconds

    @property
    def available(self) -> bool:
        """False while the store is considered down (the pacer alone paces requests)."""
        return self._down_until is None

    def acquire(self) -> float:
        """Block until this request's slot in the budget; return the pacer's start time (for ``sent_at``)."""
        while True:
            sent_at = self.pacer.acquire()
            slot = self._draw()
            if slot is None:
                return sent_at
            wait = min(slot.wait, self.pacer.max_pause)
            if wait > 0:
                self._sleep(wait)
            if self.pacer.pause_remaining() <= 0:
                return sent_at
            # Throttled while waiting for the slot: wait out the pause and take a new slot.

    def on_throttle(self, retry_after: float | None = None, *, sent_at: float | None = None) -> float:
        """The pacer's pause, pushed to every process of the budget. The pacer's rate is cut unless the budget
        is tenant-wide (then the rate is the budget's) and this is the first throttle since a success; while the
        store is down the pacer cuts as usual.
        """
        # A tenant-wide budget sets the rate, but throttles that repeat with no success between them say the
        # tenant admits less than the budget hands out (a lower real limit, other clients): then cut too.
        keep = self.tenant_wide and self._usable() and self.pacer.consecutive_throttles == 0
        pause = self.pacer.on_throttle(retry_after, sent_at=sent_at, cut=not keep)
        if pause > 0 and self._usable():
            try:
                self.slots.push(pause)
            except Exception as exc:  # the budget store must never fail a load
                self._went_down(exc)
        return pause

    def on_success(self, sent_at: float | None = None) -> None:
        self.pacer.on_success(sent_at)

    def _usable(self) -> bool:
        down_until = self._down_until
        return down_until is None or self._clock() >= down_until

    def _draw(self) -> Slot | None:
        if not self._usable():
            return None
        try:
            slot = self.slots.next_slot()
        except Exception as exc:  # the budget store must never fail a load
            self._went_down(exc)
            return None
        if self._down_until is not None:
            with self._lock:
                if self._down_until is not None:
                    self._down_until = None
                    log.info("Peak rate limit: the shared request budget (%s) answers again", self.name)
        return slot

    def _went_down(self, exc: Exception) -> None:
        with self._lock:
            self._down_until = self._clock() + self.retry_down
            first, self._warned = not self._warned, True
        problem = self._scrub(f"{type(exc).__name__}: {exc}")[:300]
        if first:
            log.warning(
                "Peak rate limit: the shared request budget (%s) is unavailable (%s); this process paces "
                "itself (adaptive) and retries the budget every %.0fs",
                self.name,
                problem,
                self.retry_down,
            )
        else:
            log.debug("Peak rate limit: the shared request budget (%s) is still unavailable (%s)", self.name, problem)


def budget_key(api_url: str, token: str, tenant: str | None = None) -> str:
    """The key of a tenant's budget: its Redis key, and (hashed) the name of its host budget's file.

    It is ``peak:rate:<api host[:port]>:<sha256 of the token>``, or ``peak:rate:tenant:<tenant>`` when a
    shared tenant name is given. The key never contains the token.
    """
    if tenant:
        return f"peak:rate:tenant:{tenant}"
    parts = urlsplit(api_url)
    host = (parts.hostname or "").lower()
    if parts.port:
        host = f"{host}:{parts.port}"
    return f"peak:rate:{host}:{hashlib.sha256(token.encode()).hexdigest()}"


class RedisConnectionLike(Protocol):
    """The parts of an Airflow ``Connection`` that :func:`redis_client` reads."""

    @property
    def conn_id(self) -> str | None: ...
    @property
    def conn_type(self) -> str | None: ...
    @property
    def host(self) -> str | None: ...
    @property
    def port(self) -> int | None: ...
    @property
    def login(self) -> str | None: ...
    @property
    def password(self) -> str | None: ...
    @property
    def schema(self) -> str | None: ...
    @property
    def extra_dejson(self) -> Mapping[str, Any]: ...


#: TLS extras passed to ``redis.Redis`` as they are (the names apache-airflow-providers-redis uses).
_SSL_PATHS = ("ssl_ca_certs", "ssl_keyfile", "ssl_certfile")
_SSL_CERT_REQS = ("required", "optional", "none")


def _flag(value: Any, what: str) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("true", "1", "yes", "on"):
        return True
    if text in ("false", "0", "no", "off", ""):
        return False
    raise ValueError(f"{what} must be true or false, not {value!r}")


def redis_client(conn: RedisConnectionLike) -> redis.Redis:
    """A ``redis.Redis`` client for an Airflow ``redis`` connection (no I/O until it is first used).

    It reads host, port, login (the ACL user), password and the database from the ``db`` extra, or
    otherwise from the schema. With the ``ssl`` extra set to true it also reads ``ssl_cert_reqs``
    (``required``, ``optional`` or ``none``), ``ssl_ca_certs``, ``ssl_certfile``, ``ssl_keyfile`` and
    ``ssl_check_hostname``. ``socket_timeout`` and ``socket_connect_timeout`` extras are optional. The
    defaults are short and there is one immediate retry, so a Redis that is down is noticed within
    seconds. Errors name the connection and never contain the password.
    """
    try:
        import redis
        from redis.backoff import NoBackoff
        from redis.retry import Retry
    except ImportError as exc:
        raise ImportError(
            "A shared request budget needs the redis client: pip install 'airflow-provider-peak[redis]'"
        ) from exc
    name = f"Redis connection {conn.conn_id!r}"
    if conn.conn_type not in (None, "", "redis"):
        raise ValueError(f"{name} has type {conn.conn_type!r}; the shared request budget needs a 'redis' connection")
    extra = dict(conn.extra_dejson or {})
    db: Any = extra.get("db", conn.schema or 0)
    try:
        db = int(db)
        port = int(conn.port or 6379)
        timeout = float(extra.get("socket_timeout", 5.0))
        connect_timeout = float(extra.get("socket_connect_timeout", 2.0))
    except (TypeError, ValueError):
        raise ValueError(f"{name}: db, port and socket timeouts must be numbers") from None
    password = conn.password if conn.password and conn.password.lower() not in ("none", "false") else None
    kwargs: dict[str, Any] = {
        "host": conn.host or "localhost",
        "port": port,
        "db": db,
        "username": conn.login or None,
        "password": password,
        "socket_timeout": timeout,
        "socket_connect_timeout": connect_timeout,
        "retry": Retry(NoBackoff(), 1),
    }
    if _flag(extra.get("ssl", False), f"{name}: extra 'ssl'"):
        kwargs["ssl"] = True
        cert_reqs = str(extra.get("ssl_cert_reqs", "required")).lower()
        if cert_reqs not in _SSL_CERT_REQS:
            raise ValueError(f"{name}: extra 'ssl_cert_reqs' must be one of {', '.join(_SSL_CERT_REQS)}")
        kwargs["ssl_cert_reqs"] = cert_reqs
        kwargs.update({key: extra[key] for key in _SSL_PATHS if extra.get(key)})
        if "ssl_check_hostname" in extra:
            kwargs["ssl_check_hostname"] = _flag(extra["ssl_check_hostname"], f"{name}: extra 'ssl_check_hostname'")
    return redis.Redis(**kwargs)
