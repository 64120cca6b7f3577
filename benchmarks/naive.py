"""The hand-written baseline: ``get_records`` everything, then POST one batch at a time.

This is the loop the provider replaces: ``DbApiHook.get_records`` + ``json.dumps`` + sequential POSTs of
fixed-size batches, with the hook's headers and body shape. Datetimes and Decimals are converted to the
wire strings/numbers by hand so the emulator accepts every row. It is given a keep-alive session, so it
is, if anything, faster than the usual ``requests.post`` per batch.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import requests


def wire_value(value: Any) -> Any:
    """A warehouse value as the b2c API expects it (ISO ``...Z`` timestamps, numbers for numerics)."""
    if isinstance(value, datetime):
        return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    if isinstance(value, Decimal):
        return float(value)
    return value


def naive_load(
    records: Sequence[Sequence[Any]],
    columns: Sequence[str],
    *,
    url: str,
    token: str,
    solution: str,
    batch_rows: int,
    dry_run: bool = False,
) -> tuple[int, int]:
    """POST ``records`` in ``batch_rows`` batches, one after the other; return (rows accepted, requests)."""
    accepted = requests_sent = 0
    headers = {"Authorization": token, "Content-Type": "application/json"}
    with requests.Session() as session:
        for start in range(0, len(records), batch_rows):
            data = [
                dict(zip(columns, map(wire_value, row), strict=True)) for row in records[start : start + batch_rows]
            ]
            payload = {"solutionName": solution, "data": data, "operationType": "UPSERT"}
            body = json.dumps({**payload, "dryRun": True} if dry_run else payload)
            response = session.post(url, data=body, headers=headers, timeout=60)
            response.raise_for_status()
            accepted += len(data) - len(response.json().get("failed", []))
            requests_sent += 1
    return accepted, requests_sent
