"""Error codes the emulator answers with, and the exception that carries a request-level error."""

from __future__ import annotations

from typing import Any

# Row-level validation codes (category VALIDATION), one per rule.
MISSING_REQUIRED = "DI_E_10001"
WRONG_TYPE = "DI_E_10002"
NULL_NOT_ALLOWED = "DI_E_10003"
BAD_FORMAT = "DI_E_10004"
UNKNOWN_ATTRIBUTE = "DI_E_10005"
PRIMARY_KEY_MISSING = "DI_E_10006"
ROW_NOT_OBJECT = "DI_E_10007"
LENGTH_RULE = "DI_E_10008"
DUPLICATE_ATTRIBUTE = "DI_E_10009"

# Request-level codes.
UNAUTHORIZED = "DI_E_20001"
RATE_LIMITED = "DI_E_20002"
BODY_TOO_LARGE = "DI_E_20003"
TOO_MANY_ROWS = "DI_E_20004"
MALFORMED_JSON = "DI_E_20005"
INVALID_BODY = "DI_E_20006"
UNKNOWN_SOLUTION = "DI_E_20007"
UNKNOWN_OBJECT = "DI_E_20008"
UNKNOWN_ENDPOINT = "DI_E_20009"
METHOD_NOT_ALLOWED = "DI_E_20010"
INVALID_ATTRIBUTE = "DI_E_20011"
ATTRIBUTE_EXISTS = "DI_E_20012"
FORBIDDEN = "DI_E_20013"
MISDIRECTED = "DI_E_20014"  # an Airflow api-server path: the client has the wrong port
INJECTED_FAULT = "DI_E_50000"
INTERNAL = "DI_E_50001"


class ApiError(Exception):
    """A request the emulator refuses as a whole: ``{"error": {"code", "category", "message"}}``."""

    def __init__(
        self,
        status: int,
        code: str,
        category: str,
        message: str,
        headers: dict[str, str] | None = None,
        *,
        rows: int = 0,
    ):
        super().__init__(message)
        self.status = status
        self.code = code
        self.category = category
        self.message = message
        self.headers = headers or {}
        self.rows = rows  # rows the request carried, for the request log

    def body(self) -> dict[str, Any]:
        return {"error": {"code": self.code, "category": self.category, "message": self.message}}
