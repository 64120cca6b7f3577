"""Pieces of a task context for running operators outside a DAG run, on Airflow 3 or 2."""

from __future__ import annotations

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
