"""The one retry table: what each failure of an API call means, and whether it is retried.

Every failed call is classified into a :class:`Cause`. Its row in :data:`TABLE` says whether the request
may have been applied by Peak (``applied``) and whether it is retried for an idempotent operation
(``UPSERT``, and the schema GETs) and for ``APPEND``. ``APPEND`` is retried only when the request
certainly did not land, so a batch is never appended twice by the client; a batch whose outcome is
unknown is reported *in doubt* instead. The README's "Retries" table is generated from this one.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


class Applied(Enum):
    """Whether Peak may have applied a request that failed."""

    NO = "no"  # certainly not applied: safe to send again
    MAYBE = "maybe"  # unknown: for APPEND the rows are in doubt


class Cause(Enum):
    """Why a call failed, in the caller's terms."""

    THROTTLED = "throttled (HTTP 429)"
    UNAVAILABLE = "service unavailable (HTTP 503)"
    SERVER_ERROR = "server error (HTTP 500/502/504)"
    REFUSED = "connection refused or not established"
    DROPPED = "connection dropped after the request was sent"
    TIMEOUT = "no answer in time"
    TRUNCATED = "answer cut short or undecodable"
    UNRECOGNISED = "2xx answer not understood"
    REDIRECT = "redirect (HTTP 3xx)"
    TLS = "TLS error"
    AUTH = "token refused (HTTP 401/403)"
    CLIENT_ERROR = "request refused (HTTP 4xx)"
    INVALID_REQUEST = "request could not be built"


@dataclass(frozen=True)
class Rule:
    applied: Applied
    retry_idempotent: bool
    retry_append: bool
    why: str


TABLE: dict[Cause, Rule] = {
    Cause.THROTTLED: Rule(Applied.NO, True, True, "the API throttled the request before processing it"),
    Cause.UNAVAILABLE: Rule(Applied.MAYBE, True, False, "a gateway can answer 503 after the backend stored the rows"),
    Cause.SERVER_ERROR: Rule(Applied.MAYBE, True, False, "the backend may have stored the rows before failing"),
    Cause.REFUSED: Rule(Applied.NO, True, True, "no connection was made, so nothing was sent"),
    Cause.DROPPED: Rule(Applied.MAYBE, True, False, "the request was sent; the answer was lost"),
    Cause.TIMEOUT: Rule(Applied.MAYBE, True, False, "the request was sent; no answer came in time"),
    Cause.TRUNCATED: Rule(Applied.MAYBE, True, False, "the server answered, but the answer cannot be read"),
    Cause.UNRECOGNISED: Rule(
        Applied.MAYBE, True, False, "not an answer of the API (HTML page, proxy, unknown shape): nothing confirmed"
    ),
    Cause.REDIRECT: Rule(
        Applied.MAYBE, False, False, "redirects are never followed (a sign-in page or a proxy answered)"
    ),
    Cause.TLS: Rule(Applied.NO, False, False, "a certificate or protocol problem does not go away by retrying"),
    Cause.AUTH: Rule(Applied.NO, False, False, "the token was refused"),
    Cause.CLIENT_ERROR: Rule(Applied.NO, False, False, "the API refused the request as invalid"),
    Cause.INVALID_REQUEST: Rule(Applied.NO, False, False, "the request could not be sent (e.g. a bad header)"),
}

#: HTTP statuses with their own cause; 1xx are TRUNCATED, 3xx REDIRECT, other 4xx CLIENT_ERROR, other 5xx
#: SERVER_ERROR.
STATUS_CAUSES = {429: Cause.THROTTLED, 503: Cause.UNAVAILABLE, 401: Cause.AUTH, 403: Cause.AUTH}


def cause_of_status(status: int) -> Cause:
    """The cause of a non-2xx, non-413 status."""
    if status in STATUS_CAUSES:
        return STATUS_CAUSES[status]
    if 100 <= status < 200:
        # An interim answer (102 Processing, 103 Early Hints) taken for the final one: http.client skips only
        # 100 Continue. The request was sent and the final answer is never read (the transport closes the
        # connection), so nothing is confirmed: the request may have been applied.
        return Cause.TRUNCATED
    if 300 <= status < 400:
        return Cause.REDIRECT
    if 400 <= status < 500:
        return Cause.CLIENT_ERROR
    return Cause.SERVER_ERROR


def retryable(cause: Cause, idempotent: bool) -> bool:
    rule = TABLE[cause]
    return rule.retry_idempotent if idempotent else rule.retry_append


def markdown_table() -> str:
    """The table as Markdown, for the README."""
    yes_no = {True: "retried", False: "not retried"}
    lines = [
        "| failure | may have been applied | UPSERT | APPEND | why |",
        "|---|---|---|---|---|",
    ]
    for cause, rule in TABLE.items():
        lines.append(
            f"| {cause.value} | {rule.applied.value} | {yes_no[rule.retry_idempotent]} | "
            f"{yes_no[rule.retry_append]} | {rule.why} |"
        )
    return "\n".join(lines)
