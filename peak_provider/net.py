"""Loopback checks shared by the connection (plain http:// only to loopback) and the emulator (binding)."""

from __future__ import annotations

import ipaddress


def is_loopback_literal(host: str) -> bool:
    """``localhost`` or a loopback IP literal (127.0.0.0/8, ::1); names are not resolved."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
