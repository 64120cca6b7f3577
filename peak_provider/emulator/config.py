"""Emulator configuration: solutions (what a tenant can load into) and request limits."""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass

from peak_provider.net import is_loopback_literal
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
        return self.timestamp_format or get_application(self.application).timestamp_format

    def object_name(self, base: str) -> str:
        return f"{self.prefix}{base}{self.suffix}"


DEFAULT_SOLUTIONS = (
    Solution("INV_OOTB", "inventory", "INV_", "_OOTB"),
    Solution("QP_OOTB", "b2c_pricing", "QP_", "_OOTB"),
)


@dataclass(frozen=True)
class Limits:
    """Request limits; ``0`` or ``None`` disables one. ``requests_per_second`` is per token."""

    max_rows_per_request: int | None = 500
    max_request_bytes: int | None = 1_000_000
    requests_per_second: float | None = 50


def is_loopback(host: str) -> bool:
    """True when every address ``host`` resolves to is a loopback address."""
    if is_loopback_literal(host):
        return True
    try:
        infos = socket.getaddrinfo(host, None)
    except OSError:
        return False
    return bool(infos) and all(ipaddress.ip_address(i[4][0]).is_loopback for i in infos)
