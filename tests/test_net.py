"""``net.is_loopback_literal``: which hosts count as loopback (plain http:// is allowed only to those)."""

from __future__ import annotations

import pytest

from peak_provider.net import is_loopback_literal


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
