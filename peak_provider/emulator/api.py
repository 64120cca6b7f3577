"""The emulated API, independent of sockets: one :class:`Request` in, one :class:`Outcome` out."""

from __future__ import annotations

import hmac
import json
import logging
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, NoReturn
from urllib.parse import parse_qs, unquote

from peak_provider.api import ADD_ATTRIBUTE_PATH, INGEST_PATHS, OPERATIONS, SCHEMA_PATH, SOLUTIONS_PATH
from peak_provider.emulator import errors
from peak_provider.emulator.catalog import Catalog, column_json
from peak_provider.emulator.config import DEFAULT_PORT, FAILED_ENTRY_SHAPES, Limits
from peak_provider.emulator.errors import ApiError
from peak_provider.emulator.faults import Decision, FaultInjector, Faults
from peak_provider.emulator.ratelimit import TenantRateLimit
from peak_provider.emulator.stats import Recorder
from peak_provider.emulator.store import Store, failed_table

logger = logging.getLogger(__name__)
_INGEST = re.compile("(?:" + "|".join(re.escape(p.removesuffix("{object}")) for p in INGEST_PATHS) + ")([^/]+)")
_ADD_ATTRIBUTE = re.compile(re.escape(ADD_ATTRIBUTE_PATH).replace(re.escape("{object}"), "([^/]+)"))
#: First path segments under ``/api/v2`` that are Peak's; any other ``/api/v2`` path is Airflow's REST API.
_PEAK_V2 = frozenset(p.split("/")[3] for p in (*INGEST_PATHS, SCHEMA_PATH, SOLUTIONS_PATH, ADD_ATTRIBUTE_PATH))
_encode = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode


@dataclass
class Request:
    """An HTTP request as the handler read it. ``authorization`` is only ever compared, never kept."""

    method: str
    path: str
    query: str = ""
    authorization: str | None = None
    body: bytes = b""
    size: int = 0
    too_large: bool = False
    client_is_loopback: bool = True
    t: float = field(default_factory=time.time)


@dataclass
class Outcome:
    """What to send back; ``status`` ``None`` means close the connection without any response."""

    status: int | None
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class _Result:
    status: int
    payload: Any
    headers: dict[str, str] = field(default_factory=dict)
    rows: int = 0
    accepted: int = 0
    failed: int = 0


def _reject_constant(name: str) -> NoReturn:
    raise ValueError(f"{name} is not valid JSON")


def _parse_json(body: bytes) -> Any:
    try:
        return json.loads(body, parse_constant=_reject_constant)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ApiError(400, errors.MALFORMED_JSON, "REQUEST", f"The body is not valid JSON: {exc}") from None


def _is_airflow_path(route: str) -> bool:
    """``/execution/...`` (the Task Execution API) or an ``/api/v2/...`` path that is not Peak's."""
    parts = route.split("/")[1:]
    if parts[:1] == ["execution"]:
        return True
    return parts[:2] == ["api", "v2"] and (len(parts) < 3 or parts[2] not in _PEAK_V2)


def _bad_body(message: str) -> ApiError:
    return ApiError(400, errors.INVALID_BODY, "REQUEST", message)


class EmulatorApp:
    """Routing, checks in the documented order, fault injection and recording."""

    def __init__(
        self,
        *,
        tokens: Iterable[str],
        catalog: Catalog,
        store: Store,
        limits: Limits,
        faults: Faults,
        recorder: Recorder,
        base_paths: Iterable[str],
        failed_entries: str,
    ):
        if failed_entries not in FAILED_ENTRY_SHAPES:
            raise ValueError(f"Unknown failed-entry shape {failed_entries!r}; known: {', '.join(FAILED_ENTRY_SHAPES)}")
        self.failed_entries = failed_entries
        self.tokens = tuple(tokens)
        self.catalog = catalog
        self.store = store
        self.limits = limits
        self.initial_faults = faults
        self.injector = FaultInjector(faults)
        self.limiter = TenantRateLimit(limits.requests_per_second, limits.rate_limit_mode, limits.rate_limit_scope)
        self.recorder = recorder
        self.base_paths = sorted({b.rstrip("/") for b in base_paths}, key=len, reverse=True)

    def reset(self) -> None:
        """Clear rows, failed rows, stats, the request log, rate-limit state and custom attributes;
        restore the fault configuration given at construction."""
        self.store.reset()
        self.recorder.reset()
        self.limiter.reset()
        self.catalog.reset()
        self.injector.configure(self.initial_faults)

    # -- entry point -------------------------------------------------------------------------------

    def _route(self, path: str) -> str | None:
        for base in self.base_paths:
            if not base:
                return path
            if path.startswith(base + "/"):
                return path[len(base) :]
        return None

    def handle(self, req: Request) -> Outcome:
        route = self._route(req.path)
        if route is not None and (route == "/_emulator" or route.startswith("/_emulator/")):
            return self._control(req, route)
        if route is not None and _is_airflow_path(route):
            return self._misdirected(req)
        decision = self.injector.decide()
        if decision.delay:
            time.sleep(decision.delay)
        if decision.kind == "drop":
            self._record(req, None, decision.kind)
            return Outcome(None)
        if decision.kind in ("error", "throttle"):
            result = self._injected(decision)
        else:
            if decision.kind == "slow":
                time.sleep(self.injector.faults.slow_seconds)
            result = self._dispatch(req, route)
        if decision.kind == "lost_response":
            self._record(req, None, decision.kind, result)
            return Outcome(None)
        self._record(req, result.status, decision.kind, result)
        return Outcome(result.status, _encode(result.payload).encode(), result.headers)

    def _record(self, req: Request, status: int | None, fault: str | None, result: _Result | None = None) -> None:
        self.recorder.record(
            t=req.t,
            method=req.method,
            path=req.path,
            status=status,
            rows=result.rows if result else 0,
            nbytes=req.size,
            accepted=result.accepted if result else 0,
            failed=result.failed if result else 0,
            fault=fault,
        )

    def _misdirected(self, req: Request) -> Outcome:
        """421 for Airflow api-server paths, before auth and faults, so a port clash explains itself."""
        err = ApiError(
            421,
            errors.MISDIRECTED,
            "MISDIRECTED",
            f"Misdirected request to {req.path}: this is the Peak emulator, not Airflow's api-server. "
            "Airflow calls its api-server at [core] execution_api_server_url and [api] base_url "
            f"(http://localhost:8080 by default): run peak-emulator on another port (its default is {DEFAULT_PORT}) "
            "and keep those settings pointing at the api-server.",
        )
        self._record(req, err.status, None)
        return Outcome(err.status, _encode(err.body()).encode(), err.headers)

    def _injected(self, decision: Decision) -> _Result:
        if decision.kind == "throttle":
            err = ApiError(
                429,
                errors.RATE_LIMITED,
                "THROTTLING",
                "Too many requests (injected fault)",
                {"Retry-After": str(decision.retry_after)},
            )
        else:
            err = ApiError(decision.status, errors.INJECTED_FAULT, "SERVER", f"Injected fault: HTTP {decision.status}")
        return _Result(err.status, err.body(), err.headers)

    def _dispatch(self, req: Request, route: str | None) -> _Result:
        try:
            return self._api(req, route)
        except ApiError as err:
            return _Result(err.status, err.body(), err.headers, err.rows)
        except Exception:
            logger.exception("Emulator error handling %s %s", req.method, req.path)
            internal = ApiError(500, errors.INTERNAL, "SERVER", "Internal emulator error")
            return _Result(internal.status, internal.body())

    # -- API ---------------------------------------------------------------------------------------

    def _api(self, req: Request, route: str | None) -> _Result:
        if route is None:
            raise ApiError(404, errors.UNKNOWN_ENDPOINT, "NOT_FOUND", f"No endpoint at {req.path}")
        route = route.rstrip("/") or "/"
        m = _INGEST.fullmatch(route)
        if m:
            self._require_method(req, "POST")
            return self._ingest(req, unquote(m.group(1)))
        if route == SOLUTIONS_PATH:
            self._require_method(req, "GET")
            self._admit(req)
            return _Result(200, self.catalog.solutions_json())
        if route == SCHEMA_PATH:
            self._require_method(req, "GET")
            self._admit(req)
            return _Result(200, self._schema(req))
        m = _ADD_ATTRIBUTE.fullmatch(route)
        if m:
            self._require_method(req, "POST")
            return self._add_attribute(req, unquote(m.group(1)))
        raise ApiError(404, errors.UNKNOWN_ENDPOINT, "NOT_FOUND", f"No endpoint at {req.path}")

    @staticmethod
    def _require_method(req: Request, method: str) -> None:
        if req.method != method:
            raise ApiError(
                405,
                errors.METHOD_NOT_ALLOWED,
                "REQUEST",
                f"{req.method} is not allowed here; use {method}",
                {"Allow": method},
            )

    def _admit(self, req: Request) -> None:
        """Authenticate, then rate-limit (per tenant, or per token)."""
        given = req.authorization
        token = None
        if given is not None:
            raw = given.encode()
            token = next((t for t in self.tokens if hmac.compare_digest(raw, t.encode())), None)
        if token is None:
            hint = ""
            if given and given[:7].lower() == "bearer ":
                hint = "; send the raw token, without a 'Bearer ' prefix"
            message = "Missing Authorization header" if given is None else f"Invalid API token{hint}"
            raise ApiError(401, errors.UNAUTHORIZED, "AUTHENTICATION", message)
        throttled = self.limiter.acquire(token)
        if throttled is None:
            return
        budget = f"Rate limit of {self.limiter.rate:g} requests per second per {self.limiter.scope} exceeded"
        if throttled.retry_after is None:
            raise ApiError(429, errors.RATE_LIMITED, "THROTTLING", f"{budget} in this one-second window")
        wait = throttled.retry_after
        raise ApiError(
            429, errors.RATE_LIMITED, "THROTTLING", f"{budget}; retry after {wait} s", {"Retry-After": str(wait)}
        )

    def _check_size(self, req: Request) -> None:
        if req.too_large:
            raise ApiError(
                413,
                errors.BODY_TOO_LARGE,
                "REQUEST",
                f"The body has {req.size} bytes; the limit is {self.limits.max_request_bytes}",
            )

    def _solution(self, name: Any, status: int = 400) -> str:
        if not isinstance(name, str) or not name:
            raise _bad_body("'solutionName' must be a non-empty string")
        if name not in self.catalog.solutions:
            category = "NOT_FOUND" if status == 404 else "REQUEST"
            raise ApiError(status, errors.UNKNOWN_SOLUTION, category, f"Unknown solution {name!r}")
        return name

    def _json_request(self, req: Request) -> tuple[dict[str, Any], str]:
        """Admit (auth, rate limit), size-check and parse a JSON-object body naming a known solution."""
        self._admit(req)
        self._check_size(req)
        body = _parse_json(req.body)
        if not isinstance(body, dict):
            raise _bad_body("The body must be a JSON object")
        return body, self._solution(body.get("solutionName"))

    def _ingest(self, req: Request, object_name: str) -> _Result:
        body, solution = self._json_request(req)
        data = body.get("data")
        if not isinstance(data, list):
            raise _bad_body("'data' must be a list of rows")
        operation = body.get("operationType")
        if operation not in OPERATIONS:
            raise _bad_body(f"'operationType' must be {' or '.join(map(repr, OPERATIONS))}")
        dry_run = body.get("dryRun", False)
        if type(dry_run) is not bool:
            raise _bad_body("'dryRun' must be a boolean")
        obj = self.catalog.object(solution, object_name)
        if obj is None:
            raise ApiError(
                404,
                errors.UNKNOWN_OBJECT,
                "NOT_FOUND",
                f"Unknown object {object_name!r} for solution {solution!r}",
                rows=len(data),
            )
        max_rows = self.limits.max_rows_per_request
        if max_rows and len(data) > max_rows:
            raise ApiError(
                413,
                errors.TOO_MANY_ROWS,
                "REQUEST",
                f"{len(data)} rows in one request; the limit is {max_rows}",
                rows=len(data),
            )
        valid, failed = obj.validator.validate(data)
        if not dry_run:
            self.store.write(obj.name, operation, valid, obj.primary_key, failed)
        status = "SUCCESS" if not failed else "PARTIAL_SUCCESS" if valid else "FAILED"
        payload = {
            "status": status,
            "objectName": obj.name,
            "operationType": operation,
            "dryRun": dry_run,
            "received": len(data),
            "accepted": len(valid),
            "failed": self._answered(failed),
        }
        if dry_run:
            return _Result(200, payload, rows=len(data))
        return _Result(200, payload, rows=len(data), accepted=len(valid), failed=len(failed))

    def _answered(self, failed: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The ``failed`` entries as the answer shows them (:data:`FAILED_ENTRY_SHAPES`); the store keeps both."""
        if self.failed_entries == "index+row":
            return failed
        left_out = "row" if self.failed_entries == "index" else "index"
        return [{k: v for k, v in entry.items() if k != left_out} for entry in failed]

    def _schema(self, req: Request) -> dict[str, Any]:
        names = parse_qs(req.query).get("solutionName")
        if not names:
            raise _bad_body("The query parameter 'solutionName' is required")
        return self.catalog.schema_json(self._solution(names[0], status=404))

    def _add_attribute(self, req: Request, ref: str) -> _Result:
        body, solution = self._json_request(req)
        column = self.catalog.add_attribute(solution, ref, body)
        obj = self.catalog.find_object(solution, ref)
        return _Result(
            200,
            {"status": "SUCCESS", "objectName": obj.name if obj else ref, "column": column_json(column)},
        )

    # -- inspection and control --------------------------------------------------------------------

    def _control(self, req: Request, route: str) -> Outcome:
        try:
            if not req.client_is_loopback:
                raise ApiError(403, errors.FORBIDDEN, "FORBIDDEN", "Control endpoints answer loopback clients only")
            payload = self._control_payload(req, route.rstrip("/"))
            return Outcome(200, _encode(payload).encode())
        except ApiError as err:
            return Outcome(err.status, _encode(err.body()).encode(), err.headers)

    def _control_payload(self, req: Request, route: str) -> Any:
        parts = route.split("/")[2:]  # after "", "_emulator"
        get: dict[tuple[str, ...], Callable[[], Any]] = {
            ("health",): lambda: {"status": "ok"},
            ("stats",): self.recorder.snapshot,
            ("requests",): lambda: {"count": len(log := self.recorder.entries()), "requests": log},
            ("faults",): lambda: self.injector.faults.to_dict(),
            ("objects",): self._objects_summary,
        }
        key = tuple(parts)
        if len(parts) == 2 and parts[0] in ("objects", "failed"):
            self._require_method(req, "GET")
            name = unquote(parts[1])
            rows = self.store.rows(name) if parts[0] == "objects" else self.store.failed_rows(name)
            return {"object": name, "count": len(rows), "rows": rows}
        if key == ("reset",):
            self._require_method(req, "POST")
            self.reset()
            return {"status": "ok"}
        if key == ("faults",) and req.method == "POST":
            config = _parse_json(req.body)
            if not isinstance(config, dict):
                raise _bad_body("The fault configuration must be a JSON object")
            try:
                faults = Faults.from_dict(config)
            except ValueError as exc:
                raise _bad_body(str(exc)) from None
            self.injector.configure(faults)
            return faults.to_dict()
        if key in get:
            self._require_method(req, "GET")
            return get[key]()
        raise ApiError(404, errors.UNKNOWN_ENDPOINT, "NOT_FOUND", f"No endpoint at {req.path}")

    def _objects_summary(self) -> dict[str, Any]:
        return {
            "objects": [
                {"object": n, "count": self.store.count(n), "failed": self.store.count(failed_table(n))}
                for n in self.catalog.object_names()
            ]
        }
