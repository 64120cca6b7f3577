"""The ingest answer contract (``read_ingest_reply``): which answers confirm a batch, and which rows they reject."""

from __future__ import annotations

import json
from typing import Any

import pytest

from peak_provider.reply import EXCERPT, Failure, NotUnderstood, index_by_key, read_ingest_reply

TOKEN = "pat-canary-0123456789abcdef0123456789abcdef"


def scrub(text: str) -> str:
    return text.replace(TOKEN, "***")


def by_product_id(row: dict[str, Any], index: Any = None) -> int | None:
    """A batch of P0, P1, P2: finds a ``failed`` entry's row by its key."""
    return {"P0": 0, "P1": 1, "P2": 2}.get(str(row.get("product_id")))


def read(body: Any, rows: int = 3, status: int = 200, **kwargs: Any) -> list[Failure]:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    return read_ingest_reply(status, data, rows, scrub, **kwargs)


WHOLE_BATCH = "the API reported status FAILED for the whole batch"


@pytest.mark.parametrize(
    ("status", "body", "kwargs", "expected"),
    [
        (200, {}, {}, []),
        (200, {"status": "SUCCESS"}, {}, []),
        (200, {"status": "ok"}, {}, []),
        (200, {"failed": []}, {}, []),
        (200, {"failed": None}, {}, []),
        (202, {"failed": []}, {}, []),
        (
            200,
            {
                "failed": [
                    {
                        "index": 2,
                        "errors": [
                            {"field": "pack_size", "code": "DI_E_101", "category": "TYPE", "message": "not an integer"}
                        ],
                    }
                ]
            },
            {},
            [Failure(2, "pack_size", "DI_E_101", "[TYPE] pack_size: not an integer")],
        ),
        (200, {"failed": [{"index": 0, "message": "too long"}]}, {}, [Failure(0, None, None, "too long")]),
        (
            200,
            {"failed": [{"row": {"product_id": "P1"}, "message": "bad"}]},
            {"key_index": by_product_id},
            [Failure(1, None, None, "bad")],
        ),
        (
            200,
            {"failed": [{"index": 1, "message": "first"}, {"index": 1, "message": "second"}]},
            {},
            [Failure(1, None, None, "first")],
        ),
        (
            200,
            {"status": "PARTIAL_SUCCESS", "failed": [{"index": 1, "message": "m"}]},
            {},
            [Failure(1, None, None, "m")],
        ),
        (
            200,
            {"status": "FAILED", "failed": [{"index": 1, "message": "m"}]},
            {},
            [Failure(0, None, None, WHOLE_BATCH), Failure(1, None, None, "m"), Failure(2, None, None, WHOLE_BATCH)],
        ),
        (200, {"status": "FAILED"}, {}, [Failure(i, None, None, WHOLE_BATCH) for i in range(3)]),
    ],
    ids=[
        "empty-object",
        "status-success",
        "status-lowercase",
        "failed-empty",
        "failed-null",
        "202-with-body",
        "failed-with-index-and-errors",
        "failed-with-index-and-message",
        "failed-with-row-only",
        "duplicate-index-keeps-the-first",
        "partial-success",
        "failed-status-with-entries",
        "failed-status-alone",
    ],
)
def test_answers_that_confirm_the_batch(status, body, kwargs, expected):
    assert read(body, status=status, **kwargs) == expected


@pytest.mark.parametrize(
    ("status", "body", "kwargs", "words"),
    [
        (200, b"<html><body>Down for maintenance</body></html>", {}, "not JSON"),
        (200, b'{"failed": [', {}, "not JSON"),
        (200, b"\xff\xfe\x00garbage", {}, "not JSON"),
        (200, [], {}, "JSON list, not an object"),
        (200, b"[" * 100_000, {}, "not JSON"),
        (200, b"", {}, "empty body"),
        (200, b"  \n", {}, "empty body"),
        (204, b"", {}, "HTTP 204"),
        (204, {}, {}, "HTTP 204"),
        (200, {"status": "QUEUED"}, {}, "unknown status 'QUEUED'"),
        (200, {"status": "PARTIAL_SUCCESS"}, {}, "without any 'failed' entry"),
        (200, {"status": "PARTIAL_SUCCESS", "failed": []}, {}, "without any 'failed' entry"),
        (200, {"failed": {"0": "bad"}}, {}, "'failed' is a dict"),
        (200, {"failed": ["bad"]}, {}, "entry is str"),
        (200, {"failed": [{"index": 1}, {"index": 2}, {"index": 3}]}, {}, "index 3 is outside the batch of 3 rows"),
        (200, {"failed": [{"index": 7}]}, {}, "index 7 is outside"),
        (200, {"failed": [{"index": -1}]}, {}, "index -1 is outside"),
        (200, {"failed": [{"index": 1.0}]}, {}, "index is 1.0, not an integer"),
        (200, {"failed": [{"index": True}]}, {}, "index is True, not an integer"),
        (200, {"failed": [{"index": "1"}]}, {}, "index is '1', not an integer"),
        (200, {"failed": [{"row": {"product_id": "P1"}}]}, {}, "names no row"),
        (200, {"failed": [{"row": {"product_id": "P9"}}]}, {"key_index": by_product_id}, "names no row"),
        (200, {"failed": [{"message": "bad"}]}, {"key_index": by_product_id}, "names no row"),
    ],
    ids=[
        "html",
        "invalid-json",
        "not-utf8",
        "json-list",
        "json-nested-too-deep",
        "empty-body",
        "blank-body",
        "204",
        "204-with-body",
        "unknown-status",
        "partial-success-without-failed",
        "partial-success-with-empty-failed",
        "failed-not-a-list",
        "failed-entry-not-an-object",
        "one-based-index",
        "index-out-of-range",
        "negative-index",
        "float-index",
        "bool-index",
        "str-index",
        "row-only-without-a-key-lookup",
        "row-not-in-the-batch",
        "no-index-no-row",
    ],
)
def test_answers_that_confirm_nothing(status, body, kwargs, words):
    with pytest.raises(NotUnderstood) as caught:
        read(body, status=status, **kwargs)
    assert words in str(caught.value)


EMULATOR_PARTIAL = {  # the emulator's answer (docs/emulator.md): one entry per row, its errors listed
    "status": "PARTIAL_SUCCESS",
    "objectName": "INV_PRODUCTS_OOTB",
    "operationType": "UPSERT",
    "dryRun": False,
    "received": 3,
    "accepted": 1,
    "failed": [
        {"index": 0, "row": {"product_id": "P0"}, "errors": [{"code": "DI_E_10002", "message": "m0"}]},
        {"index": 2, "row": {"product_id": "P2"}, "errors": [{"code": "DI_E_10002", "message": "m2"}]},
    ],
}


@pytest.mark.parametrize(
    ("body", "kwargs", "expected"),
    [
        ({"status": "SUCCESS", "received": 3, "accepted": 3, "failed": []}, {}, []),
        (EMULATOR_PARTIAL, {}, [Failure(0, None, "DI_E_10002", "m0"), Failure(2, None, "DI_E_10002", "m2")]),
        (
            EMULATOR_PARTIAL,
            {"key_index": by_product_id},
            [Failure(0, None, "DI_E_10002", "m0"), Failure(2, None, "DI_E_10002", "m2")],
        ),
        (
            {"received": 3, "accepted": 2, "failed": [{"index": 1, "message": "a"}, {"index": 1, "message": "b"}]},
            {},
            [Failure(1, None, None, "a")],
        ),  # two errors of one row: one row rejected
        (
            {"status": "FAILED", "received": 3, "accepted": 0},
            {},
            [Failure(i, None, None, WHOLE_BATCH) for i in range(3)],
        ),
        ({"receivedCount": 3, "acceptedCount": 3, "rowsReceived": 3, "rowsAccepted": 3}, {}, []),
        ({"received": None, "accepted": None}, {}, []),
        ({"success": True, "error": None, "errors": []}, {}, []),
        ({"error": "", "errors": None, "success": None}, {}, []),
        (
            {"status": "FAILED", "error": {"code": "DI_E_1", "message": "nothing stored"}, "success": False},
            {},
            [Failure(i, None, None, WHOLE_BATCH) for i in range(3)],
        ),  # says it failed, and how: every row rejected
        ({"failed": [{"index": 1, "rowIndex": 1, "message": "m"}]}, {}, [Failure(1, None, None, "m")]),
        (
            {"failed": [{"index": 1, "row": {"product_id": "P1"}, "record": {"product_id": "P1"}, "message": "m"}]},
            {"key_index": by_product_id},
            [Failure(1, None, None, "m")],
        ),
        (
            {
                "status": "PARTIAL_SUCCESS",
                "success": False,
                "errors": ["1 failed"],
                "failed": [{"index": 0, "message": "m"}],
            },
            {},
            [Failure(0, None, None, "m")],
        ),  # next to a named rejection, success false and errors only sum it up
        ({"accepted": True}, {}, []),  # a flag, not a count
    ],
    ids=[
        "counts-all-accepted",
        "emulator-partial",
        "emulator-partial-with-key-lookup",
        "accepted-counts-rows-not-entries",
        "failed-status-none-accepted",
        "other-count-spellings",
        "null-counts",
        "success-true-no-error",
        "empty-error",
        "failed-status-with-error-and-success-false",
        "index-keys-that-agree",
        "echoed-rows-that-agree",
        "partial-with-success-false-and-errors",
        "accepted-flag",
    ],
)
def test_answers_whose_counts_and_keys_agree_confirm_the_batch(body, kwargs, expected):
    assert read(body, **kwargs) == expected


@pytest.mark.parametrize(
    ("body", "rows", "words"),
    [
        # counts that disagree with the batch
        (
            {"status": "SUCCESS", "received": 5, "accepted": 5, "failed": []},
            10,
            "'received' count is 5, but the batch had 10",
        ),
        (
            {"status": "SUCCESS", "received": 10, "accepted": 0, "failed": []},
            10,
            "'accepted' count is 0, but 0 of the batch's 10 rows are rejected (expected 10)",
        ),
        ({"received": 10, "accepted": 0, "failed": []}, 10, "'accepted' count is 0"),
        ({"accepted": 9}, 10, "'accepted' count is 9"),
        ({"received": 11}, 10, "'received' count is 11"),
        (
            {"status": "PARTIAL_SUCCESS", "received": 10, "accepted": 9, "failed": [{"index": 0}, {"index": 1}]},
            10,
            "'accepted' count is 9, but 2 of the batch's 10 rows are rejected (expected 8)",
        ),
        (
            {"status": "FAILED", "received": 10, "accepted": 10},
            10,
            "'accepted' count is 10, but 10 of the batch's 10 rows",
        ),
        ({"received": 10, "accepted": 10, "acceptedCount": 0}, 10, "'acceptedCount' count is 0"),
        ({"rowsReceived": 1}, 10, "'rowsReceived' count is 1"),
        # counts that are no counts
        ({"received": 10.0}, 10, "'received' is 10.0, not a count of rows"),
        ({"accepted": "10"}, 10, "'accepted' is \"10\", not a count of rows"),
        ({"received": -1}, 10, "'received' is -1, not a count of rows"),
        ({"accepted": [0, 1]}, 10, "'accepted' is list, not a count of rows"),
        # a 200 that says it failed
        (
            {"error": {"code": "DI_E_00001", "message": "solution not rolled out"}},
            10,
            "carries 'error' without a failure status: \"solution not rolled out\"",
        ),
        ({"status": "SUCCESS", "error": "boom"}, 10, "carries 'error' without a failure status: \"boom\""),
        ({"errors": [{"message": "x"}], "failed": []}, 10, "carries 'errors' without a failure status: a list of 1"),
        ({"success": False, "message": "nothing stored"}, 10, "says success false"),
        ({"success": "false"}, 10, 'says success "false"'),
        ({"success": False, "failed": [{"index": 0}]}, 10, "says success false"),  # partial, or rolled back?
        ({"accepted": False}, 10, "'accepted' is false, not a count of rows"),
    ],
    ids=[
        "received-fewer",
        "accepted-none",
        "accepted-none-without-status",
        "accepted-one-fewer",
        "received-more",
        "accepted-not-rows-minus-failed",
        "failed-status-says-all-accepted",
        "two-spellings-disagree",
        "other-spelling",
        "float-count",
        "str-count",
        "negative-count",
        "list-count",
        "error-object",
        "error-with-success-status",
        "errors-list",
        "success-false",
        "success-not-a-bool",
        "success-false-with-failed-but-no-status",
        "accepted-false",
    ],
)
def test_answers_whose_counts_disagree_or_that_say_they_failed_confirm_nothing(body, rows, words):
    with pytest.raises(NotUnderstood) as caught:
        read(body, rows=rows)
    assert words in str(caught.value)


@pytest.mark.parametrize(
    ("body", "words"),
    [
        (b'{"failed":[{"index":0,"message":"bad pack_size"}],"failed":[]}', "repeats the key 'failed'"),
        (b'{"status":"FAILED","status":"SUCCESS"}', "repeats the key 'status'"),
        (b'{"received":3,"accepted":1,"accepted":3}', "repeats the key 'accepted'"),
        (b'{"failed":[{"index":0,"index":1,"message":"m"}]}', "repeats the key 'index'"),
        (b'{"failed":[{"index":1,"row":{"product_id":"P0","product_id":"P1"}}]}', "repeats the key 'product_id'"),
    ],
    ids=["failed", "status", "count", "entry-index", "echoed-row-key"],
)
def test_an_answer_that_repeats_a_key_confirms_nothing(body, words):
    """``json.loads`` would keep the last value silently: the answer has two readings."""
    with pytest.raises(NotUnderstood) as caught:
        read(body, key_index=by_product_id)
    assert words in str(caught.value)


@pytest.mark.parametrize(
    ("entry", "words"),
    [
        ({"index": 0, "rowIndex": 2}, "'index' and 'rowIndex' disagree: 0 and 2"),
        ({"row_index": 1, "position": 1.0}, "'row_index' and 'position' disagree: 1 and 1.0"),
        ({"idx": 1, "position": True}, "'idx' and 'position' disagree: 1 and True"),
        (
            {"index": 1, "row": {"product_id": "P1"}, "data": {"product_id": "P2"}},
            "'row' and 'data' disagree",
        ),
    ],
    ids=["index-and-rowIndex", "int-and-float", "int-and-bool", "two-echoed-rows"],
)
def test_an_entry_with_two_index_keys_or_rows_that_disagree_confirms_nothing(entry, words):
    with pytest.raises(NotUnderstood) as caught:
        read({"failed": [{**entry, "message": "bad"}]}, key_index=by_product_id)
    assert words in str(caught.value)


def test_a_token_in_a_repeated_key_a_count_or_an_error_is_scrubbed():
    for body in (
        f'{{"{TOKEN}":1,"{TOKEN}":2}}'.encode(),
        {"accepted": TOKEN},
        {"error": {"message": f"bad token {TOKEN}"}},
        {"failed": [{"index": 0, "rowIndex": TOKEN}]},
    ):
        with pytest.raises(NotUnderstood) as caught:
            read(body)
        assert TOKEN not in str(caught.value) and "***" in str(caught.value)


def test_reasons_field_and_code_from_the_server_are_scrubbed():
    entry = {"index": 0, "errors": [{"field": TOKEN, "code": TOKEN, "message": f"token {TOKEN} expired"}]}
    (failure,) = read({"failed": [entry]})
    assert TOKEN not in f"{failure.field} {failure.code} {failure.reason}"
    assert failure.reason == "***: token *** expired"


@pytest.mark.parametrize(
    "body",
    [
        f"<html>Hello {TOKEN}</html>".encode(),
        {"status": TOKEN},
        {"failed": [{"index": TOKEN}]},
    ],
    ids=["html", "status", "index"],
)
def test_a_token_echoed_in_an_answer_not_understood_is_scrubbed(body):
    with pytest.raises(NotUnderstood) as caught:
        read(body)
    assert TOKEN not in str(caught.value)
    assert "***" in str(caught.value)


def test_a_long_reason_is_cut_after_scrubbing():
    """The token straddles the cut: cutting first would leave its prefix in the reason."""
    message = "x" * (EXCERPT - 10) + TOKEN + "y" * 5_000
    (failure,) = read({"failed": [{"index": 0, "message": message}]})
    assert failure.reason == "x" * (EXCERPT - 10) + "***" + "y" * 7 + "…"
    assert TOKEN[:8] not in failure.reason


def test_a_long_page_not_understood_is_quoted_short_after_scrubbing():
    with pytest.raises(NotUnderstood) as caught:
        read(("<p>" + "x" * 110 + TOKEN + "z" * 10_000).encode())
    text = str(caught.value)
    assert TOKEN[:5] not in text
    assert len(text) < 250


def sent(*rows: dict[str, Any]) -> list[bytes]:
    """A batch as the hook sends it: each row one encoded JSON object."""
    return [json.dumps(row, separators=(",", ":")).encode() for row in rows]


BATCH = sent(
    {"product_id": "P0", "updated_at": "2025-01-15 08:00:00", "pack_size": 1},
    {"product_id": "P1", "updated_at": "2025-01-15 08:00:00", "pack_size": 2},
    {"product_id": "P1", "updated_at": "2025-01-16 08:00:00", "pack_size": 3},
    {"product_id": 7, "updated_at": "2025-01-15 08:00:00", "pack_size": 4},
    {"product_id": 1, "updated_at": "2025-01-15 08:00:00", "pack_size": 5},
)
KEY = ("product_id", "updated_at")


@pytest.mark.parametrize(
    ("echoed", "expected"),
    [
        ({"product_id": "P0", "updated_at": "2025-01-15 08:00:00", "pack_size": 1}, 0),
        ({"updated_at": "2025-01-16 08:00:00", "product_id": "P1", "pack_size": -9}, 2),  # other values, key order
        ({"product_id": 7, "updated_at": "2025-01-15 08:00:00"}, 3),
        ({"product_id": "7", "updated_at": "2025-01-15 08:00:00"}, None),  # a key part of another type
        ({"product_id": 7.0, "updated_at": "2025-01-15 08:00:00"}, None),
        ({"product_id": True, "updated_at": "2025-01-15 08:00:00"}, None),  # True == 1 in Python
        ({"product_id": "P9", "updated_at": "2025-01-15 08:00:00"}, None),  # not in the batch
        ({"product_id": "P0"}, None),  # a key part missing
        ({"product_id": ["P0"], "updated_at": "2025-01-15 08:00:00"}, None),  # unhashable
    ],
    ids=[
        "first",
        "key-order-and-other-values",
        "numeric-key",
        "key-of-another-type",
        "float-for-int",
        "bool-for-int",
        "not-sent",
        "part-missing",
        "unhashable",
    ],
)
def test_index_by_key_names_the_row_with_the_echoed_key(echoed, expected):
    assert index_by_key(BATCH, KEY)(echoed) == expected


def test_index_by_key_names_no_row_for_a_key_sent_twice_or_without_a_key():
    twice = sent({"product_id": "P0", "x": 1}, {"product_id": "P0", "x": 2}, {"product_id": "P1"})
    find = index_by_key(twice, ("product_id",))
    assert (find({"product_id": "P0"}), find({"product_id": "P1"})) == (None, 2)
    assert (find({"product_id": "P0"}, 1), find({"product_id": "P0"}, 2)) == (1, None)  # the entry's index agrees
    assert index_by_key(twice, ())({"product_id": "P1"}) is None  # a resource without a primary key


def test_an_entry_echoing_its_row_rejects_the_row_with_that_key():
    find = index_by_key(BATCH, KEY)
    echoed = {"row": json.loads(BATCH[2]), "errors": [{"field": "pack_size", "message": "too big"}]}
    assert read({"status": "PARTIAL_SUCCESS", "failed": [echoed]}, rows=5, key_index=find) == [
        Failure(2, "pack_size", None, "pack_size: too big")
    ]
    with pytest.raises(NotUnderstood, match="names no row"):
        read({"failed": [{"row": {"product_id": "P9", "updated_at": "x"}}]}, rows=5, key_index=find)


def test_an_entry_whose_index_and_row_name_different_rows_confirms_nothing():
    find = index_by_key(BATCH, KEY)
    agree = {"index": 2, "row": json.loads(BATCH[2])}
    assert [f.index for f in read({"failed": [agree]}, rows=5, key_index=find)] == [2]
    with pytest.raises(NotUnderstood, match="index 3 and its row \\(row 2\\) disagree"):
        read({"failed": [{"index": 3, "row": json.loads(BATCH[2])}]}, rows=5, key_index=find)


@pytest.mark.parametrize(
    "row",
    [
        {"product_id": "P9", "updated_at": "x"},  # a key never sent
        {"product_id": "NOT-SENT", "updated_at": "2025-01-15 08:00:00", "pack_size": 3},
        {"product_id": "P0", "updated_at": "2025-01-16 08:00:00"},  # each part sent, never together
        {"product_id": "0", "updated_at": "2025-01-15 08:00:00"},  # row 0's key as another type
        {"product_id": ["P0"], "updated_at": "2025-01-15 08:00:00"},  # unhashable
    ],
    ids=["key-not-sent", "not-sent-with-values", "parts-of-two-rows", "key-of-another-type", "unhashable"],
)
def test_an_entry_whose_index_comes_with_a_row_matching_none_sent_is_named_by_its_index(row):
    """The index names row 2 and the echo matches no row sent: the API may echo a key normalised (a timestamp
    reformatted, a number as text), so the index is trusted."""
    answer = {"failed": [{"index": 2, "row": row, "message": "bad"}]}
    assert read(answer, rows=5, key_index=index_by_key(BATCH, KEY)) == [Failure(2, None, None, "bad")]


@pytest.mark.parametrize(
    ("batch", "key", "row"),
    [
        (BATCH, KEY, {"pack_size": "x"}),  # the echo lacks a key part (the emulator echoes a row as received)
        (BATCH, KEY, {"product_id": "P9"}),
        (BATCH, (), {"product_id": "P9", "updated_at": "x"}),  # a resource without a primary key
    ],
    ids=["echo-without-the-key", "echo-with-part-of-the-key", "no-primary-key"],
)
def test_an_entry_whose_echoed_row_carries_no_whole_key_is_named_by_its_index(batch, key, row):
    answer = {"failed": [{"index": 2, "row": row, "message": "bad"}]}
    assert read(answer, rows=5, key_index=index_by_key(batch, key)) == [Failure(2, None, None, "bad")]


def test_index_by_key_skips_a_sent_row_it_cannot_decode():
    """A ``json`` attribute nested deeper than ``json.loads`` reads back, in a worker thread's smaller stack."""
    batch = [b"[" * 100_000, *BATCH]
    assert index_by_key(batch, KEY)({"product_id": "P0", "updated_at": "2025-01-15 08:00:00"}) == 1
