"""A canary Personal Access Token never leaks: run a DAG that succeeds, hits 401, hits 500s and raises
validation errors (with `airflow dags test`, as a user would), then search every task log, the
command output, every XCom, rendered template field and other metadata-DB row, the rejected-rows files
and the emulator's access log. TLS verification is on by default.

Whatever the token looks like (surrounding whitespace, characters that need escaping) and wherever a
hostile server echoes it (headers, bodies, ``failed`` reasons, redirects, broken framing), it never appears
-- raw, JSON-, repr- or URL-escaped, nor any long run of its characters -- in logs, exceptions (chained ones
included), the result (XCom), the rejected-rows file or ``test_connection()``'s message."""

from __future__ import annotations

import json
import os
import re
import socket
import sqlite3
import subprocess
import threading
import traceback
from collections.abc import Callable
from typing import Any
from urllib.parse import quote, quote_plus

import pytest

from peak_provider.connection import PeakSettings
from peak_provider.exceptions import PeakConfigError, PeakError, PeakSinkError
from peak_provider.hooks.peak import PeakHook
from peak_provider.rejected import RejectedRowsSink
from peak_provider.result import IngestResult
from tests.airflow_services import AIRFLOW, REPO
from tests.hooks.test_peak import products
from tests.raw_http import RawRequest, RawServer, response

CANARY = "canary-PAT-5f0c1d2e3a4b5c6d7e8f90123456789abcdef"


def run_dag(env: dict[str, str], day: int) -> str:
    done = subprocess.run(
        [AIRFLOW, "dags", "test", "peak_test_secrets", f"2025-03-{day:02d}"],  # one date each: runs keep their XComs
        env=env,
        capture_output=True,
        text=True,
    )
    return done.stdout + done.stderr


@pytest.mark.slow
def test_canary_token_never_leaks(peak_emulator_factory, tmp_path):
    home = tmp_path / "airflow"
    warehouse = tmp_path / "wh.db"
    with sqlite3.connect(warehouse) as db:
        db.execute("CREATE TABLE products (product_id TEXT, source_id TEXT, pack_size, updated_at TEXT)")
        db.executemany(
            "INSERT INTO products VALUES (?, ?, ?, ?)", [(f"P{i}", "S", 1, "2025-03-01 00:00:00") for i in range(50)]
        )
    access_log = tmp_path / "emulator-access.log"
    accepting = peak_emulator_factory(tokens=[CANARY], access_log=str(access_log))
    refusing = peak_emulator_factory(tokens=["another-token-entirely"], access_log=str(access_log))
    base_env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")},
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "tests" / "dag_files"),
        "PYTHONPATH": os.pathsep.join([str(REPO / "dags"), str(REPO / "tests" / "dag_files")]),
        "AIRFLOW_CONN_SECRETS_WAREHOUSE": json.dumps({"conn_type": "sqlite", "host": str(warehouse)}),
        "AIRFLOW_VAR_PEAK_REJECTS_DIR": str(tmp_path / "rejects"),
    }
    subprocess.run([AIRFLOW, "db", "migrate"], env=base_env, check=True, capture_output=True)

    def env_for(emulator):
        extra = emulator.connection_extra("INV_OOTB", max_retries=1, retry_backoff=0.01)
        conn = {"conn_type": "peak", "host": emulator.url, "password": CANARY, "extra": extra}
        return {**base_env, "AIRFLOW_CONN_PEAK_SECRETS": json.dumps(conn)}

    outputs = {"success": run_dag(env_for(accepting), 1)}
    assert len(accepting.rows("INV_PRODUCTS_OOTB")) == 50, outputs["success"][-3000:]
    outputs["401"] = run_dag(env_for(refusing), 2)
    assert "PeakAuthError" in outputs["401"] and "HTTP 401" in outputs["401"]
    accepting.set_faults(error_rate=1.0, error_statuses=[500])
    outputs["500"] = run_dag(env_for(accepting), 3)
    assert "HTTP 500" in outputs["500"]
    accepting.set_faults(error_rate=0.0)
    with sqlite3.connect(warehouse) as db:
        db.execute("UPDATE products SET pack_size = 'lots', source_id = NULL WHERE product_id IN ('P1', 'P2')")
    outputs["validation"] = run_dag(env_for(accepting), 4)
    assert "PeakRejectedRowsError" in outputs["validation"] and "2 rows rejected" in outputs["validation"]

    searched: dict[str, str] = {f"`airflow dags test` output ({k})": v for k, v in outputs.items()}
    for path in home.rglob("*"):
        if path.is_file() and path.suffix in (".log", ".json", ".txt", "") and "logs" in path.parts:
            searched[str(path)] = path.read_text(errors="replace")
    with sqlite3.connect(home / "airflow.db") as db:
        searched["metadata DB (xcom, rendered fields, task instances, audit log, …)"] = "\n".join(db.iterdump())
        xcoms = db.execute("SELECT value FROM xcom").fetchall()
        rendered = db.execute("SELECT rendered_fields FROM rendered_task_instance_fields").fetchall()
    assert xcoms and rendered  # there is something to search
    for path in (tmp_path / "rejects").glob("*.jsonl"):
        searched[str(path)] = path.read_text()
    searched["emulator access log"] = access_log.read_text()
    assert "POST /api/v2/ingest/object/INV_PRODUCTS_OOTB 401" in searched["emulator access log"]
    # `airflow dags test` runs tasks in-process: their logs are in its output (the scheduler-run tests
    # check the log files a real deployment writes, see tests/airflow_services.py)
    assert "Peak ingest: products -> INV_PRODUCTS_OOTB" in outputs["success"]

    leaks = [name for name, text in searched.items() if CANARY in text]
    assert not leaks, f"the canary token appears in: {leaks}"


def test_tls_verification_is_on_by_default():
    settings = PeakSettings.from_parts("c", "https://ingestion.peak.ai", None, {"solution_name": "S"})
    assert settings.verify is True


@pytest.mark.parametrize("verify", [True, False])
def test_tls_failure_is_reported_not_retried(verify, monkeypatch, tmp_path):
    """A self-signed HTTPS server: with verify on, the connection test and ingest fail with a TLS error."""
    import ssl
    from http.server import BaseHTTPRequestHandler, HTTPServer

    from tests.serving import serving
    from tests.tls import self_signed_cert

    cert, key = self_signed_cert(tmp_path)

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_GET(self):
            body = b'{"solutions": [{"solutionName": "INV_OOTB"}]}'
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = HTTPServer(("127.0.0.1", 0), Handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    with serving(server, "tls-server"):
        conn = {
            "conn_type": "peak",
            "host": f"https://localhost:{server.server_address[1]}",
            "password": CANARY,
            "extra": {"solution_name": "INV_OOTB", "verify": verify},
        }
        monkeypatch.setenv("AIRFLOW_CONN_PEAK_TLS", json.dumps(conn))
        from peak_provider.hooks.peak import PeakHook

        ok, reason = PeakHook("peak_tls").test_connection()
        if verify:
            assert not ok and "TLS error; not retried" in reason and CANARY not in reason
        else:
            assert ok, reason


# --- a hostile server echoing the token -----------------------------------------------------------------

#: A canary with the characters that need escaping in JSON, a repr and a URL, between runs of 8 letters and
#: digits: any escaped form a scrubber misses leaves at least one such run in the text.
ESCAPING_CANARY = "Q7zXcnry\"Kd4mW2pa\\Rt8vB3nh+Ys5uL9qe/Fj2kP6xw%Hg7cN4tz'Mb3rV8sd=Ue6aT1jo"
RUNS = re.findall(r"[A-Za-z0-9]{8,}", ESCAPING_CANARY)
EXTRAS = {
    "max_retries": 1,
    "retry_backoff": 0.01,
    "retry_backoff_max": 0.02,
    "requests_per_second": 1000,
    "prefix": "INV_",
    "suffix": "_OOTB",
}


def secret_forms(token: str) -> dict[str, str]:
    """The forms a server (or a library's message) gives a token it echoes."""
    as_json = json.dumps(token)[1:-1]
    return {
        "raw": token,
        "JSON-escaped": as_json,
        "JSON-escaped with \\/": as_json.replace("/", "\\/"),
        "repr-escaped": repr(token)[1:-1],
        "URL-quoted": quote(token, safe=""),
        "URL-quoted (path)": quote(token),
        "URL-quoted (form)": quote_plus(token),
    }


def assert_never_shown(searched: dict[str, str], token: str = ESCAPING_CANARY) -> None:
    leaks = [
        f"{form} form in {where}"
        for where, text in searched.items()
        for form, shown in secret_forms(token).items()
        if shown in text
    ]
    leaks += [
        f"{run!r} (a run of the token) in {where}" for where, text in searched.items() for run in RUNS if run in text
    ]
    assert not leaks, "the canary token leaks: " + "; ".join(leaks)


def _exception_text(exc: BaseException) -> str:
    """Everything an exception shows: its traceback text with chained causes and contexts, reprs, args."""
    parts = ["".join(traceback.format_exception(exc))]
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        parts += [str(current), repr(current), repr(current.args)]
        current = current.__cause__ or current.__context__
    return "\n".join(parts)


def _echo_headers(token: str) -> dict[str, str]:
    return {
        "X-Echo-Authorization": token,
        "WWW-Authenticate": f'Basic realm="{quote(token, safe="")}"',
        "Set-Cookie": f"session={quote_plus(token)}; Path=/",
        "Content-Type": "text/html",
    }


def _json(value: str) -> str:
    return json.dumps(value)


Echo = Callable[[str, str], bytes]  # (token as received, the form to echo) -> the whole answer

# scenario -> (operation, the server's answer); the 413 body is not quoted anywhere today, the others are
ECHOES: dict[str, tuple[str, Echo]] = {
    "failed reasons, fields and codes": (
        "UPSERT",
        lambda token, form: response(
            200,
            (
                '{"status": "PARTIAL_SUCCESS", "failed": ['
                f'{{"index": 0, "field": {_json(form)}, "code": {_json(form)}, "message": {_json("bad " + form)}}},'
                f'{{"index": 2, "errors": [{{"category": {_json(form)}, "column": "pack_size", '
                f'"errorMessage": {_json(form + " is wrong")}}}]}}]}}'
            ).encode(),
            {**_echo_headers(token), "Content-Type": "application/json"},
        ),
    ),
    "500 body and headers (UPSERT, retried)": (
        "UPSERT",
        lambda token, form: response(
            500, f"<html><p>Internal error, token {form}</p></html>".encode(), _echo_headers(token)
        ),
    ),
    "500 body (APPEND: rows in doubt, in the sink)": (
        "APPEND",
        lambda token, form: response(500, f"upstream said: {form}".encode(), _echo_headers(token)),
    ),
    "401 body": ("UPSERT", lambda token, form: response(401, f'{{"error": "token {form} refused"}}'.encode())),
    "302 to a sign-in page": (
        "UPSERT",
        lambda token, form: response(
            302,
            f"Redirecting to /login?token={form}".encode(),
            {**_echo_headers(token), "Location": f"https://sso.example/login?token={form}&next=%2F"},
        ),
    ),
    "200 HTML page": (
        "UPSERT",
        lambda token, form: response(200, f"<html>Maintenance for {form}</html>".encode(), _echo_headers(token)),
    ),
    "200 with an unknown status word": (
        "UPSERT",
        lambda token, form: response(200, f'{{"status": {_json(form)}}}'.encode(), _echo_headers(token)),
    ),
    "413 body": ("UPSERT", lambda token, form: response(413, f"too large for {form}".encode())),
    "broken chunk-size line": (
        "UPSERT",
        lambda token, form: b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + form.encode() + b"\r\n{}\r\n",
    ),
    "garbage status line": ("UPSERT", lambda token, form: form.encode() + b" garbage\r\n\r\n"),
}
TEST_CONNECTION_ECHOES = [
    "500 body and headers (UPSERT, retried)",
    "401 body",
    "302 to a sign-in page",
    "broken chunk-size line",
    "garbage status line",
]


def _echoing(echo: Echo, form: str) -> Callable[[socket.socket, RawRequest, threading.Event], None]:
    """An answer echoing the Authorization header the request carried, in the form ``form``."""

    def answer(sock: socket.socket, request: RawRequest, stop: threading.Event) -> None:
        token = request.headers["authorization"]
        sock.sendall(echo(token, secret_forms(token)[form]))

    return answer


def _hook(peak_connection: Any, url: str, password: str = ESCAPING_CANARY, **extra: Any) -> PeakHook:
    return PeakHook(peak_connection("peak_secret", host=url, password=password, **{**EXTRAS, **extra}))


@pytest.fixture
def searched_logs(caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]) -> Callable[[], dict[str, str]]:
    caplog.set_level("DEBUG")

    def read() -> dict[str, str]:
        out, err = capfd.readouterr()
        return {"log records": caplog.text, "stdout": out, "stderr": err}

    return read


@pytest.mark.parametrize("form", list(secret_forms(ESCAPING_CANARY)))
@pytest.mark.parametrize("scenario", list(ECHOES))
def test_token_echoed_by_the_server_is_never_shown(scenario, form, peak_connection, searched_logs, tmp_path):
    op, echo = ECHOES[scenario]
    sink_path = tmp_path / "rejected.jsonl"
    sink = RejectedRowsSink(str(sink_path), "products")
    error: BaseException | None = None
    with RawServer(_echoing(echo, form)) as server:
        hook = _hook(peak_connection, server.url)
        try:
            result: IngestResult | None = hook.ingest("products", products(3), operation=op, on_rejected=sink.write)
        except PeakError as exc:
            error, result = exc, exc.result
        finally:
            sink.close()
    assert server.requests and {r.headers["authorization"] for r in server.requests} == {ESCAPING_CANARY}
    assert result is not None
    searched = {
        "result (XCom)": json.dumps(result.to_dict()) + str(result),
        "rejected-rows file": sink_path.read_text() if sink_path.exists() else "",
        **searched_logs(),
    }
    if error is not None:
        searched["exception"] = _exception_text(error)
    assert_never_shown(searched)
    # the echo did reach what is shown, scrubbed: a test that could not see a leak would prove nothing
    assert error is not None or result.rows_rejected == 2, result
    if scenario != "413 body":
        assert "***" in searched.get("exception", "") + searched["result (XCom)"], searched


@pytest.mark.parametrize("form", list(secret_forms(ESCAPING_CANARY)))
@pytest.mark.parametrize("scenario", [*TEST_CONNECTION_ECHOES, "solutions list naming the token"])
def test_token_echoed_to_test_connection_is_never_shown(scenario, form, peak_connection, searched_logs):
    def solutions(token: str, shown: str) -> bytes:
        body = {"solutions": [{"solutionName": "OTHER"}, {"solutionName": shown}]}
        return response(200, json.dumps(body).encode(), {"Content-Type": "application/json"})

    echo = solutions if scenario == "solutions list naming the token" else ECHOES[scenario][1]
    with RawServer(_echoing(echo, form)) as server:
        ok, message = _hook(peak_connection, server.url).test_connection()
    assert not ok and len(server.requests) == 1
    assert_never_shown({"test_connection message": message, **searched_logs()})


@pytest.mark.parametrize("before_cut", [4, 9, 30, len(ESCAPING_CANARY) - 1])
@pytest.mark.parametrize(
    ("scenario", "limit"),
    [
        ("500 body", 300),
        ("failed reason", 300),  # the reply's excerpt
        ("failed reason", 300 - len("products: rejected by the API: ")),  # the Rejection's bound on its reason
        ("200 not JSON", 120),
        ("unknown status word", 60),
    ],
)
def test_token_across_the_excerpt_cut_leaves_no_prefix(scenario, limit, before_cut, peak_connection, tmp_path):
    """Scrub first, then cut: a token straddling a cut must not leave its first characters behind.

    The text is shown up to the token's place (the padding before it is there), and no prefix of it is.
    """

    def answer(sock: socket.socket, request: RawRequest, stop: threading.Event) -> None:
        token = request.headers["authorization"]
        pad = "x" * (limit - before_cut)
        bodies = {
            "500 body": (500, pad + token + " and more"),
            "failed reason": (200, json.dumps({"failed": [{"index": 1, "message": pad + token + " more"}]})),
            "200 not JSON": (200, "<" + pad[1:] + token + " and more"),
            "unknown status word": (200, json.dumps({"status": pad + token + "more"})),
        }
        status, text = bodies[scenario]
        sock.sendall(response(status, text.encode()))

    sink_path = tmp_path / "rejected.jsonl"
    sink = RejectedRowsSink(str(sink_path), "products")
    shown: list[str] = []
    with RawServer(answer) as server:
        hook = _hook(peak_connection, server.url, max_retries=0)
        result: IngestResult | None
        try:
            result = hook.upsert("products", products(3), on_rejected=sink.write)
        except PeakError as exc:
            shown.append(_exception_text(exc))
            result = exc.result
        finally:
            sink.close()
    assert result is not None and (shown or result.rows_rejected == 1), result
    shown += [json.dumps(result.to_dict()), sink_path.read_text() if sink_path.exists() else ""]
    text = "\n".join(shown)
    assert "x" * (limit - before_cut - 40) in text, text  # what is shown reaches the token's place
    assert ESCAPING_CANARY[:4] not in text, text


# --- what the token itself looks like ----------------------------------------------------------------------


def _solutions(sock: socket.socket, request: RawRequest, stop: threading.Event) -> None:
    body = json.dumps({"solutions": [{"solutionName": "INV_OOTB"}], "failed": []}).encode()
    sock.sendall(response(200, body, {"Content-Type": "application/json"}))


@pytest.mark.parametrize(
    "pasted",
    [ESCAPING_CANARY + "\n", " " + ESCAPING_CANARY, "\t" + ESCAPING_CANARY + " \r\n", CANARY + "\n"],
    ids=["trailing newline", "leading space", "tab and CRLF", "plain token, trailing newline"],
)
def test_token_pasted_with_surrounding_whitespace_works(pasted, peak_connection, searched_logs):
    """Surrounding whitespace is stripped: the token (quotes, backslash, +, /, % and all) is sent verbatim."""
    with RawServer(_solutions) as server:
        hook = _hook(peak_connection, server.url, password=pasted)
        ok, message = hook.test_connection()
        result = hook.upsert("products", products(3))
    assert ok, message
    assert result.rows_accepted == 3
    assert [r.headers["authorization"] for r in server.requests] == [pasted.strip()] * 2
    assert_never_shown({"test_connection message": message, "result": str(result.to_dict()), **searched_logs()})


@pytest.mark.parametrize(
    "token",
    [
        ESCAPING_CANARY[:20] + "\n" + ESCAPING_CANARY[20:],
        ESCAPING_CANARY[:20] + "\r\n" + ESCAPING_CANARY[20:],
        ESCAPING_CANARY[:20] + "\x00" + ESCAPING_CANARY[20:],
        ESCAPING_CANARY[:20] + "\x1b[0m" + ESCAPING_CANARY[20:],
        ESCAPING_CANARY[:20] + "\x7f" + ESCAPING_CANARY[20:],
        ESCAPING_CANARY[:20] + "\t" + ESCAPING_CANARY[20:],
        ESCAPING_CANARY[:20] + " " + ESCAPING_CANARY[20:],
        ESCAPING_CANARY[:20] + "é" + ESCAPING_CANARY[20:],
        ESCAPING_CANARY[:20] + "\u200b" + ESCAPING_CANARY[20:],
    ],
    ids=["newline", "CRLF", "NUL", "escape sequence", "DEL", "tab", "space", "non-ASCII", "zero-width space"],
)
def test_token_with_inner_control_or_non_ascii_is_refused_without_showing_it(token, peak_connection, searched_logs):
    """Refused when the hook is built, naming the connection and the problem, never the value."""
    with RawServer(_solutions) as server, pytest.raises(PeakConfigError) as refused:
        _hook(peak_connection, server.url, password=token)
    assert not server.requests
    message = str(refused.value)
    assert "'peak_secret'" in message and "Personal Access Token" in message, message
    assert_never_shown({"exception": _exception_text(refused.value), **searched_logs()})


@pytest.mark.parametrize("form", list(secret_forms(ESCAPING_CANARY)))
def test_a_header_line_echoing_the_token_is_never_shown_by_urllib3(form, peak_connection, searched_logs):
    """urllib3 logs a header line it cannot parse (with a traceback quoting it) at WARNING, outside our own
    messages: a server can make that line the token. The load itself succeeds."""
    answer = b'HTTP/1.1 200 OK\r\nContent-Length: 14\r\n%s\r\n\r\n{"failed": []}'

    def echo(token: str, shown: str) -> bytes:
        return answer % shown.encode()

    with RawServer(_echoing(echo, form)) as server:
        hook = _hook(peak_connection, server.url)
        result = hook.ingest("products", products(3), operation="UPSERT")
    searched = searched_logs()
    assert result.rows_accepted == 3
    assert "Failed to parse headers" in searched["log records"] + searched["stderr"] + searched["stdout"]
    assert_never_shown(searched)


def test_a_sink_error_quoting_the_token_is_never_shown(peak_connection, searched_logs):
    """A rejected-rows sink whose error quotes the token (a path or URL built from it, say): the load's
    PeakSinkError quotes it scrubbed and does not chain it."""

    def sink(rejection: Any) -> None:
        raise OSError(f"cannot write s3://bucket/{ESCAPING_CANARY}/rejects.jsonl ({json.dumps(ESCAPING_CANARY)})")

    answer = response(
        200, json.dumps({"status": "PARTIAL_SUCCESS", "failed": [{"index": 0, "message": "bad"}]}).encode()
    )
    with RawServer(lambda sock, request, stop: sock.sendall(answer)) as server:
        hook = _hook(peak_connection, server.url)
        with pytest.raises(PeakSinkError) as failure:
            hook.ingest("products", products(3), operation="UPSERT", on_rejected=sink)
    searched = {"exception": _exception_text(failure.value), **searched_logs()}
    assert "***" in searched["exception"]
    assert_never_shown(searched)
