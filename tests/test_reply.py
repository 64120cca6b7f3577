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
    unknown_row = {"index": 2, "row": {"product_id": "P9", "updated_at": "x"}}  # the index alone names it
    assert [f.index for f in read({"failed": [unknown_row]}, rows=5, key_index=find)] == [2]
    with pytest.raises(NotUnderstood, match="index 3 and its row \\(row 2\\) disagree"):
        read({"failed": [{"index": 3, "row": json.loads(BATCH[2])}]}, rows=5, key_index=find)


def test_index_by_key_skips_a_sent_row_it_cannot_decode():
    """A ``json`` attribute nested deeper than ``json.loads`` reads back, in a worker thread's smaller stack."""
    batch = [b"[" * 100_000, *BATCH]
    assert index_by_key(batch, KEY)({"product_id": "P0", "updated_at": "2025-01-15 08:00:00"}) == 1
