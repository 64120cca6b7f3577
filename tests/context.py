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
