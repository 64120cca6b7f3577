"""``net``: which hosts count as loopback (plain http:// is allowed only to those; the emulator binds only to
those unless told otherwise)."""

from __future__ import annotations

import socket

import pytest

from peak_provider import net
from peak_provider.net import is_loopback, is_loopback_literal


@pytest.mark.parametrize("host", ["localhost", "127.0.0.1", "127.0.0.2", "127.255.255.254", "::1", "0:0:0:0:0:0:0:1"])
def test_loopback_literals(host):
    assert is_loopback_literal(host)


@pytest.mark.parametrize(
    "host",
    [
        "0.0.0.0",  # every interface, not loopback
        "::",
        "10.0.0.1",
        "128.0.0.1",
        "192.168.1.10",
        "fe80::1",
        "service.peak.ai",
        "localhost.peak.ai",  # a name is never resolved, whatever it points to
        "127.0.0.1.nip.io",
        "[::1]",  # URL brackets are the caller's to strip (urlsplit().hostname does)
        "127.1",  # not an address literal ipaddress accepts
        "",
    ],
)
def test_everything_else_is_not(host):
    assert not is_loopback_literal(host)


def _resolves_to(monkeypatch, *addresses: str) -> None:
    infos = [(socket.AF_INET6 if ":" in a else socket.AF_INET, socket.SOCK_STREAM, 6, "", (a, 0)) for a in addresses]
    monkeypatch.setattr(net.socket, "getaddrinfo", lambda host, port: infos)


def test_a_name_is_loopback_when_every_address_it_resolves_to_is(monkeypatch):
    _resolves_to(monkeypatch, "127.0.0.1", "::1")
    assert is_loopback("peak-emulator.internal")


@pytest.mark.parametrize(
    "addresses", [("127.0.0.1", "10.0.0.5"), ("192.168.1.10",), ()], ids=["mixed", "remote", "none"]
)
def test_a_name_resolving_anywhere_else_or_nowhere_is_not(monkeypatch, addresses):
    _resolves_to(monkeypatch, *addresses)
    assert not is_loopback("peak-emulator.internal")


def test_an_unresolvable_name_is_not(monkeypatch):
    def fail(host, port):
        raise socket.gaierror("Name or service not known")

    monkeypatch.setattr(net.socket, "getaddrinfo", fail)
    assert not is_loopback("no-such-host.invalid")


@pytest.mark.parametrize("host", ["localhost", "127.0.0.1", "::1"])
def test_literals_are_not_resolved(monkeypatch, host):
    monkeypatch.setattr(net.socket, "getaddrinfo", None)  # a call would raise TypeError
    assert is_loopback(host)
