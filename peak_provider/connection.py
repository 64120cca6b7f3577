"""The ``peak`` connection parsed and validated into :class:`PeakSettings`.

A connection holds the Personal Access Token (Password), the API base URL (Host) and the extras below.
:class:`PeakSettings` is the validated, typed view the hook works from; every problem is reported at
hook construction with the connection id and the extra's name.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from datetime import UTC, tzinfo
from typing import Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from peak_provider.exceptions import PeakConfigError
from peak_provider.extras import CONN_TYPE, DEFAULT_HOST, EXTRAS, Extra
from peak_provider.net import is_loopback_literal
from peak_provider.resources import APPLICATIONS


@dataclass(frozen=True)
class PeakSettings:
    """Validated settings of one ``peak`` connection (the token is kept apart, see the hook)."""

    conn_id: str
    base_url: str
    solution_name: str
    application: str
    prefix: str
    suffix: str
    ingest_path: str
    max_rows_per_request: int
    max_request_bytes: int
    requests_per_second: float
    rate_limit_scope: str
    rate_limit_conn_id: str | None
    rate_limit_tenant: str | None
    max_throttle_wait: float
    max_in_flight: int
    timeout: float
    request_deadline: float
    max_retries: int
    retry_backoff: float
    retry_backoff_max: float
    verify: bool
    timestamp_format: str | None
    source_timezone: str
    #: ``source_timezone`` parsed: :data:`datetime.UTC` for ``UTC`` (the encoder's fast path), else a ``ZoneInfo``.
    source_zone: tzinfo

    @property
    def host(self) -> str:
        return urlsplit(self.base_url).netloc

    @classmethod
    def from_parts(cls, conn_id: str, host: str | None, port: int | None, extra: dict[str, Any]) -> PeakSettings:
        """Build settings from a connection's host, port and extras, or raise :class:`PeakConfigError`."""

        def fail(key: str, problem: str) -> PeakConfigError:
            return PeakConfigError(f"Peak connection {conn_id!r}: {key}: {problem}")

        values: dict[str, Any] = {}
        unknown = sorted(k for k in extra if _strip_legacy_prefix(k) not in EXTRAS and extra[k] not in (None, ""))
        if unknown:
            raise fail(unknown[0], f"unknown extra; known extras are {', '.join(EXTRAS)}")
        for name, spec in EXTRAS.items():
            raw = extra.get(name, extra.get(f"extra__{CONN_TYPE}__{name}"))
            values[name] = spec.default if raw in (None, "") else _coerce(raw, spec, lambda p, n=name: fail(n, p))
        if not values["solution_name"]:
            raise fail("solution_name", "required extra is missing (e.g. INV_OOTB)")
        if values["application"] not in APPLICATIONS:
            raise fail("application", f"{values['application']!r} is not one of {', '.join(APPLICATIONS)}")
        if "{object}" not in values["ingest_path"]:
            raise fail("ingest_path", "must contain '{object}'")
        try:
            zone = parse_zone(values["source_timezone"])
        except (ZoneInfoNotFoundError, ValueError):
            raise fail("source_timezone", f"unknown time zone {values['source_timezone']!r}") from None
        return cls(conn_id=conn_id, base_url=_base_url(conn_id, host, port), source_zone=zone, **values)


def parse_zone(name: str) -> tzinfo:
    """An IANA zone name as a ``tzinfo``: :data:`datetime.UTC` for ``UTC`` (the encoder's fast path looks for
    it: naive values then need no conversion), else a ``ZoneInfo``.

    :raises ZoneInfoNotFoundError: no such zone (``ValueError`` for a malformed name).
    """
    return UTC if name == "UTC" else ZoneInfo(name)


def _strip_legacy_prefix(key: str) -> str:
    return key.removeprefix(f"extra__{CONN_TYPE}__")


def _coerce(raw: Any, spec: Extra, fail: Any) -> Any:
    """Coerce an extra from JSON or UI text to its declared type and check finiteness, enum and minimum."""
    try:
        if spec.type == "boolean":
            if isinstance(raw, str):
                if raw.strip().lower() not in ("true", "false", "1", "0", "yes", "no"):
                    raise ValueError
                value: Any = raw.strip().lower() in ("true", "1", "yes")
            else:
                value = bool(raw)
        elif spec.type == "integer":
            if isinstance(raw, bool) or float(raw) != int(float(raw)):
                raise ValueError
            value = int(float(raw))
        elif spec.type == "number":
            if isinstance(raw, bool):
                raise ValueError
            value = float(raw)
        else:
            if not isinstance(raw, str):
                raise ValueError
            value = raw.strip()
    except (TypeError, ValueError, OverflowError):  # OverflowError: "inf" or a huge number for an integer
        raise fail(f"expected {spec.type}, got {raw!r}") from None
    if isinstance(value, float) and not math.isfinite(value):  # "nan" and "inf" parse, and NaN passes the minimum
        raise fail(f"expected a finite number, got {raw!r}")
    if spec.enum and value not in spec.enum:
        raise fail(f"{value!r} is not one of {', '.join(spec.enum)}")
    if spec.minimum is not None and value < spec.minimum:
        raise fail(f"must be >= {spec.minimum}, got {value}")
    return value


def _base_url(conn_id: str, host: str | None, port: int | None) -> str:
    """Normalise Host (+ Port) to a base URL; refuse user-info, a query or a fragment, and plain http except
    to loopback."""
    url = (host or DEFAULT_HOST).strip().rstrip("/")
    if "://" not in url:
        url = f"https://{url}"
    try:
        parts = urlsplit(url)
    except ValueError:  # e.g. "[::1" (its message may quote a user-info password: not passed on)
        raise PeakConfigError(f"Peak connection {conn_id!r}: host: not a URL (a broken IPv6 literal?)") from None
    if "@" in parts.netloc:  # requests would send it as Basic auth in place of the token; never echo it
        raise PeakConfigError(
            f"Peak connection {conn_id!r}: host: remove the user-info (user:password@) from the API base URL; "
            "the Personal Access Token (Password) is the only credential"
        )
    if "?" in url or "#" in url:  # the ingest paths are appended to the base URL
        raise PeakConfigError(
            f"Peak connection {conn_id!r}: host: remove the query ('?...') or fragment ('#...') from the API base URL"
        )
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise PeakConfigError(f"Peak connection {conn_id!r}: host: {host!r} is not an http(s) URL")
    try:
        parts.port  # noqa: B018 - raises for a port that is not a number from 0 to 65535
    except ValueError:
        raise PeakConfigError(f"Peak connection {conn_id!r}: host: {host!r} has an invalid port") from None
    if parts.scheme == "http" and not is_loopback_literal(parts.hostname):
        raise PeakConfigError(
            f"Peak connection {conn_id!r}: host: plain http:// is refused for {parts.hostname!r} "
            "(the token would travel unencrypted); use https:// (http is allowed only to loopback)"
        )
    if port and parts.port is None:
        url = f"{parts.scheme}://{parts.netloc.rstrip(':')}:{port}{parts.path}"
    return url


def parse_extra(extra: str | dict[str, Any] | None) -> dict[str, Any]:
    """Connection extras as a dict, whether given as JSON text or already parsed."""
    if not extra:
        return {}
    if isinstance(extra, dict):
        return extra
    value = json.loads(extra)
    if not isinstance(value, dict):
        raise PeakConfigError("Peak connection extra must be a JSON object")
    return value
