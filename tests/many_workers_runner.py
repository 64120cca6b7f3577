"""One worker process of ``tests/reliability/test_many_workers.py``: APPEND this worker's own rows to one tenant.

``python -m tests.many_workers_runner CONN_ID WORKER ROWS READY_FILE``: builds a :class:`PeakHook` from
``AIRFLOW_CONN_<CONN_ID>`` (its rate control included), creates ``READY_FILE``, waits for a line on stdin
(so that every worker starts sending at once), then APPENDs ``ROWS`` ``products`` rows whose ids are unique
to ``WORKER`` (:func:`product_id`). Prints one JSON line on stdout: the :class:`IngestResult`, the rate
control in use (and its budget's slots: ``RedisSlots`` or ``HostSlots``), and ``error`` (``null`` on
success). Exits 1 when the load failed.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

RESOURCE = "products"


def product_id(worker: int, index: int) -> str:
    """The id of row ``index`` of ``worker``: no two workers share one."""
    return f"W{worker:02d}-{index:06d}"


def rows(worker: int, count: int) -> Iterator[dict[str, Any]]:
    """``count`` valid ``products`` rows of ``worker``."""
    for i in range(count):
        yield {
            "product_id": product_id(worker, i),
            "source_id": f"S{i % 13}",
            "pack_size": 1 + i % 7,
            "updated_at": "2025-03-01 10:00:00",
        }


def main(argv: list[str]) -> int:
    conn_id, worker, count, ready = argv[0], int(argv[1]), int(argv[2]), Path(argv[3])
    from peak_provider.exceptions import PeakError
    from peak_provider.hooks.peak import PeakHook
    from peak_provider.ratecontrol import SharedBudget
    from peak_provider.result import IngestResult

    hook = PeakHook(conn_id)
    control = hook.transport.control  # built now, not in the race: the budget's settings, shared pacer
    ready.touch()
    sys.stdin.readline()  # the test's "go", sent to every worker once all are ready
    error = None
    result: IngestResult | None
    try:
        result = hook.append(RESOURCE, rows(worker, count))
    except PeakError as exc:
        error = str(exc)
        result = exc.result
    finally:
        hook.close()
    report = {
        "worker": worker,
        "control": type(control).__name__,
        "slots": type(control.slots).__name__ if isinstance(control, SharedBudget) else None,
        "budget_available": control.available if isinstance(control, SharedBudget) else None,
        "error": error,
        "result": result.to_dict() if result is not None else None,
    }
    print(json.dumps(report), flush=True)
    return 0 if error is None else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
