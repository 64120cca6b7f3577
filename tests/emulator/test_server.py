"""HTTP behaviour: keep-alive, Content-Length, chunked bodies, binding rules, lifecycle."""

from __future__ import annotations

import http.client
import json

import pytest
import requests

from peak_provider.emulator import Emulator, Solution
from tests.emulator.helpers import INGEST, PRODUCTS, body, product


def test_keep_alive_serves_many_requests_on_one_connection(peak_emulator):
    conn = http.client.HTTPConnection("127.0.0.1", peak_emulator.port, timeout=5)
    try:
        for i in range(3):
            payload = json.dumps(body([product(product_id=f"P{i}")]))
            conn.request("POST", INGEST + PRODUCTS, payload, {"Authorization": peak_emulator.token})
            r = conn.getresponse()
            data = r.read()
            assert r.status == 200 and r.version == 11
            assert r.getheader("Content-Length") == str(len(data))
            assert r.getheader("Connection") is None
        conn.request("GET", "/nothing")  # errors keep the connection too
        r = conn.getresponse()
        assert r.status == 404 and int(r.getheader("Content-Length")) == len(r.read())
        conn.request("GET", "/_emulator/health")
        assert conn.getresponse().read() == b'{"status":"ok"}'
    finally:
        conn.close()
    assert len(peak_emulator.rows(PRODUCTS)) == 3


def test_chunked_request_body(peak_emulator):
    payload = json.dumps(body([product()])).encode()
    r = requests.post(
        peak_emulator.url + INGEST + PRODUCTS,
        data=iter([payload[:10], payload[10:]]),
        headers={"Authorization": peak_emulator.token},
        timeout=5,
    )
    assert r.status_code == 200 and r.json()["accepted"] == 1


def test_refuses_a_non_loopback_bind_unless_allowed():
    with pytest.raises(ValueError, match="allow_remote"):
        Emulator(host="0.0.0.0")
    emu = Emulator(host="0.0.0.0", allow_remote=True).start()
    try:
        assert requests.get(f"http://127.0.0.1:{emu.port}/_emulator/health", timeout=5).status_code == 200
    finally:
        emu.stop()


def test_stop_closes_keep_alive_connections_and_restart_works():
    emu = Emulator(tokens="t").start()
    with requests.Session() as s:
        assert s.get(emu.url + "/_emulator/health", timeout=5).status_code == 200
        emu.stop()
        assert not emu.running
        with pytest.raises(requests.ConnectionError):
            s.get(emu.url + "/_emulator/health", timeout=5)
    with emu:
        assert requests.get(emu.url + "/_emulator/health", timeout=5).status_code == 200


def test_solution_parsing():
    assert Solution.parse("INV:inventory") == Solution("INV", "inventory")
    s = Solution.parse("QP:b2c_pricing:QP_:_OOTB:YYYY-MM-DD HH:MM:SS+00:00")
    assert (s.prefix, s.suffix, s.effective_timestamp_format) == ("QP_", "_OOTB", "YYYY-MM-DD HH:MM:SS+00:00")
    assert Solution("X", "inventory").effective_timestamp_format == "YYYY-MM-DD HH:MM:SS"
    with pytest.raises(ValueError, match="Unknown application"):
        Solution.parse("X:nope")
    with pytest.raises(ValueError, match="NAME:APPLICATION"):
        Solution.parse("X")
    with pytest.raises(ValueError, match="configured twice"):
        Emulator(solutions=["A:inventory", "A:b2c_pricing"])
