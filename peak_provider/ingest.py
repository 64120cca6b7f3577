"""The sending window: batches in flight, their settlement, per-key order, progress and 413 splitting.

:class:`SendingWindow` takes encoded rows in read order, closes them into batches bounded by rows and
bytes, and sends up to ``max_in_flight`` batches at once on a thread pool. Its rules:

- **Per-key order.** A batch is never sent while an earlier, unsettled batch holds one of its primary
  keys (keys as sent on the wire); it is held back until that batch settles. A batch never holds one
  key twice (the second row opens a new batch). Rows with unique keys keep full concurrency.
- **Honest buckets.** Every row added ends in exactly one bucket of the
  :class:`~peak_provider.result.IngestResult`: accepted, rejected, in doubt or unsent.
- **Stop on failure.** When a batch fails for good, or the ``on_rejected`` sink raises, nothing more is
  sent: batches in flight settle and are counted, held and unsent rows are counted unsent, and the error
  is raised with the result.
- **Progress.** With ``on_progress`` it reports the settled prefix of the read order (a checkpoint a
  retry resumes from), and bounds what such a retry re-sends to ``max_in_flight`` batches.
- **413.** A batch the API refuses as too large is split in halves and retried; a single row is rejected
  when it is large (at least half of ``max_request_bytes``), and the load fails with one clear message
  when even a small row is refused (a proxy's body limit far below ours).
- **Cadence.** From the first send until :meth:`SendingWindow.close`, the objects alive before it are out
  of the cycle collector's reach (:func:`frozen_heap`), so a full collection cannot stall every sending
  thread.
"""

from __future__ import annotations

import gc
import logging
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from itertools import repeat
from typing import Any

from peak_provider.exceptions import PeakError, PeakHTTPError, PeakSinkError
from peak_provider.reply import Failure, excerpt
from peak_provider.result import IngestResult, Rejection
from peak_provider.retries import Applied, Cause
from peak_provider.transport import PayloadTooLarge

log = logging.getLogger(__name__)

#: Bucket codes of a settled row (``UNSENT`` rows are not settled: a retry sends them); ``SKIPPED`` marks the
#: start of a range an earlier attempt settled.
ACCEPTED, REJECTED, IN_DOUBT, SKIPPED = 0, 1, 2, -1


@contextmanager
def frozen_heap() -> Iterator[None]:
    """Keep the objects alive on entry out of the cycle collector's reach until exit (:func:`gc.freeze`).

    A full collection walks every tracked object while it holds the GIL. An Airflow task holds about 170,000
    after its imports, so one takes ~140 ms, in which no sending thread can start its request (seven slots at
    50 requests/s). Objects created inside the block are still collected. On exit everything frozen is thawed,
    unless something was frozen on entry: then the process's owner freezes (Airflow's executors do before
    they fork), and its choice stands.
    """
    owner_freezes = gc.get_freeze_count() > 0
    gc.freeze()
    try:
        yield
    finally:
        if not owner_freezes:
            gc.unfreeze()


@dataclass(slots=True)
class Batch:
    """Rows sent together: their wire JSON, read positions, wire keys and source rows (for rejections)."""

    seq: int
    rows: list[bytes] = field(default_factory=list)
    positions: list[int] = field(default_factory=list)
    keys: list[Any] = field(default_factory=list)
    sources: list[Any] = field(default_factory=list)
    size: int = 0
    waits_on: set[int] = field(default_factory=set)


@dataclass(slots=True)
class Part:
    """The outcome of a contiguous slice ``[lo, hi)`` of a batch's rows (several after 413 splits)."""

    lo: int
    hi: int
    failures: list[Failure] | None = None  # answered: the rows the API rejected
    error: PeakHTTPError | None = None  # failed for good (unsent or in doubt, by error.applied)
    too_large: bool = False  # a single large row the API refused with 413
    unsent: bool = False  # not sent: an earlier part of the batch failed


@dataclass
class Progress:
    """What a retry may skip: ``ranges`` of read positions settled for good, each with its counts.

    Each range is ``[start, end, accepted, rejected, in_doubt]``; ``keys`` maps the last position of each
    range to its wire key, so a retry can check that the source still yields the same rows in the same
    order before it skips them.
    """

    ranges: list[list[int]]
    keys: dict[int, Any]

    @property
    def prefix(self) -> int:
        return self.ranges[0][1] if self.ranges and self.ranges[0][0] == 0 else 0

    def totals(self) -> tuple[int, int, int]:
        """Accepted, rejected and in-doubt rows over all ranges."""
        return (
            sum(r[2] for r in self.ranges),
            sum(r[3] for r in self.ranges),
            sum(r[4] for r in self.ranges),
        )


class SendingWindow:
    """Send encoded rows in batches, at most ``max_in_flight`` unsettled at once (see the module docstring).

    :param send: POSTs the rows of one batch (in a worker thread); returns the body's outcome or raises
        :class:`PayloadTooLarge` / :class:`~peak_provider.exceptions.PeakHTTPError`.
    :param describe: ``(source row, field, reason, code, outcome) -> Rejection`` for rows of this load.
    :param scrub: removes secrets from a text (the sink's error, quoted in the load's).
    :param room: bytes available for rows and the commas between them in one body.
    :param in_doubt_settles: whether an in-doubt row is settled for good (APPEND: a retry must not
        re-send it) or not (UPSERT: a retry re-sends it, which is safe and keeps per-key order).
    """

    def __init__(
        self,
        send: Callable[[list[bytes]], list[Failure]],
        describe: Callable[[Any, str | None, str, str | None, str], Rejection],
        result: IngestResult,
        *,
        max_rows: int,
        room: int,
        max_request_bytes: int,
        max_in_flight: int,
        in_doubt_settles: bool,
        scrub: Callable[[str], str],
        on_rejected: Callable[[Rejection], None] | None = None,
        on_progress: Callable[[Progress], None] | None = None,
    ):
        self._send = send
        self._describe = describe
        self.result = result
        self.max_rows = max_rows
        self.room = room
        self.max_request_bytes = max_request_bytes
        self.max_in_flight = max_in_flight
        self.in_doubt_settles = in_doubt_settles
        self._scrub = scrub
        self.on_rejected = on_rejected
        self._unwritten: list[Rejection] = []  # counted, not yet handed to on_rejected
        self.on_progress = on_progress
        self.error: PeakError | None = None
        self.repeated_keys = 0  # rows whose wire key repeats a row still in the window
        self._seq = 0
        self._open = Batch(0)
        self._open_keys: set[Any] = set()
        self._last_owner: dict[Any, int] = {}  # key -> seq of the last unsettled batch holding it
        self._unsettled: set[int] = set()  # seqs of batches held or in flight
        self._held: list[Batch] = []
        self._pending: dict[Future[list[Part]], Batch] = {}
        self._pool = ThreadPoolExecutor(max_workers=max_in_flight, thread_name_prefix="peak-ingest")
        self._frozen = ExitStack()  # holds frozen_heap() from the first send to close()
        self._sent_any = False
        # progress (only with on_progress): settled rows past the prefix, and the prefix's counts
        self._track = on_progress is not None
        self._status: dict[int, int] = {}
        self._keys_at: dict[int, Any] = {}
        self._prefix = 0
        self._prefix_key: Any = None
        self._counts = [0, 0, 0]
        self._carried: dict[int, list[int]] = {}  # range start -> that range, with the earlier attempts' counts

    # --- rows in -------------------------------------------------------------------------------------

    def reject(self, position: int, rejection: Rejection) -> None:
        """A row refused before sending (client validation or size): settled at once; raises the load's error
        if the sink just failed on it (the row is counted)."""
        self._rejected(rejection)
        self._write_rejections()
        if self._track:
            self._settle_position(position, REJECTED if rejection.outcome == "rejected" else IN_DOUBT, None)
        if isinstance(self.error, PeakSinkError):
            raise self.error

    def skip(self, position: int, key: Any, carried: list[int] | None) -> None:
        """A row an earlier attempt settled (resume). ``carried``: on a range's last row, the range with the
        earlier attempts' counts (``[start, end, accepted, rejected, in_doubt]``); it settles then, as a whole
        (a range walked part-way is still the earlier attempts', see :class:`~peak_provider.resume.Skipper`)."""
        if self._track and carried is not None:
            self._status[carried[0]] = SKIPPED
            self._carried[carried[0]] = carried
            self._keys_at[position] = key
            self._advance()  # a skipped range continuing the prefix extends it now (a stop may follow)

    def add(self, position: int, key: Any, encoded: bytes, source: Any) -> None:
        """Queue one encoded row; raises the load's error once a batch has failed for good (the row is
        then counted unsent)."""
        if self.error is not None:
            self.result.rows_unsent += 1
            raise self.error
        batch = self._open
        if batch.rows and (
            key in self._open_keys or len(batch.rows) >= self.max_rows or batch.size + 1 + len(encoded) > self.room
        ):
            try:
                self._close()
            except BaseException:  # a failed batch, or a task timeout raised while waiting
                self.result.rows_unsent += 1  # this row: read, never queued
                raise
            batch = self._open
        owner = self._last_owner.get(key)
        if owner is not None:  # an earlier row with this key is in a batch not yet settled
            self.repeated_keys += 1
            batch.waits_on.add(owner)
        batch.size += len(encoded) + (1 if batch.rows else 0)
        batch.rows.append(encoded)
        batch.positions.append(position)
        batch.keys.append(key)
        batch.sources.append(source)
        if key is not None:  # None: the layout does not carry the whole key; such rows are not ordered
            self._open_keys.add(key)

    def finish(self) -> None:
        """Send what is left and wait for every answer; raise the load's error if a batch failed."""
        if self.error is None and self._open.rows:
            self._close()
        while self.error is None and (self._pending or self._held):
            self._wait_one()
        if self.error is not None:
            raise self.error
        if self._track and self.on_progress is not None:
            self.on_progress(self._progress(final=True))

    def stop(self, error: PeakError) -> None:
        """Stop from outside (a signal handler, another thread): no batch is sent after the one being added;
        the load raises ``error`` (unless it failed already) once the batches in flight have settled."""
        if self.error is None:
            self.error = error

    def abort(self) -> None:
        """Stop: no new batches; let those in flight settle; count the rest unsent. Interrupted while it waits
        (a task timeout), it still counts everything: the batches it could not wait for are in doubt."""
        held, self._held = self._held, []  # taken first: settling must not release them
        try:
            while self._pending:
                self._wait_one()
        finally:
            for future, batch in list(self._pending.items()):
                gone = PeakHTTPError("the load stopped before its answer came", applied=Applied.MAYBE)
                del self._pending[future]
                self._settle(batch, [Part(0, len(batch.rows), error=gone)])
            unsent = len(self._open.rows) + sum(len(b.rows) for b in held)
            self.result.rows_unsent += unsent
            self._open = Batch(self._seq)
            if self._track and self.on_progress is not None:
                self.on_progress(self._progress(final=True))

    def close(self) -> None:
        try:
            self._pool.shutdown(wait=True, cancel_futures=True)
        finally:
            self._frozen.close()

    # --- batches ---------------------------------------------------------------------------------------

    def _close(self) -> None:
        batch = self._open
        self._last_owner.update(dict.fromkeys(batch.keys, batch.seq))
        self._last_owner.pop(None, None)  # rows without a whole key are not ordered
        self._unsettled.add(batch.seq)
        self._seq += 1
        self._open = Batch(self._seq)
        self._open_keys = set()
        while self._full():
            try:
                self._wait_one()
            except BaseException:  # e.g. a task timeout raised while waiting: the batch is counted unsent
                self._held.append(batch)
                raise
            if self.error is not None:
                self._held.append(batch)  # counted unsent by abort()
                raise self.error
        batch.waits_on &= self._unsettled
        if batch.waits_on:
            self._held.append(batch)
        else:
            self._submit(batch)

    def _full(self) -> bool:
        if not self._unsettled:
            return False
        if self._track:  # bound what a resumed retry re-sends: everything after the oldest unsettled batch
            return self._seq - min(self._unsettled) > self.max_in_flight
        return len(self._unsettled) > self.max_in_flight

    def _submit(self, batch: Batch) -> None:
        if not self._sent_any:
            self._sent_any = True
            self._frozen.enter_context(frozen_heap())
        self._pending[self._pool.submit(self._send_parts, batch.rows, 0, len(batch.rows))] = batch

    def _release_held(self) -> None:
        still: list[Batch] = []
        for batch in self._held:
            batch.waits_on &= self._unsettled
            if batch.waits_on or self.error is not None:
                still.append(batch)
            else:
                self._submit(batch)
        self._held = still

    def _wait_one(self) -> None:
        if not self._pending:
            self._release_held()
            if not self._pending:
                raise RuntimeError("sending window: held batches wait on nothing in flight (a bug)")
        done, _ = wait(self._pending, return_when=FIRST_COMPLETED)
        for future in done:
            batch = self._pending.pop(future)
            self._settle(batch, future.result())
        if self.error is None:
            self._release_held()

    # --- worker thread -------------------------------------------------------------------------------

    def _send_parts(self, rows: list[bytes], lo: int, hi: int) -> list[Part]:
        """POST ``rows[lo:hi]``; on 413 split in halves (depth first, stopping at the first failure)."""
        try:
            return [Part(lo, hi, failures=self._send(rows[lo:hi]))]
        except PayloadTooLarge:
            if hi - lo > 1:
                mid = (lo + hi) // 2
                first = self._send_parts(rows, lo, mid)
                if any(part.error is not None for part in first):
                    return [*first, Part(mid, hi, unsent=True)]
                return [*first, *self._send_parts(rows, mid, hi)]
            size = len(rows[lo])
            if size * 2 >= self.max_request_bytes:
                return [Part(lo, hi, too_large=True)]
            return [
                Part(
                    lo,
                    hi,
                    error=PeakHTTPError(
                        f"Peak ingest {self.result.operation} {self.result.object_name} failed: "
                        f"{Cause.CLIENT_ERROR.value}; not retried: the server refuses request bodies of about "
                        f"{size + 100} bytes (HTTP 413 for a single {size}-byte row): a proxy or gateway limits "
                        f"bodies far below max_request_bytes ({self.max_request_bytes}); lower max_request_bytes "
                        "in the connection",
                        status=413,
                        cause=Cause.CLIENT_ERROR,
                        applied=Applied.NO,
                    ),
                )
            ]
        except PeakHTTPError as exc:
            return [Part(lo, hi, error=exc)]
        except Exception as exc:  # outside send's contract (a bug, a socket closed under http.client)
            error = PeakHTTPError(
                f"sending a batch failed unexpectedly ({type(exc).__name__}); its rows may have been stored",
                applied=Applied.MAYBE,
            )
            error.__cause__ = exc
            return [Part(lo, hi, error=error)]

    # --- settlement ----------------------------------------------------------------------------------

    def _settle(self, batch: Batch, parts: list[Part]) -> None:
        self._unsettled.discard(batch.seq)
        owners = self._last_owner
        if self.repeated_keys:
            for key in batch.keys:
                if owners.get(key) == batch.seq:
                    del owners[key]
        else:  # no key ever repeated: every key of the batch is still owned by it
            deque(map(owners.pop, batch.keys, repeat(None)), maxlen=0)
        name = self.result.resource
        result = self.result
        for part in parts:
            count = part.hi - part.lo
            if part.unsent:
                result.rows_unsent += count
                continue
            if part.error is not None:
                if part.error.applied is Applied.NO:
                    result.rows_unsent += count
                    continue
                reason = f"{name}: in doubt, it may have been stored: {part.error}"
                for i in range(part.lo, part.hi):
                    self._rejected(self._describe(batch.sources[i], None, reason, None, "in_doubt"))
                    self._mark(batch, i, IN_DOUBT)
                if self.error is None:
                    self.error = part.error
                continue
            if part.too_large:
                reason = f"{name}: the API answered 413 for this row alone ({len(batch.rows[part.lo])} bytes)"
                self._rejected(self._describe(batch.sources[part.lo], None, reason, None, "rejected"))
                self._mark(batch, part.lo, REJECTED)
                continue
            failed = {f.index: f for f in part.failures or ()}
            result.rows_sent += count
            result.rows_accepted += count - len(failed)
            if not failed and not self._track:
                continue  # the common case: nothing to say about single rows
            for i in range(part.lo, part.hi):
                f = failed.get(i - part.lo)
                if f is not None:
                    reason = f"{name}: rejected by the API: {f.reason}"
                    self._rejected(self._describe(batch.sources[i], f.field, reason, f.code, "rejected"))
                self._mark(batch, i, REJECTED if f is not None else ACCEPTED)
        for part in parts:
            if part.error is not None and part.error.applied is Applied.NO and self.error is None:
                self.error = part.error
        self._write_rejections()  # before the checkpoint moves past them
        if self._track:
            self._advance()

    def _rejected(self, rejection: Rejection) -> None:
        """Count a rejected or in-doubt row; :meth:`_write_rejections` hands it to the sink once its batch is
        settled, so a sink that fails (or is slow under a task timeout) never interrupts the counting."""
        self.result.add_rejection(rejection)
        if self.on_rejected is not None:
            self._unwritten.append(rejection)

    def _write_rejections(self) -> None:
        """Hand the counted rejections to the sink. A sink that raises is not called again and stops the load
        (:class:`PeakSinkError`, also logged: it may happen while the load stops for another reason)."""
        unwritten, self._unwritten = self._unwritten, []
        for rejection in unwritten:
            if self.on_rejected is None:
                return
            try:
                self.on_rejected(rejection)
            except Exception as exc:
                self.on_rejected = None
                error = PeakSinkError(  # not chained to exc: its text (and traceback) is not scrubbed
                    f"{self.result.resource}: the rejected-rows sink failed ({type(exc).__name__}: "
                    f"{excerpt(str(exc), self._scrub)}); the load stopped, and rows rejected from then on are "
                    "counted but not in the sink"
                )
                log.error("%s", error)
                if self.error is None:
                    self.error = error

    def _mark(self, batch: Batch, i: int, bucket: int) -> None:
        if self._track and (bucket != IN_DOUBT or self.in_doubt_settles):
            self._status[batch.positions[i]] = bucket
            self._keys_at[batch.positions[i]] = batch.keys[i]

    def _settle_position(self, position: int, bucket: int, key: Any) -> None:
        if bucket != IN_DOUBT or self.in_doubt_settles:
            self._status[position] = bucket
            self._keys_at[position] = key
            self._advance()

    def _advance(self) -> None:
        start = self._prefix
        status, counts = self._status, self._counts
        while self._prefix in status:
            bucket = status.pop(self._prefix)
            if bucket >= 0:
                counts[bucket] += 1
                self._prefix += 1
            else:
                _start, self._prefix, *earlier = self._carried.pop(self._prefix)
                for i in range(3):
                    counts[i] += earlier[i]
        if self._prefix > start:
            self._prefix_key = self._keys_at.get(self._prefix - 1)
            for position in range(start, self._prefix):
                self._keys_at.pop(position, None)
            if self.on_progress is not None:
                self.on_progress(self._progress(final=False))

    def _progress(self, final: bool) -> Progress:
        """The prefix; after a stop (``final``), also the settled ranges beyond it (APPEND)."""
        ranges = [[0, self._prefix, *self._counts]] if self._prefix else []
        keys = {self._prefix - 1: self._prefix_key} if self._prefix else {}
        if final and self.in_doubt_settles:
            current: list[int] | None = None
            for position in sorted(self._status):
                if current is None or position != current[1]:
                    current = [position, position, 0, 0, 0]
                    ranges.append(current)
                bucket = self._status[position]
                if bucket >= 0:
                    current[1] = position + 1
                    current[2 + bucket] += 1
                else:
                    _start, current[1], *earlier = self._carried[position]
                    for i in range(3):
                        current[2 + i] += earlier[i]
                keys[current[1] - 1] = self._keys_at.get(current[1] - 1)
            keys = {r[1] - 1: keys.get(r[1] - 1) for r in ranges}
        return Progress(ranges, keys)
