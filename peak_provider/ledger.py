"""The missed-window ledger: which data intervals an ``interval``-mode task has loaded into its target.

An interval run loads exactly its own window, so a window that no run covered is never loaded, and
nothing else notices: a backfill skips logical dates that already have a run (whichever interval that
run covered), and runs get cleared or deleted, ``start_date`` or the schedule changes. The ledger records
every interval a task loaded successfully, per task and target, and each interval run compares its window
with it before reading the warehouse:

- **missing**: between the earliest recorded interval and this run's start, not recorded (before the first
  recorded load nothing is missing), and not the window of another run of this task that is still queued,
  running or up for retry (Airflow 3 tells the task which; on Airflow 2 it cannot see them).
- **overlapping**: this run's window was loaded already. Harmless under UPSERT; under APPEND it appends the
  rows a second time, so it is reported like a missing window.

``missed_windows`` decides what happens: ``warn`` logs them and puts them in the summary and the asset
event's ``extra``; ``fail`` fails before the warehouse is read; ``fill`` also loads the missing windows in
this run (one condition per window, so windows loaded between them are not re-sent) and records them.

**Storage.** In the ``asset_state_store`` of the target's asset (Airflow >= 3.3; key
``peak_ledger__<dag_id>__<task_id>``), or, where that cannot hold it (Airflow < 3.3, or an asset first
emitted through an ``AssetAlias`` that the scheduler has not activated yet), in the Airflow Variable of
the same name (a JSON object by asset name). Reads take the union of both. The record is compact: merged
intervals (adjacent ones join), at most :data:`MAX_INTERVALS` pieces (the oldest are dropped past that).

**Concurrency.** Both stores are last-writer-wins, and runs of one task may finish at the same moment (a
backfill runs several). A write re-reads the record, merges, writes, waits a moment and reads it back,
repeating until its intervals are there. In the asset store each interval is also written under keys of
its own that no other run writes (``…__from__<start>`` holding its end and ``…__to__<end>`` holding its
start), and a gap in the record is looked up there from both of its ends before it counts as missing,
so an interval that a simultaneous writer still overwrote is found again (and merged back).
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from itertools import pairwise
from typing import Any

from peak_provider.api import APPEND
from peak_provider.exceptions import PeakMissedWindowsError

log = logging.getLogger(__name__)

POLICIES = ("warn", "fail", "fill")
#: Most separate pieces a record keeps (about 60 bytes each); past that the oldest are dropped.
MAX_INTERVALS = 500
#: Task instance states after which a run will not load its window any more.
_FINISHED = frozenset({"success", "failed", "skipped", "upstream_failed", "removed"})
_CONFIRM_ATTEMPTS = 6
_MAX_PROBES = 1000  # per-interval key look-ups one read may make

Interval = tuple[datetime, datetime]


def asset_state_accessor(store: Any, name: str) -> Any:
    """The state accessor of the asset named ``name`` in a task's ``asset_state_store``, or ``None``."""
    try:
        from airflow.sdk.execution_time.context import AssetStateStoreAccessor, AssetStateStoreAccessors
    except ImportError:  # Airflow < 3.3
        AssetStateStoreAccessor = AssetStateStoreAccessors = None  # type: ignore[assignment,misc]
    if AssetStateStoreAccessors is not None and isinstance(store, AssetStateStoreAccessors):
        # any asset by name: an AssetAlias outlet gives the task no accessor of its own
        return AssetStateStoreAccessor(name=name)
    try:
        return store[name]
    except (KeyError, TypeError):
        return None


# --- interval arithmetic ---------------------------------------------------------------------------


def utc(moment: datetime) -> datetime:
    """``moment`` as a plain ``datetime`` in UTC (naive values are taken as UTC)."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    m = moment.astimezone(UTC)
    return datetime(m.year, m.month, m.day, m.hour, m.minute, m.second, m.microsecond, tzinfo=UTC)


def merge(intervals: Iterable[Interval]) -> list[Interval]:
    """Sorted, with overlapping and adjacent intervals joined (empty ones dropped)."""
    out: list[list[datetime]] = []
    for start, end in sorted(i for i in intervals if i[0] < i[1]):
        if out and start <= out[-1][1]:
            out[-1][1] = max(out[-1][1], end)
        else:
            out.append([start, end])
    return [(start, end) for start, end in out]


def subtract(span: Interval, covered: Iterable[Interval]) -> list[Interval]:
    """The parts of ``span`` that ``covered`` does not cover."""
    start, end = span
    gaps: list[Interval] = []
    cursor = start
    for s, e in merge(covered):
        if e <= cursor:
            continue
        if s >= end:
            break
        if s > cursor:
            gaps.append((cursor, s))
        cursor = e
        if cursor >= end:
            break
    if cursor < end:
        gaps.append((cursor, end))
    return gaps


def intersect(span: Interval, covered: Iterable[Interval]) -> list[Interval]:
    """The parts of ``span`` that ``covered`` covers."""
    start, end = span
    return [(max(s, start), min(e, end)) for s, e in merge(covered) if s < end and e > start]


def to_json(intervals: Iterable[Interval]) -> list[list[str]]:
    """``[[start, end], …]`` as ISO 8601 strings (UTC)."""
    return [[start.isoformat(), end.isoformat()] for start, end in intervals]


def from_json(value: Any) -> list[Interval]:
    """The inverse of :func:`to_json`; malformed entries are skipped with a warning."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            log.warning("Ignoring a ledger record that is not JSON: %.200r", value)
            return []
    out: list[Interval] = []
    for item in value if isinstance(value, list) else []:
        try:
            start, end = item
            out.append((utc(datetime.fromisoformat(start)), utc(datetime.fromisoformat(end))))
        except (TypeError, ValueError):
            log.warning("Ignoring a malformed ledger entry: %.200r", item)
    return out


def describe(intervals: Iterable[Interval]) -> str:
    """``[2025-04-03 00:00:00, 2025-04-04 00:00:00) UTC, …``"""
    fmt = "%Y-%m-%d %H:%M:%S"
    return ", ".join(f"[{s.strftime(fmt)}, {e.strftime(fmt)}) UTC" for s, e in intervals)


def _key(text: str, limit: int) -> str:
    """``text``, or a digest of it where it would pass the store's key length."""
    if len(text) <= limit:
        return text
    return f"peak_ledger__{hashlib.sha256(text.encode()).hexdigest()[:40]}"


# --- what one run loads ----------------------------------------------------------------------------


@dataclass
class LedgerPlan:
    """What one interval run loads, and what the ledger said about its window.

    :param windows: the intervals this run loads: its own, plus the missing ones under ``fill``.
    :param missing: intervals never loaded (see the module docstring), as found before the load.
    :param overlapping: parts of this run's window already loaded, under APPEND (empty under UPSERT).
    :param filled: the missing intervals this run loads too (``fill``).
    :param pending: parts of the gaps that other runs of this task, queued or running, will load.
    """

    windows: list[Interval]
    missing: list[Interval] = field(default_factory=list)
    overlapping: list[Interval] = field(default_factory=list)
    filled: list[Interval] = field(default_factory=list)
    pending: list[Interval] = field(default_factory=list)

    def report(self) -> dict[str, Any]:
        """The summary's (and the asset event's) keys: ``missing_intervals`` always, ``filled_intervals``
        and ``overlapping_intervals`` when there are any."""
        out: dict[str, Any] = {"missing_intervals": to_json(self.missing)}
        if self.filled:
            out["filled_intervals"] = to_json(self.filled)
        if self.overlapping:
            out["overlapping_intervals"] = to_json(self.overlapping)
        return out


# --- the ledger ------------------------------------------------------------------------------------


class Ledger:
    """The intervals one task (``dag_id``, ``task_id``) has loaded into one target (asset name ``target``).

    :param context: the task's context (``asset_state_store``, ``ti`` and ``run_id`` are used when present).
    """

    def __init__(self, context: Mapping[str, Any], target: str, dag_id: str, task_id: str):
        self.target = target
        self.dag_id = dag_id
        self.task_id = task_id
        self.key = _key(f"peak_ledger__{dag_id}__{task_id}", 400)  # asset store keys: up to 512 characters
        self.variable_key = _key(f"peak_ledger__{dag_id}__{task_id}", 250)  # Variable keys: up to 250
        self._context = context
        store = context.get("asset_state_store")
        self._accessor = asset_state_accessor(store, target) if store is not None else None
        self.backend = (
            f"asset_state_store of {target}" if self._accessor is not None else f"variable {self.variable_key}"
        )

    # -- reading --

    def loaded(self) -> list[Interval]:
        """Every interval recorded as loaded, merged; gaps are first looked up in the per-interval keys."""
        intervals = merge(self._asset_record() + self._variable_record())
        found = self._recover(intervals)
        if found:
            log.warning(
                "Missed-window ledger: %s was loaded but missing from the record (runs finishing at the same "
                "moment); merged back from its own keys",
                describe(merge(found)),
            )
            try:
                self._write(found)
            except Exception as exc:
                log.warning("Missed-window ledger: could not write the recovered intervals back: %s", exc)
            intervals = merge(intervals + found)
        return intervals

    def _asset_get(self, key: str) -> Any:
        if self._accessor is None:
            return None
        try:
            return self._accessor.get(key)
        except Exception as exc:  # e.g. the asset does not exist (yet)
            log.debug("asset_state_store of %s: no %s (%s)", self.target, key, exc)
            return None

    def _asset_record(self) -> list[Interval]:
        return from_json(self._asset_get(self.key))

    def _variable_value(self) -> dict[str, Any]:
        from airflow.providers.common.compat.sdk import Variable

        raw = Variable.get(self.variable_key, None)  # positional default: the keyword differs in Airflow 2 and 3
        if raw is None:
            return {}
        try:
            value = json.loads(raw) if isinstance(raw, str) else raw
        except ValueError:
            log.warning("Variable %s is not a ledger (not JSON); it is replaced on the next write", self.variable_key)
            return {}
        return value if isinstance(value, dict) else {}

    def _variable_record(self) -> list[Interval]:
        return from_json(self._variable_value().get(self.target))

    def _receipt(self, kind: str, moment: datetime) -> datetime | None:
        value = self._asset_get(f"{self.key}__{kind}__{moment.isoformat()}")
        if not isinstance(value, str):
            return None
        try:
            return utc(datetime.fromisoformat(value))
        except ValueError:
            return None

    def _recover(self, intervals: list[Interval]) -> list[Interval]:
        """Intervals in the record's gaps, just before its start and just after its end, found under their
        own keys (chained: each found interval's other end is looked up next)."""
        if self._accessor is None or not intervals:
            return []
        found: list[Interval] = []
        probes = 0
        gaps: list[tuple[datetime | None, datetime | None]] = [(None, intervals[0][0])]
        gaps += [(a[1], b[0]) for a, b in pairwise(intervals)]
        gaps.append((intervals[-1][1], None))
        for low, high in gaps:
            while low is not None and (high is None or low < high) and probes < _MAX_PROBES:  # forward
                probes += 1
                end = self._receipt("from", low)
                if end is None or end <= low:
                    break
                found.append((low, end))
                low = end
            while high is not None and (low is None or low < high) and probes < _MAX_PROBES:  # backward
                probes += 1
                start = self._receipt("to", high)
                if start is None or start >= high:
                    break
                found.append((start, high))
                high = start
        return found

    # -- planning a run --

    def plan(self, window: Interval, *, policy: str, operation: str, serialized: bool) -> LedgerPlan:
        """Compare this run's ``window`` with the ledger and apply ``policy`` (see the module docstring).

        :param serialized: no two runs of this task can run at once (``max_active_tis_per_dag=1`` or
            ``max_active_runs=1``); only matters where other runs cannot be seen.
        :raises PeakMissedWindowsError: ``policy="fail"`` and something is missing or, under APPEND, overlaps.
        """
        start, end = utc(window[0]), utc(window[1])
        loaded = self.loaded()
        gaps = subtract((loaded[0][0], start), loaded) if loaded and loaded[0][0] < start else []
        pending: list[Interval] = []
        if gaps:
            others = self._other_runs()
            if others is None and policy == "fill" and not serialized:
                log.warning(
                    "missed_windows='fill' cannot see other runs of this task here: give the DAG "
                    "max_active_runs=1 (or the task max_active_tis_per_dag=1, a one-slot pool), or a window "
                    "another run is loading right now is loaded twice"
                )
            if others:
                pending = [piece for gap in gaps for piece in intersect(gap, others)]
                gaps = [piece for gap in gaps for piece in subtract(gap, others)]
        overlapping = intersect((start, end), loaded) if operation == APPEND else []
        if pending:
            log.info("Missed-window ledger: other runs of this task will load %s", describe(pending))
        if operation != APPEND and (again := intersect((start, end), loaded)):
            log.info("Re-loading %s, loaded before (UPSERT: the rows replace themselves)", describe(again))
        where = f"{self.dag_id}.{self.task_id} -> {self.target}"
        if policy == "fail" and (gaps or overlapping):
            raise PeakMissedWindowsError(self._failure(where, gaps, overlapping))
        if gaps and policy == "warn":
            log.warning(
                "Missed windows for %s: %s were never loaded (recorded loads start at %s). Load them with "
                "missed_windows='fill', or trigger runs whose data intervals are those windows.",
                where,
                describe(gaps),
                loaded[0][0].isoformat(),
            )
        if overlapping:
            log.warning(
                "APPEND %s: %s was loaded before; it is appended again (duplicate rows)", where, describe(overlapping)
            )
        filled = gaps if policy == "fill" else []
        if filled:
            log.warning("missed_windows='fill': loading the missed windows %s with this run's window", describe(filled))
        return LedgerPlan(merge([(start, end), *filled]), gaps, overlapping, filled, pending)

    @staticmethod
    def _failure(where: str, gaps: list[Interval], overlapping: list[Interval]) -> str:
        parts = [f"missed_windows='fail' for {where}; nothing was read or sent."]
        if gaps:
            parts.append(
                f"Never loaded: {describe(gaps)}. Load them with missed_windows='fill' (one run loads them with its "
                "own window), or trigger runs whose data intervals are exactly those windows (a backfill skips "
                "logical dates that already have a run, whichever interval that run covered)."
            )
        if overlapping:
            parts.append(
                f"This APPEND run's window overlaps {describe(overlapping)}, loaded before: running it appends "
                "those rows twice. If that is intended, run it with missed_windows='warn'."
            )
        return " ".join(parts)

    def _other_runs(self) -> list[Interval] | None:
        """Data intervals of the other runs whose instance of this task has not finished (queued, running,
        up for retry, …), through the Task SDK; ``None`` where they cannot be seen (Airflow 2, no task)."""
        ti = self._context.get("ti")
        if ti is None:
            return None
        try:
            from airflow.sdk.execution_time.comms import DagRunResult, GetDagRun
            from airflow.sdk.execution_time.task_runner import SUPERVISOR_COMMS

            states = ti.get_task_states(dag_id=self.dag_id, task_ids=[self.task_id])
        except Exception as exc:
            log.debug("Cannot list this task's other runs: %s", exc)
            return None
        own = self._context.get("run_id")
        windows: list[Interval] = []
        for run_id, tasks in states.items():
            if run_id == own or self.task_id not in tasks or str(tasks[self.task_id]) in _FINISHED:
                continue
            try:
                run = SUPERVISOR_COMMS.send(GetDagRun(dag_id=self.dag_id, run_id=run_id))
            except Exception as exc:
                log.debug("Cannot read run %s: %s", run_id, exc)
                return None
            if isinstance(run, DagRunResult) and run.data_interval_start and run.data_interval_end:
                windows.append((utc(run.data_interval_start), utc(run.data_interval_end)))
        return merge(windows)

    # -- recording --

    def record(self, windows: Sequence[Interval]) -> None:
        """Record ``windows`` as loaded (call only after a load that completed, never on a dry run)."""
        windows = merge((utc(s), utc(e)) for s, e in windows)
        if not windows:
            return
        try:
            self._write(windows)
        except Exception as exc:  # the load succeeded: failing it now would only make a retry send it again
            log.error(
                "Missed-window ledger: could not record %s (%s: %s); later runs will report it as missing",
                describe(windows),
                type(exc).__name__,
                exc,
            )
            return
        log.info("Missed-window ledger: recorded %s in %s", describe(windows), self.backend)

    def _write(self, windows: list[Interval]) -> None:
        on_asset = self._write_receipts(windows)
        for _ in range(_CONFIRM_ATTEMPTS):
            if self._merge_into_record(windows, on_asset):
                return
        log.warning(
            "Missed-window ledger: could not confirm %s in the record after %d attempts (other runs kept writing)%s",
            describe(windows),
            _CONFIRM_ATTEMPTS,
            "; its own keys keep it" if on_asset else "",
        )

    def _write_receipts(self, windows: list[Interval]) -> bool:
        """Each interval under keys no other run writes; ``False`` where the asset cannot hold state."""
        if self._accessor is None:
            return False
        try:
            for start, end in windows:
                self._accessor.set(f"{self.key}__from__{start.isoformat()}", end.isoformat())
                self._accessor.set(f"{self.key}__to__{end.isoformat()}", start.isoformat())
        except Exception as exc:  # e.g. an alias's asset the scheduler has not activated yet
            log.info("Asset %s cannot hold the ledger yet (%s); using Variable %s", self.target, exc, self.variable_key)
            self.backend = f"variable {self.variable_key}"
            return False
        self.backend = f"asset_state_store of {self.target}"
        return True

    def _merge_into_record(self, windows: list[Interval], on_asset: bool) -> bool:
        """Re-read, merge, write, pause, read back: ``True`` when the record holds ``windows``."""
        if on_asset:
            assert self._accessor is not None
            self._accessor.set(self.key, to_json(self._bounded(merge(self._asset_record() + windows))))
        else:
            from airflow.providers.common.compat.sdk import Variable

            value = self._variable_value()
            value[self.target] = to_json(self._bounded(merge(self._variable_record() + windows)))
            Variable.set(self.variable_key, json.dumps(value))
        time.sleep(random.uniform(0.05, 0.25))  # let a writer that read before our write finish its own
        record = self._asset_record() if on_asset else self._variable_record()
        return not any(subtract(window, record) for window in windows)

    def _bounded(self, intervals: list[Interval]) -> list[Interval]:
        if len(intervals) <= MAX_INTERVALS:
            return intervals
        dropped = intervals[:-MAX_INTERVALS]
        log.warning(
            "Missed-window ledger of %s.%s holds more than %d separate intervals; forgetting the oldest (%s): gaps "
            "before %s are no longer reported",
            self.dag_id,
            self.task_id,
            MAX_INTERVALS,
            describe(dropped[:3]) + (" …" if len(dropped) > 3 else ""),
            intervals[-MAX_INTERVALS][0].isoformat(),
        )
        return intervals[-MAX_INTERVALS:]
