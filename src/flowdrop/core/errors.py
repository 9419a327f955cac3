"""Errors are data: one code enum, one body model, one exception base.

Every failure that reaches a user, whether in the outbox, on the command line or in a log line,
is a :class:`FlowdropError` carrying an :class:`ErrorCode`, a message for people and a
``details`` mapping for programs. The codes are a stable interface (docs/protocol.md).
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class ErrorCode(StrEnum):
    """Stable machine-readable error codes; never renamed, only added."""

    INVALID_JSON = "invalid_json"
    INVALID_REQUEST = "invalid_request"
    REQUEST_TOO_LARGE = "request_too_large"
    UNSUPPORTED_SCHEMA_VERSION = "unsupported_schema_version"
    REQUEST_CONFLICT = "request_conflict"
    TEMPLATE_NOT_FOUND = "template_not_found"
    TEMPLATE_INVALID = "template_invalid"
    PARAMETER_INVALID = "parameter_invalid"
    STOCHASTIC_TEMPLATE = "stochastic_template"
    CAPTURE_MISSING = "capture_missing"
    CAPTURE_KEY_MISSING = "capture_key_missing"
    CAPTURE_FAILED = "capture_failed"
    BUNDLE_INVALID = "bundle_invalid"
    PATH_VIOLATION = "path_violation"
    STORAGE_ERROR = "storage_error"
    REPORT_UNAVAILABLE = "report_unavailable"
    INTERRUPTED = "interrupted"
    TIMEOUT = "timeout"
    INTERNAL_ERROR = "internal_error"


class ErrorBody(BaseModel):
    """The ``error`` object of a failed result, a quarantine reason file and CLI JSON output."""

    model_config = ConfigDict(extra="forbid")

    code: ErrorCode
    message: str
    details: dict[str, Any] = Field(default_factory=dict)


class FlowdropError(Exception):
    """Base of every error flowdrop raises on purpose.

    ``details`` must be JSON-serialisable and must never contain an absolute host path: it ends up
    in outbox files that a UI shows.
    """

    def __init__(self, code: ErrorCode, message: str, **details: Any) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.details = details

    def body(self) -> ErrorBody:
        return ErrorBody(code=self.code, message=self.message, details=self.details)

    def __repr__(self) -> str:
        return f"FlowdropError({self.code.value!r}, {self.message!r}, details={self.details!r})"
