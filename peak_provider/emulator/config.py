"""Emulator configuration: solutions (what a tenant can load into), request limits and UPSERT semantics."""

from __future__ import annotations

from dataclasses import dataclass

from peak_provider.api import MAX_REQUEST_BYTES, MAX_ROWS_PER_REQUEST, REQUESTS_PER_SECOND, object_name
from peak_provider.resources import APPLICATIONS, TIMESTAMP_FORMATS, get_application


@dataclass(frozen=True)
class Solution:
    """A Peak solution: objects are ``prefix + RESOURCE_OBJECT + suffix`` of ``application``'s catalogue.

    :param timestamp_format: overrides the application's timestamp wire format.
    """

    name: str
    application: str
    prefix: str = ""
    suffix: str = ""
    timestamp_format: str | None = None

    def __post_init__(self) -> None:
        if not self.name:
            raise ValueError("A solution needs a name")
        if self.application not in APPLICATIONS:
            raise ValueError(
                f"Unknown application {self.application!r} for solution {self.name!r}; known: {', '.join(APPLICATIONS)}"
            )
        if self.timestamp_format is not None and self.timestamp_format not in TIMESTAMP_FORMATS:
            raise ValueError(
                f"Unknown timestamp format {self.timestamp_format!r}; known: {', '.join(TIMESTAMP_FORMATS)}"
            )

    @classmethod
    def parse(cls, spec: str) -> Solution:
        """Parse ``NAME:APPLICATION[:PREFIX[:SUFFIX[:TIMESTAMP_FORMAT]]]`` (the format may hold colons)."""
        parts = spec.split(":", 4)
        if len(parts) < 2:
            raise ValueError(f"Solution {spec!r} is not NAME:APPLICATION[:PREFIX[:SUFFIX[:TIMESTAMP_FORMAT]]]")
        name, application = parts[0], parts[1]
        prefix = parts[2] if len(parts) > 2 else ""
        suffix = parts[3] if len(parts) > 3 else ""
        fmt = parts[4] if len(parts) > 4 and parts[4] else None
        return cls(name, application, prefix, suffix, fmt)

    @property
    def effective_timestamp_format(self) -> str:
        return get_application(self.application).timestamp_format_with(self.timestamp_format)

    def object_name(self, base: str) -> str:
        return object_name(self.prefix, base, self.suffix)


DEFAULT_SOLUTIONS = (
    Solution("INV_OOTB", "inventory", "INV_", "_OOTB"),
    Solution("QP_OOTB", "b2c_pricing", "QP_", "_OOTB"),
)


#: Port ``peak-emulator`` listens on by default: no Airflow component's default (api-server 8080, log
#: servers 8793/8794, scheduler health 8974, Flower 5555).
DEFAULT_PORT = 8787

#: ``token-bucket``: capacity ``rate``, refilled ``rate``/s, 429 with ``Retry-After``;
#: ``fixed-window``: at most ``rate`` requests per wall-clock second, 429 without ``Retry-After``.
RATE_LIMIT_MODES = ("token-bucket", "fixed-window")
#: ``tenant``: one budget for the whole emulator (every token and solution); ``token``: one per token.
RATE_LIMIT_SCOPES = ("tenant", "token")
#: What ``UPSERT`` does to a stored row with the same primary key: ``replace`` it with the sent row, or
#: ``merge`` the sent columns into it (columns not sent keep their stored values).
UPSERT_MODES = ("replace", "merge")
#: How a ``failed`` entry of an ingest answer names its row (the real API's shape is not documented):
#: ``index+row`` (both), ``index`` (the position in ``data`` only) or ``row`` (the row as received only).
FAILED_ENTRY_SHAPES = ("index+row", "index", "row")
#: The default of each choice above is its first entry.
DEFAULT_RATE_LIMIT_MODE = RATE_LIMIT_MODES[0]
DEFAULT_RATE_LIMIT_SCOPE = RATE_LIMIT_SCOPES[0]
DEFAULT_UPSERT = UPSERT_MODES[0]
DEFAULT_FAILED_ENTRIES = FAILED_ENTRY_SHAPES[0]


@dataclass(frozen=True)
class Limits:
    """Request limits; ``0`` or ``None`` disables one.

    ``requests_per_second`` is enforced per ``rate_limit_scope`` (one tenant by default) the way
    ``rate_limit_mode`` says (see :data:`RATE_LIMIT_MODES`, :data:`RATE_LIMIT_SCOPES`).
    """

    max_rows_per_request: int | None = MAX_ROWS_PER_REQUEST
    max_request_bytes: int | None = MAX_REQUEST_BYTES
    requests_per_second: float | None = REQUESTS_PER_SECOND
    rate_limit_mode: str = DEFAULT_RATE_LIMIT_MODE
    rate_limit_scope: str = DEFAULT_RATE_LIMIT_SCOPE

    def __post_init__(self) -> None:
        if self.rate_limit_mode not in RATE_LIMIT_MODES:
            raise ValueError(f"Unknown rate limit mode {self.rate_limit_mode!r}; known: {', '.join(RATE_LIMIT_MODES)}")
        if self.rate_limit_scope not in RATE_LIMIT_SCOPES:
            raise ValueError(
                f"Unknown rate limit scope {self.rate_limit_scope!r}; known: {', '.join(RATE_LIMIT_SCOPES)}"
            )
