"""Plain helpers for the emulator tests (a ``requests`` client bound to one emulator, row builders)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import requests

from peak_provider.emulator import Emulator

PRODUCTS = "INV_PRODUCTS_OOTB"
INGEST = "/api/v2/ingest/object/"
_DEFAULT = object()


def product(**overrides: Any) -> dict[str, Any]:
    """A valid ``inventory.products`` row."""
    row: dict[str, Any] = {
        "product_id": "P1",
        "source_id": "S1",
        "pack_size": 12,
        "updated_at": "2025-01-15 08:00:00",
    }
    row.update(overrides)
    return row


def body(rows: list[Any], *, solution: str = "INV_OOTB", op: str = "UPSERT", **extra: Any) -> dict[str, Any]:
    return {"solutionName": solution, "data": rows, "operationType": op, **extra}


class Api:
    """Plain ``requests`` calls against one emulator over a keep-alive session."""

    def __init__(self, emulator: Emulator):
        self.emulator = emulator
        self.session = requests.Session()

    def headers(self, token: Any = _DEFAULT) -> dict[str, str]:
        token = self.emulator.token if token is _DEFAULT else token
        return {} if token is None else {"Authorization": token}

    def post(
        self,
        path: str,
        json_body: Any = None,
        *,
        data: bytes | None = None,
        token: Any = _DEFAULT,
        timeout: float = 10,
        **kwargs: Any,
    ) -> requests.Response:
        headers = {**self.headers(token), "Content-Type": "application/json"}
        return self.session.post(
            self.emulator.url + path, json=json_body, data=data, headers=headers, timeout=timeout, **kwargs
        )

    def get(self, path: str, *, token: Any = _DEFAULT, **kwargs: Any) -> requests.Response:
        return self.session.get(self.emulator.url + path, headers=self.headers(token), timeout=10, **kwargs)

    def ingest(self, rows: list[Any], obj: str = PRODUCTS, **kwargs: Any) -> requests.Response:
        """POST ``rows`` as a UPSERT to ``obj`` (keywords go to :func:`body` or :meth:`post`)."""
        post_kwargs = {k: kwargs.pop(k) for k in ("token", "timeout") if k in kwargs}
        return self.post(INGEST + obj, body(rows, **kwargs), **post_kwargs)

    def close(self) -> None:
        self.session.close()


def wait_for(predicate: Callable[[], Any], timeout: float = 5.0) -> Any:
    """Poll ``predicate`` until it is truthy (for work the server finishes after the client gave up)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.02)
