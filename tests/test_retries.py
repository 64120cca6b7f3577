"""The one retry table: every cause has a rule, APPEND never retries what may have landed, statuses map right."""

from __future__ import annotations

import pytest

from peak_provider.retries import TABLE, Applied, Cause, cause_of_status, markdown_table, retryable


def test_every_cause_has_a_rule():
    assert set(TABLE) == set(Cause)
    assert all(rule.why for rule in TABLE.values())


@pytest.mark.parametrize("cause", list(Cause), ids=lambda c: c.name)
def test_append_retries_only_what_certainly_did_not_land(cause):
    rule = TABLE[cause]
    assert retryable(cause, idempotent=False) == rule.retry_append
    assert retryable(cause, idempotent=True) == rule.retry_idempotent
    if rule.retry_append:
        assert rule.applied is Applied.NO, f"APPEND retries {cause.name}, which may have been applied"
        assert rule.retry_idempotent, f"{cause.name} is safe to resend for APPEND but not retried for UPSERT"


def test_append_retries_exactly_throttling_and_refused_connections():
    assert {cause for cause in Cause if retryable(cause, idempotent=False)} == {Cause.THROTTLED, Cause.REFUSED}


@pytest.mark.parametrize(
    ("status", "cause"),
    [
        (101, Cause.TRUNCATED),
        (102, Cause.TRUNCATED),
        (103, Cause.TRUNCATED),
        (301, Cause.REDIRECT),
        (302, Cause.REDIRECT),
        (303, Cause.REDIRECT),
        (307, Cause.REDIRECT),
        (308, Cause.REDIRECT),
        (400, Cause.CLIENT_ERROR),
        (401, Cause.AUTH),
        (403, Cause.AUTH),
        (404, Cause.CLIENT_ERROR),
        (409, Cause.CLIENT_ERROR),
        (422, Cause.CLIENT_ERROR),
        (429, Cause.THROTTLED),
        (500, Cause.SERVER_ERROR),
        (502, Cause.SERVER_ERROR),
        (503, Cause.UNAVAILABLE),
        (504, Cause.SERVER_ERROR),
    ],
)
def test_cause_of_status(status, cause):
    assert cause_of_status(status) is cause


def test_redirects_and_503_are_never_resent_by_append():
    for status in (301, 302, 303, 307, 308, 503):
        cause = cause_of_status(status)
        assert TABLE[cause].applied is Applied.MAYBE
        assert not retryable(cause, idempotent=False)
    assert not retryable(Cause.REDIRECT, idempotent=True)


def test_an_interim_answer_confirms_nothing():
    """http.client returns a 1xx other than 100 as if it were the answer: the request was sent, its outcome
    unknown. UPSERT may send it again; APPEND puts its rows in doubt."""
    for status in range(101, 200):
        cause = cause_of_status(status)
        assert TABLE[cause].applied is Applied.MAYBE, status
        assert retryable(cause, idempotent=True) and not retryable(cause, idempotent=False), status


def test_markdown_table_lists_every_cause_once():
    lines = markdown_table().splitlines()
    assert lines[0].startswith("| failure |")
    rows = lines[2:]
    assert len(rows) == len(Cause)
    for cause, row in zip(TABLE, rows, strict=True):
        rule = TABLE[cause]
        cells = [cell.strip() for cell in row.strip("|").split("|")]
        assert cells == [
            cause.value,
            rule.applied.value,
            "retried" if rule.retry_idempotent else "not retried",
            "retried" if rule.retry_append else "not retried",
            rule.why,
        ]
