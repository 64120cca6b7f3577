"""Pieces of a task context for running operators outside a DAG run, on Airflow 3 or 2: the context itself,
its ``outlet_events`` and in-memory stand-ins for the asset and task state stores."""

from __future__ import annotations

import json
import threading
import time
from datetime import datetime
from typing import Any


def outlet_events() -> Any:
    """An empty ``outlet_events`` accessor, as the task runner provides."""
    try:
        from airflow.sdk.execution_time.context import OutletEventAccessors
    except ImportError:  # Airflow 2
        from airflow.utils.context import OutletEventAccessors  # type: ignore[no-redef]
    return OutletEventAccessors()


def alias_events(events: Any, alias: Any) -> list[tuple[str, dict[str, Any]]]:
    """(asset URI, event extra) of each event added to ``alias`` (Airflow 3 assets, Airflow 2 datasets)."""
    accessor = events[alias]
    if hasattr(accessor, "asset_alias_events"):
        return [(e.dest_asset_key.uri, e.extra) for e in accessor.asset_alias_events]
    return [(e["dest_dataset_uri"], e["extra"]) for e in accessor.dataset_alias_events]  # TypedDicts


def task_context(start: datetime | None = None, end: datetime | None = None, **extra: Any) -> dict[str, Any]:
    """A task context: a fresh ``outlet_events``, the data interval where given, and ``extra``."""
    context: dict[str, Any] = {"outlet_events": outlet_events()}
    if start is not None:
        context["data_interval_start"] = start
    if end is not None:
        context["data_interval_end"] = end
    return {**context, **extra}


class MemoryAssetStateStore:
    """``asset_state_store`` as a task sees it, in memory: ``store[name]`` is the state accessor of one asset.

    ``values`` holds each asset's values by key (a dict passed in is used, not copied); values go through JSON
    both ways, as Airflow keeps them. ``delay`` pauses every get and set, to let concurrent writers interleave.
    With ``writable``, setting a value of any other asset fails as for an asset Airflow does not know.
    """

    def __init__(
        self,
        values: dict[str, dict[str, Any]] | None = None,
        *,
        delay: float = 0.0,
        writable: set[str] | None = None,
    ) -> None:
        self.values: dict[str, dict[str, Any]] = {} if values is None else values
        self.delay = delay
        self.writable = writable
        self.lock = threading.Lock()

    def __getitem__(self, name: str) -> MemoryAssetState:
        return MemoryAssetState(self, name)


class MemoryAssetState:
    """The state accessor of the asset ``name`` in a :class:`MemoryAssetStateStore`."""

    def __init__(self, store: MemoryAssetStateStore, name: str) -> None:
        self.store = store
        self.name = name

    def get(self, key: str, default: Any = None) -> Any:
        time.sleep(self.store.delay)
        with self.store.lock:
            return json.loads(json.dumps(self.store.values.get(self.name, {}).get(key, default)))

    def set(self, key: str, value: Any) -> None:
        if self.store.writable is not None and self.name not in self.store.writable:
            raise RuntimeError(f"Asset with name={self.name!r} not found")
        time.sleep(self.store.delay)
        with self.store.lock:
            self.store.values.setdefault(self.name, {})[key] = json.loads(json.dumps(value))


class MemoryTaskStateStore:
    """``task_state_store`` as a task sees it (one task instance), in memory: get/set/delete on ``data``."""

    def __init__(self) -> None:
        self.data: dict[str, Any] = {}

    def get(self, key: str, default: Any = None) -> Any:
        return self.data.get(key, default)

    def set(self, key: str, value: Any) -> None:
        self.data[key] = value

    def delete(self, key: str) -> None:
        self.data.pop(key, None)
