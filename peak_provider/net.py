"""Loopback checks shared by the connection (plain http:// only to loopback) and the emulator (binding)."""

from __future__ import annotations

import ipaddress
import socket


def is_loopback_literal(host: str) -> bool:
    """``localhost`` or a loopback IP literal (127.0.0.0/8, ::1); names are not resolved."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def is_loopback(host: str) -> bool:
    """True when every address ``host`` resolves to is a loopback address (names are resolved)."""
    if is_loopback_literal(host):
        return True
    try:
        infos = socket.getaddrinfo(host, None)
    except OSError:
        return False
    return bool(infos) and all(ipaddress.ip_address(i[4][0]).is_loopback for i in infos)
