"""Issue #12, "anything 2xx counts every row as accepted": the response contract against tiny hostile servers.

A redirect is never followed (no row leaves for the Location, which the error names), and an answer that is
not the API's (HTML, invalid JSON, a JSON list, impossible ``failed`` indexes, 204) confirms nothing: the
batch's rows are in doubt. UPSERT retries such an answer (it is idempotent), APPEND does not.
"""

from __future__ import annotations

import json
from collections.abc import Mapping

import pytest

from peak_provider.exceptions import PeakHTTPError
from peak_provider.hooks.peak import PeakHook
from peak_provider.result import IngestResult, Rejection
from peak_provider.retries import Cause
from tests.hooks.test_peak import FAST_RETRIES, products
from tests.hostile import Answer, Handler, HostileServer, html_answer, json_answer

ROWS = 10  # one batch
MAX_RETRIES = 2
INGEST = "/api/v2/ingest/object/PRODUCTS"
LOGIN_PAGE = "<!doctype html><html><head><title>Sign in</title></head><body>" + "<p>Single sign-on</p>" * 300


@pytest.fixture
def load(peak_connection):
    """``load(server, operation)``: ingest ROWS products through ``server``; returns the error (or ``None``),
    what went to ``on_rejected`` and the result."""

    def run(server: HostileServer, operation: str) -> tuple[PeakHTTPError | None, list[Rejection], IngestResult]:
        hook = PeakHook(peak_connection(host=server.url, max_retries=MAX_RETRIES, **FAST_RETRIES))
        rejections: list[Rejection] = []
        try:
            result = hook.ingest("products", products(ROWS), operation=operation, on_rejected=rejections.append)
        except PeakHTTPError as exc:
            assert exc.result is not None
            return exc, rejections, exc.result
        finally:
            hook.close()
        return None, rejections, result

    return run


def ingest_then(answer: Answer) -> Handler:
    """A server answering every ingest POST with ``answer``, and anything else with a sign-in page."""

    def handler(method: str, path: str, headers: Mapping[str, str], body: bytes) -> Answer:
        return answer if method == "POST" and path == INGEST else html_answer(LOGIN_PAGE)

    return handler


def assert_all_in_doubt(result: IngestResult, rejections: list[Rejection]) -> None:
    assert (result.rows_read, result.rows_accepted, result.rows_in_doubt) == (ROWS, 0, ROWS)
    assert result.reconciled and result.rows_sent == 0
    assert [r.outcome for r in rejections] == ["in_doubt"] * ROWS
    assert [r.key["product_id"] for r in rejections if r.key] == [f"P{i:07d}" for i in range(ROWS)]


@pytest.mark.parametrize("operation", ["APPEND", "UPSERT"])
@pytest.mark.parametrize(
    ("status", "location"),
    [
        (301, "target"),
        (302, "target"),
        (302, "/login"),  # an SSO gateway: 302 to its own sign-in page, which answers 200 HTML
        (303, "target"),
        (307, "target"),
        (308, "target"),
    ],
)
def test_redirect_is_never_followed_and_confirms_nothing(hostile, load, status, location, operation):
    target = hostile(ingest_then(json_answer({"failed": []})))  # would "accept" whatever reached it
    where = target.url + "/login" if location == "target" else location
    server = hostile(ingest_then((status, {"Location": where}, b"")))

    error, rejections, result = load(server, operation)

    assert error is not None and error.status == status and error.cause is Cause.REDIRECT
    host = target.host if location == "target" else server.host
    assert f"HTTP {status}" in str(error) and host in str(error)
    assert [(r.method, r.path) for r in server.requests] == [("POST", INGEST)]  # not retried, not followed
    assert target.requests == []  # no row left for the Location's host
    assert_all_in_doubt(result, rejections)


NOT_UNDERSTOOD = {
    "html_maintenance_page": (html_answer("<html><body><h1>Scheduled maintenance</h1>" + "x" * 5000), "not JSON"),
    "invalid_json": ((200, {"Content-Type": "application/json"}, b'{"failed": [{"index": 1'), "not JSON"),
    "json_list": (json_answer([]), "JSON list, not an object"),
    "index_one_based": (json_answer({"failed": [{"index": ROWS, "message": "bad"}]}), f"index {ROWS} is outside"),
    "index_out_of_range": (json_answer({"failed": [{"index": 999, "message": "bad"}]}), "index 999 is outside"),
    "index_negative": (json_answer({"failed": [{"index": -1, "message": "bad"}]}), "index -1 is outside"),
    "partial_without_failed": (json_answer({"status": "PARTIAL_SUCCESS"}), "without any 'failed' entry"),
    "no_content_204": ((204, {}, b""), "HTTP 204"),
    "received_fewer": (
        json_answer({"status": "SUCCESS", "received": ROWS // 2, "accepted": ROWS // 2, "failed": []}),
        f"'received' count is {ROWS // 2}, but the batch had {ROWS} rows",
    ),
    "accepted_none": (
        json_answer({"status": "SUCCESS", "received": ROWS, "accepted": 0, "failed": []}),
        "'accepted' count is 0",
    ),
    "accepted_not_a_count": (json_answer({"accepted": "all"}), "'accepted' is \"all\", not a count of rows"),
    "error_object": (
        json_answer({"error": {"code": "DI_E_00001", "message": "solution not rolled out"}}),
        "carries 'error' without a failure status",
    ),
    "success_false": (json_answer({"success": False, "message": "nothing stored"}), "says success false"),
    "repeated_failed_key": (
        (200, {"Content-Type": "application/json"}, b'{"failed":[{"index":0,"message":"bad"}],"failed":[]}'),
        "repeats the key 'failed'",
    ),
    "repeated_status_key": (
        (200, {"Content-Type": "application/json"}, b'{"status":"FAILED","status":"SUCCESS"}'),
        "repeats the key 'status'",
    ),
    "index_keys_disagree": (
        json_answer({"failed": [{"index": 0, "rowIndex": 3, "message": "bad"}]}),
        "'index' and 'rowIndex' disagree: 0 and 3",
    ),
}


@pytest.mark.parametrize(("operation", "requests"), [("APPEND", 1), ("UPSERT", 1 + MAX_RETRIES)])
@pytest.mark.parametrize("case", NOT_UNDERSTOOD)
def test_answer_not_understood_leaves_rows_in_doubt(hostile, load, case, operation, requests):
    answer, words = NOT_UNDERSTOOD[case]
    server = hostile(ingest_then(answer))

    error, rejections, result = load(server, operation)

    assert error is not None and error.cause is Cause.UNRECOGNISED
    assert words in str(error) and len(str(error)) < 1000  # a short excerpt, never the whole page
    assert len(server.requests) == requests  # UPSERT retries what may not have landed; APPEND never
    assert_all_in_doubt(result, rejections)


@pytest.mark.parametrize("operation", ["APPEND", "UPSERT"])
def test_status_failed_rejects_every_row(hostile, load, operation):
    server = hostile(ingest_then(json_answer({"status": "FAILED"})))

    error, rejections, result = load(server, operation)

    assert error is None and len(server.requests) == 1  # an answer of the API: final, not retried
    assert (result.rows_accepted, result.rows_rejected, result.rows_in_doubt) == (0, ROWS, 0)
    assert {r.outcome for r in rejections} == {"rejected"} and "FAILED" in rejections[0].reason


@pytest.mark.parametrize(
    "answer",
    [
        json_answer({}, status=200),
        json_answer({"status": "SUCCESS", "failed": None}, status=200),
        json_answer({"status": "ACCEPTED", "failed": []}, status=202),
        json_answer({"status": "SUCCESS", "received": ROWS, "accepted": ROWS, "failed": []}),  # the emulator's
    ],
    ids=["empty_object", "failed_null", "accepted_202", "counts_agree"],
)
def test_an_api_answer_without_failures_confirms_every_row(hostile, load, answer):
    server = hostile(ingest_then(answer))
    error, rejections, result = load(server, "APPEND")
    assert error is None and rejections == []
    assert (result.rows_sent, result.rows_accepted, result.rows_in_doubt) == (ROWS, ROWS, 0)


def test_failed_entries_reject_exactly_their_rows(hostile, load):
    failed = [
        {"index": 0, "errors": [{"field": "pack_size", "code": "DI_E_1", "message": "must be positive"}]},
        {"index": ROWS - 1, "message": "duplicate"},
    ]
    server = hostile(ingest_then(json_answer({"status": "PARTIAL_SUCCESS", "failed": failed})))

    error, rejections, result = load(server, "APPEND")

    assert error is None
    assert (result.rows_accepted, result.rows_rejected, result.rows_in_doubt) == (ROWS - 2, 2, 0)
    first, last = rejections
    assert (first.key, first.field, first.code) == (
        {"product_id": "P0000000", "updated_at": "2025-01-15 08:00:00"},
        "pack_size",
        "DI_E_1",
    )
    assert "must be positive" in first.reason and last.key["product_id"] == f"P{ROWS - 1:07d}"


def echo_rows(pick: list[int], change: dict | None = None, index_offset: int | None = None) -> Handler:
    """A server whose ``failed`` entries carry the rejected row (as received, updated with ``change``) and, with
    ``index_offset``, an index that far from the row's."""

    def handler(method: str, path: str, headers: Mapping[str, str], body: bytes) -> Answer:
        if method != "POST" or path != INGEST:
            return html_answer(LOGIN_PAGE)
        rows = json.loads(body)["data"]
        failed = [{"row": {**rows[i], **(change or {})}, "errors": [{"message": "refused"}]} for i in pick]
        if index_offset is not None:
            failed = [{**entry, "index": i + index_offset} for i, entry in zip(pick, failed, strict=True)]
        return json_answer({"status": "PARTIAL_SUCCESS", "failed": failed})

    return handler


def test_failed_entries_that_echo_their_row_reject_the_row_with_its_key(hostile, load):
    server = hostile(echo_rows([ROWS - 1, 3], change={"pack_size": "9"}))  # a key match, whatever else differs

    error, rejections, result = load(server, "APPEND")

    assert error is None and len(server.requests) == 1
    assert (result.rows_accepted, result.rows_rejected, result.rows_in_doubt) == (ROWS - 2, 2, 0)
    assert [r.key["product_id"] for r in rejections] == ["P0000003", f"P{ROWS - 1:07d}"]
    assert all(r.reason.endswith("refused") and r.outcome == "rejected" for r in rejections)


@pytest.mark.parametrize(("operation", "requests"), [("APPEND", 1), ("UPSERT", 1 + MAX_RETRIES)])
@pytest.mark.parametrize(
    ("server_kind", "words"),
    [
        ({"change": {"product_id": "P9999999"}}, "names no row"),
        ({"index_offset": 1}, "index 1 and its row (row 0) disagree"),  # a 1-based index, with the row
    ],
    ids=["key-not-sent", "index-and-row-disagree"],
)
def test_an_echoed_row_that_names_no_row_or_another_row_confirms_nothing(
    hostile, load, server_kind, words, operation, requests
):
    server = hostile(echo_rows([0], **server_kind))

    error, rejections, result = load(server, operation)

    assert error is not None and error.cause is Cause.UNRECOGNISED and words in str(error)
    assert len(server.requests) == requests
    assert_all_in_doubt(result, rejections)


@pytest.mark.parametrize(("operation", "requests"), [("APPEND", 1), ("UPSERT", 1 + MAX_RETRIES)])
def test_a_200_whose_accepted_count_disagrees_leaves_the_rows_in_doubt(hostile, load, operation, requests):
    """The answer names one rejected row but counts only half the batch accepted: which half? None is confirmed."""
    answer = {
        "status": "PARTIAL_SUCCESS",
        "received": ROWS,
        "accepted": ROWS // 2,
        "failed": [{"index": 3, "errors": [{"code": "DI_E_1", "message": "bad pack_size"}]}],
    }
    server = hostile(ingest_then(json_answer(answer)))

    error, rejections, result = load(server, operation)

    assert error is not None and error.cause is Cause.UNRECOGNISED and len(server.requests) == requests
    assert f"'accepted' count is {ROWS // 2}, but 1 of the batch's {ROWS} rows are rejected" in str(error)
    assert_all_in_doubt(result, rejections)  # not ROWS - 1 accepted and 1 rejected, nor half of each
    assert result.rows_rejected == 0
    assert result.rows_read == result.rows_accepted + result.rows_rejected + result.rows_in_doubt + result.rows_unsent


def test_an_answer_whose_counts_agree_with_its_failed_entries_rejects_exactly_them(hostile, load):
    failed = [{"index": 2, "message": "bad"}, {"index": 2, "message": "worse"}, {"index": 7, "message": "bad"}]
    answer = {"status": "PARTIAL_SUCCESS", "received": ROWS, "accepted": ROWS - 2, "failed": failed}
    server = hostile(ingest_then(json_answer(answer)))

    error, rejections, result = load(server, "APPEND")

    assert error is None and len(server.requests) == 1
    assert (result.rows_accepted, result.rows_rejected, result.rows_in_doubt) == (ROWS - 2, 2, 0)
    assert [r.key["product_id"] for r in rejections] == ["P0000002", "P0000007"]
