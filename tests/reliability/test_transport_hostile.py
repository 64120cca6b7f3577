"""A hostile network, on loopback, against our own raw-socket servers: every failure of a call is a typed
``PeakHTTPError`` with its classified cause, retried by the one retry table (counted at the server), bounded
in time by ``request_deadline``, and worded with the operation, the cause and the underlying reason."""

from __future__ import annotations

import os
import socket
import ssl
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from peak_provider.exceptions import PeakError, PeakHTTPError
from peak_provider.hooks.peak import PeakHook
from peak_provider.result import IngestResult, Rejection
from peak_provider.retries import Applied, Cause
from tests.hooks.test_peak import products
from tests.raw_http import RawRequest, RawServer, closed_port, response
from tests.tls import self_signed_cert

RETRIES = 2
FAST = {
    "max_retries": RETRIES,
    "retry_backoff": 0.01,
    "retry_backoff_max": 0.02,
    "requests_per_second": 1000,
    "prefix": "INV_",
    "suffix": "_OOTB",
}
WHAT = "ingest {op} INV_PRODUCTS_OOTB"


@pytest.fixture
def hook_at(peak_connection) -> Callable[..., PeakHook]:
    def make(url: str, **extra: Any) -> PeakHook:
        return PeakHook(peak_connection("peak_hostile", host=url, **{**FAST, **extra}))

    return make


def _write(data: bytes) -> Callable[[socket.socket, RawRequest, threading.Event], None]:
    return lambda sock, request, stop: sock.sendall(data)


def _drop(sock: socket.socket, request: RawRequest, stop: threading.Event) -> None:
    """Read the request, then close the connection without a word."""


ACCEPTED = b'{"failed": []}'
TWO_LENGTHS = b"HTTP/1.1 200 OK\r\nContent-Length: 14, 15\r\nConnection: close\r\n\r\n" + ACCEPTED
EARLY_HINTS = b"HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n"

# name -> (answer, cause, status, the underlying reason that must survive into the message)
HOSTILE: dict[str, tuple[Any, Cause, int | None, str]] = {
    "Content-Length longer than the body": (
        _write(b'HTTP/1.1 200 OK\r\nContent-Length: 100\r\nConnection: close\r\n\r\n{"fail'),
        Cause.TRUNCATED,
        None,
        "IncompleteRead(6 bytes read, 94 more expected)",
    ),
    "broken chunked encoding": (
        _write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\nzz\r\n{}\r\n0\r\n\r\n"),
        Cause.TRUNCATED,
        None,
        "InvalidChunkLength",
    ),
    "corrupt gzip body": (
        _write(response(200, b"\x1f\x8b\x08\x00 this is not gzip at all", {"Content-Encoding": "gzip"})),
        Cause.TRUNCATED,
        None,
        "content-encoding: gzip, but failed to decode it",
    ),
    "connection dropped after reading the request": (
        _drop,
        Cause.DROPPED,
        None,
        "Remote end closed connection without response",
    ),
    "garbage status line": (_write(b"SMTP ready\r\n\r\n"), Cause.DROPPED, None, "BadStatusLine"),
    "200 with JSON nested too deep to parse": (
        _write(response(200, b"[" * 100_000)),
        Cause.UNRECOGNISED,
        200,
        "not JSON",
    ),
    # requests raises InvalidHeader for a header of the answer urllib3 refuses, as for a bad header of ours:
    # the request was sent, so it may have been applied
    "200 with two different Content-Lengths": (
        _write(TWO_LENGTHS),
        Cause.TRUNCATED,
        None,
        "InvalidHeader: Content-Length contained multiple unmatching values",
    ),
    # http.client skips only 100 Continue: a 103 comes back as the answer, the real one unread behind it
    "103 Early Hints before the answer": (
        _write(EARLY_HINTS + response(200, ACCEPTED)),
        Cause.TRUNCATED,
        103,
        "HTTP 103",
    ),
}


def _ingest(hook: PeakHook, op: str, rows: int = 3, **kwargs: Any) -> tuple[PeakHTTPError, IngestResult]:
    """The one typed error a load raises, and the counts it carries (every row read in one bucket)."""
    with pytest.raises(PeakError) as failure:
        hook.ingest("products", products(rows), operation=op, **kwargs)
    error = failure.value
    assert type(error) is PeakHTTPError, f"{type(error).__name__}: {error}"
    result = error.result
    assert result is not None and result.reconciled and result.rows_read == rows
    return error, result


@pytest.mark.parametrize("name", HOSTILE)
def test_hostile_answer_is_typed_and_retried_for_upsert(name, hook_at):
    answer, cause, status, reason = HOSTILE[name]
    with RawServer(answer) as server:
        error, result = _ingest(hook_at(server.url), "UPSERT")
    assert (error.cause, error.status, error.applied) == (cause, status, Applied.MAYBE)
    assert len(server.requests) == 1 + RETRIES  # idempotent: retried by the table
    message = str(error)
    assert WHAT.format(op="UPSERT") in message and cause.value in message and reason in message, message
    assert f"after {RETRIES} retries" in message
    # the batch may have landed: its rows are in doubt, not silently lost
    assert (result.rows_in_doubt, result.rows_accepted) == (3, 0)


@pytest.mark.parametrize("name", HOSTILE)
def test_hostile_answer_is_not_retried_for_append(name, hook_at):
    answer, cause, status, reason = HOSTILE[name]
    rejections: list[Rejection] = []
    with RawServer(answer) as server:
        error, result = _ingest(hook_at(server.url), "APPEND", on_rejected=rejections.append)
    assert (error.cause, error.status, error.applied) == (cause, status, Applied.MAYBE)
    assert len(server.requests) == 1  # it may have landed: never sent twice
    message = str(error)
    assert WHAT.format(op="APPEND") in message and cause.value in message and reason in message, message
    assert "not retried for APPEND" in message
    assert result.rows_in_doubt == 3 and [r.outcome for r in rejections] == ["in_doubt"] * 3
    assert all(cause.value in r.reason for r in rejections), rejections[0].reason


@pytest.mark.parametrize("op", ["UPSERT", "APPEND"])
def test_connection_refused_is_retried_and_keeps_its_reason(op, hook_at):
    """Nothing was sent, so even APPEND retries; "Connection refused" survives the retries."""
    error, result = _ingest(hook_at(f"http://127.0.0.1:{closed_port()}"), op)
    assert (error.cause, error.status, error.applied) == (Cause.REFUSED, None, Applied.NO)
    assert result.requests == 1 + RETRIES and result.retries == RETRIES
    message = str(error)
    assert WHAT.format(op=op) in message and Cause.REFUSED.value in message and "Connection refused" in message
    assert f"after {RETRIES} retries" in message
    assert result.rows_unsent == 3 and result.rows_in_doubt == 0


def _trickle_headers(sock: socket.socket, request: RawRequest, stop: threading.Event) -> None:
    for byte in b"HTTP/1.1 200 OK\r\nX-Padding: " + b"x" * 10_000:
        if stop.wait(0.8):
            return
        sock.sendall(bytes([byte]))


def _trickle_body(keep_alive: bool) -> Callable[[socket.socket, RawRequest, threading.Event], None]:
    def answer(sock: socket.socket, request: RawRequest, stop: threading.Event) -> None:
        close = b"" if keep_alive else b"Connection: close\r\n"
        sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 10000\r\n" + close + b"\r\n")
        while not stop.wait(0.8):
            sock.sendall(b" ")

    return answer


TRICKLES = {
    "status line and headers": _trickle_headers,
    "body (keep-alive)": _trickle_body(keep_alive=True),
    "body (Connection: close)": _trickle_body(keep_alive=False),
}


@pytest.mark.parametrize("name", TRICKLES)
@pytest.mark.slow  # cost: waits out a 3 s deadline
def test_trickling_server_is_cut_off_by_the_request_deadline(name, hook_at):
    """One byte every 0.8 s never trips ``timeout=1``; the total ``request_deadline`` (3 s) ends the request.

    The trickle would last 10,000 x 0.8 s; the call runs in a thread so that a missing deadline fails the test
    (after 30 s) instead of hanging it: the server's shutdown then ends the request.
    """
    outcome: list[BaseException | IngestResult] = []

    def load() -> None:
        try:
            outcome.append(hook.append("products", products(3)))
        except BaseException as exc:
            outcome.append(exc)

    with RawServer(TRICKLES[name]) as server:
        hook = hook_at(server.url, timeout=1, request_deadline=3)
        thread = threading.Thread(target=load, name="trickled-load")
        thread.start()
        thread.join(timeout=30)
        ended = not thread.is_alive()
    thread.join(timeout=30)
    assert ended, "the request outlived request_deadline (3 s) by 27 s"
    (error,) = outcome
    assert isinstance(error, PeakHTTPError), repr(error)
    assert (error.cause, error.applied) == (Cause.TIMEOUT, Applied.MAYBE), str(error)
    message = str(error)
    assert WHAT.format(op="APPEND") in message and "request_deadline of 3s passed" in message, message
    assert len(server.requests) == 1 and error.result is not None and error.result.rows_in_doubt == 3


def test_413_on_every_request_fails_once_after_a_few_splits(hook_at):
    """A proxy whose body limit is far below ours: 500 small rows, ~log2(500) requests, one clear error."""
    rejections: list[Rejection] = []
    with RawServer(_write(response(413, b"<html>Request Entity Too Large</html>"))) as server:
        hook = hook_at(server.url, max_rows_per_request=500)
        error, result = _ingest(hook, "UPSERT", rows=500, on_rejected=rejections.append)
    assert len(server.requests) <= 10, len(server.requests)  # 500, 250, 125, ... 1 -- not one per row
    assert [r.path for r in server.requests] == ["/api/v2/ingest/object/INV_PRODUCTS_OOTB"] * len(server.requests)
    message = str(error)
    assert message.count("lower max_request_bytes") == 1, message
    assert WHAT.format(op="UPSERT") in message, message
    assert (error.status, error.cause, error.applied) == (413, Cause.CLIENT_ERROR, Applied.NO)
    assert not rejections and result.rows_rejected == 0 and result.rows_unsent == 500


@pytest.fixture
def tls_server(tmp_path) -> Iterator[RawServer]:
    """HTTPS with a self-signed certificate: verification fails in the handshake."""
    cert, key = self_signed_cert(tmp_path)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    with RawServer(_write(response(200, b"{}")), tls=context) as server:
        yield server


@pytest.mark.parametrize("op", ["UPSERT", "APPEND"])
def test_tls_failure_is_not_retried_and_says_why(op, tls_server, hook_at):
    error, result = _ingest(hook_at(tls_server.url), op)
    assert (error.cause, error.status, error.applied) == (Cause.TLS, None, Applied.NO)
    assert tls_server.connections == 1 and not tls_server.requests
    message = str(error)
    assert WHAT.format(op=op) in message and "CERTIFICATE_VERIFY_FAILED" in message, message
    assert "not retried: a certificate" in message and "for APPEND" not in message, message
    assert result.rows_unsent == 3


def test_an_answer_header_refused_after_the_send_leaves_append_rows_in_doubt_not_resent(hook_at):
    """The server stored the batch, but its answer has two different Content-Lengths: the rows are in doubt,
    not unsent, so a load resumed from the checkpoint does not append them a second time."""
    progress: list[Any] = []

    def answer(sock: socket.socket, request: RawRequest, stop: threading.Event) -> None:
        sock.sendall(TWO_LENGTHS if request.number == 1 else response(200, ACCEPTED))

    with RawServer(answer) as server:
        error, result = _ingest(hook_at(server.url), "APPEND", on_progress=progress.append)
        assert (error.cause, error.status, error.applied) == (Cause.TRUNCATED, None, Applied.MAYBE), str(error)
        assert (result.rows_in_doubt, result.rows_unsent) == (3, 0)
        resumed = hook_at(server.url).append("products", products(3), resume_from=progress[-1])
    assert len(server.requests) == 1, "the batch the server stored was appended again"
    assert resumed.rows_accepted == 0


def test_an_invalid_header_of_ours_is_refused_before_anything_is_sent(hook_at):
    """requests refuses the request's own bad header while preparing it: nothing was sent, the rows are unsent."""
    with RawServer(_write(response(200, ACCEPTED))) as server:
        hook = hook_at(server.url)
        hook.get_conn().headers["X-Trace"] = "a\r\nX-Injected: 1"  # a header requests refuses to send
        error, result = _ingest(hook, "APPEND")
    assert (error.cause, error.status, error.applied) == (Cause.INVALID_REQUEST, None, Applied.NO), str(error)
    assert server.connections == 0 and not server.requests
    assert (result.rows_unsent, result.rows_in_doubt) == (3, 0)
    assert "InvalidHeader: Invalid leading whitespace, reserved character(s), or return" in str(error), str(error)


def _corrupt_tls_record(sock: socket.socket, request: RawRequest, stop: threading.Event) -> None:
    """With the request read, answer with a TLS record that cannot be decrypted (written under the TLS layer)."""
    with socket.socket(fileno=os.dup(sock.fileno())) as raw:
        raw.sendall(b"\x17\x03\x03\x00\x20" + b"\x01" * 32)  # application data: 32 bytes of garbage
    stop.wait(0.2)  # the client reads the record before the connection closes


@pytest.mark.parametrize("op", ["UPSERT", "APPEND"])
def test_a_tls_error_after_the_send_is_in_doubt(op, tmp_path, monkeypatch, hook_at):
    """The handshake succeeds (the certificate is trusted) and the request is sent; the answer's TLS record is
    corrupt. Unlike a failed handshake, the request may have been applied: in doubt, never resent by APPEND."""
    cert, key = self_signed_cert(tmp_path)
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", cert)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    with RawServer(_corrupt_tls_record, tls=context) as server:
        error, result = _ingest(hook_at(server.url), op)
    assert (error.cause, error.status, error.applied) == (Cause.DROPPED, None, Applied.MAYBE), str(error)
    message = str(error)
    assert WHAT.format(op=op) in message and "SSLError: [SSL: " in message and "RECORD_MAC" in message, message
    assert len(server.requests) == (1 if op == "APPEND" else 1 + RETRIES)
    assert (result.rows_in_doubt, result.rows_unsent) == (3, 0)


def test_an_interim_103_never_hands_its_answer_to_the_next_batch(hook_at):
    """103 Early Hints, then the real answer later on the same kept-alive connection. The 103 confirms
    nothing, and its connection must not be used again: otherwise the next request reads the answer of this
    one as its own, and a batch the server never stored is counted accepted."""
    answered_ok: set[str] = set()

    def answer(sock: socket.socket, request: RawRequest, stop: threading.Event) -> None:
        batch = "A" if b'"P0000000"' in request.body else "B"
        if request.number == 1:
            sock.sendall(EARLY_HINTS)
            stop.wait(0.2)  # the real answer comes later, as Early Hints allow
        elif batch == "A":
            stop.wait(0.1)
        if batch == "A":  # stored and confirmed
            answered_ok.add(batch)
            sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(ACCEPTED), ACCEPTED))
        else:  # never stored
            sock.sendall(b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\n\r\n")

    outcome: IngestResult | PeakHTTPError
    with RawServer(answer, keep_alive=True) as server:
        hook = hook_at(server.url, max_rows_per_request=10, max_in_flight=1)
        try:
            outcome = hook.upsert("products", products(20))
        except PeakHTTPError as exc:
            outcome = exc
    result = outcome if isinstance(outcome, IngestResult) else outcome.result
    assert result is not None and result.reconciled
    assert result.rows_accepted == 10 * len(answered_ok) == 10, "a batch was counted accepted on another's answer"
    assert isinstance(outcome, PeakHTTPError), "batch B was never stored, yet the load succeeded"
    assert (outcome.cause, outcome.applied, result.rows_in_doubt) == (Cause.SERVER_ERROR, Applied.MAYBE, 10)
    batches = ["A" if b'"P0000000"' in r.body else "B" for r in server.requests]
    assert batches == ["A", "A"] + ["B"] * (1 + RETRIES)  # the 103 confirmed nothing: UPSERT retried it
    assert server.connections == 2  # the 103's connection was closed; the others kept one alive


@pytest.mark.parametrize(
    ("name", "cause", "reason"),
    [
        ("connection dropped after reading the request", Cause.DROPPED, "Remote end closed connection"),
        ("Content-Length longer than the body", Cause.TRUNCATED, "IncompleteRead"),
        ("corrupt gzip body", Cause.TRUNCATED, "failed to decode"),
        ("garbage status line", Cause.DROPPED, "BadStatusLine"),
    ],
)
def test_test_connection_uses_the_transports_classification(name, cause, reason, hook_at):
    with RawServer(HOSTILE[name][0]) as server:
        ok, message = hook_at(server.url).test_connection()
    assert not ok
    assert "GET /api/v2/schema/solutions" in message and cause.value in message and reason in message, message
    assert len(server.requests) == 1  # the connection test is not retried


def test_test_connection_refused_and_tls(hook_at, tls_server):
    ok, message = hook_at(f"http://127.0.0.1:{closed_port()}").test_connection()
    assert not ok and Cause.REFUSED.value in message and "Connection refused" in message, message
    ok, message = hook_at(tls_server.url).test_connection()
    assert not ok and Cause.TLS.value in message and "CERTIFICATE_VERIFY_FAILED" in message, message


@pytest.mark.slow  # cost: waits out a 2 s deadline
def test_test_connection_is_bounded_by_the_request_deadline(hook_at):
    with RawServer(_trickle_headers) as server:
        ok, message = hook_at(server.url, timeout=1, request_deadline=2).test_connection()
    assert not ok and Cause.TIMEOUT.value in message and "request_deadline of 2s passed" in message, message


@pytest.mark.parametrize(
    "answer",
    [
        response(413, b"too large"),
        response(200, b"[" * 100_000),
        response(200, b"[1, 2]"),
        response(200, b'{"solutions": 5}'),
        response(200, b'{"solutions": [{"solutionName": {"a": 1}}]}'),
        response(200, b'{"solutions": []}'),
        response(200, b'{"solutions": ["INV_OOTB"]}'),
    ],
    ids=[
        "413",
        "deep JSON",
        "JSON array",
        "solutions not a list",
        "solution name not a string",
        "no solution",
        "names, not objects",
    ],
)
def test_test_connection_never_raises_on_a_hostile_answer(answer, hook_at):
    """The UI's *Test* button shows ``(ok, message)``; an exception would show a stack trace instead."""
    with RawServer(_write(answer)) as server:
        ok, message = hook_at(server.url).test_connection()
    assert not ok and message, message
