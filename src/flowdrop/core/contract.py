"""The JSON file contract: request, status and result models.

These pydantic models *are* the contract of docs/protocol.md; the JSON Schemas published there are
generated from them (:func:`json_schemas`), never written by hand. Field names are camelCase on the
wire and snake_case in Python.
"""

from __future__ import annotations

import json
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic.alias_generators import to_camel

from flowdrop.core.errors import ErrorBody, ErrorCode, FlowdropError
from flowdrop.core.hashing import RNG_KIND

SCHEMA_VERSION = 1
REQUEST_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"
# Deeper JSON than this is refused before it can exhaust the parser's stack.
MAX_JSON_DEPTH = 64

RequestId = Annotated[str, Field(pattern=REQUEST_ID_PATTERN)]
Int32 = Annotated[int, Field(ge=-(2**31), le=2**31 - 1)]


class _Model(BaseModel):
    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        strict=True,
        frozen=True,
    )

    def to_json_bytes(self) -> bytes:
        """Canonical file bytes: camelCase, sorted by declaration order, 2-space indent, LF end."""
        text = self.model_dump_json(by_alias=True, indent=2)
        return (text + "\n").encode("utf-8")


class Mode(StrEnum):
    SIMULATION = "simulation"
    TELEMETRY = "telemetry"


class State(StrEnum):
    ACCEPTED = "accepted"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    REJECTED = "rejected"

    @property
    def terminal(self) -> bool:
        return self in {State.SUCCEEDED, State.FAILED, State.REJECTED}


class Phase(StrEnum):
    VALIDATING = "validating"
    SIMULATING = "simulating"
    CAPTURING = "capturing"
    REPLAYING = "replaying"
    WRITING = "writing"


class CaptureStatus(StrEnum):
    GENERATED = "generated"
    REUSED = "reused"
    NOT_REQUIRED = "notRequired"
    # Only in a dry-run plan: the bundle is missing and would be generated.
    PENDING = "pending"


# --- request -------------------------------------------------------------------------------


class TelemetrySpec(_Model):
    capture_directory: str | None = None
    bindings: dict[str, str] = Field(default_factory=dict)


class RngSpec(_Model):
    kind: str = RNG_KIND
    seed: Int32


class RunOptions(_Model):
    auto_capture: bool = True
    force_capture: bool = False
    dry_run: bool = False
    overwrite_existing: bool = False
    deterministic_run_id: bool = True
    run_id: str | None = None
    # Write report.html into the run directory before it is published (needs the report extra).
    report: bool = False


class RunRequest(_Model):
    """A run request file dropped into the inbox: FlowTime's create-run body plus our options."""

    schema_version: Literal[1] = 1
    request_id: RequestId | None = None
    template_id: Annotated[str, Field(min_length=1, max_length=256)]
    mode: Mode
    parameters: dict[str, Any] = Field(default_factory=dict)
    telemetry: TelemetrySpec | None = None
    rng: RngSpec | None = None
    options: RunOptions = Field(default_factory=RunOptions)


# --- status --------------------------------------------------------------------------------


class StatusFile(_Model):
    """``<requestId>.status.json``: replaced atomically at every transition; ``seq`` only grows."""

    schema_version: Literal[1] = 1
    request_id: str
    state: State
    phase: Phase | None = None
    message: str = ""
    seq: int
    accepted_at: datetime
    updated_at: datetime
    instance: str


# --- result --------------------------------------------------------------------------------


class RunWarning(_Model):
    code: str
    message: str
    severity: str = "warning"
    node_id: str | None = None
    bins: list[int] | None = None


class RunSummary(_Model):
    run_id: str
    mode: Mode
    template_id: str
    template_version: str
    was_reused: bool
    path: str  # relative to the runs root; never an absolute host path
    warnings: list[RunWarning] = Field(default_factory=list)
    report: str | None = None  # "<path>/report.html" when the run has one (options.report)


class CaptureSummary(_Model):
    status: CaptureStatus
    reason: str
    capture_key: str | None = None
    source_run_id: str | None = None
    warnings: list[RunWarning] = Field(default_factory=list)


class RunPlan(_Model):
    """What a dry run would do; nothing was written."""

    template_id: str
    template_version: str
    mode: Mode
    run_id: str | None
    would_reuse_run: bool
    capture: CaptureSummary
    steps: list[str]
    parameters: dict[str, Any] = Field(default_factory=dict)


class RunResult(_Model):
    """``<requestId>.result.json``: written once, atomically, when the request ends."""

    schema_version: Literal[1] = 1
    request_id: str
    state: Literal[State.SUCCEEDED, State.FAILED, State.REJECTED]
    run: RunSummary | None = None
    capture: CaptureSummary | None = None
    capture_generated: bool = False
    capture_warnings: list[RunWarning] = Field(default_factory=list)
    plan: RunPlan | None = None
    timings: dict[str, float] = Field(default_factory=dict)
    error: ErrorBody | None = None

    @classmethod
    def from_error(
        cls, request_id: str, error: FlowdropError, *, state: State = State.FAILED
    ) -> RunResult:
        return cls(request_id=request_id, state=state, error=error.body())  # type: ignore[arg-type]


class QuarantineReason(_Model):
    """``quarantine/<name>.reason.json``: why a file was not accepted."""

    schema_version: Literal[1] = 1
    file_name: str
    request_id: str | None = None
    quarantined_at: datetime
    instance: str
    error: ErrorBody


# --- parsing -------------------------------------------------------------------------------


def _reject_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            msg = f"Duplicate key '{key}' in JSON object."
            raise _DuplicateKeyError(msg, key)
        result[key] = value
    return result


class _DuplicateKeyError(ValueError):
    def __init__(self, message: str, key: str) -> None:
        super().__init__(message)
        self.key = key


def _finite_float(literal: str) -> float:
    value = float(literal)
    if value in (float("inf"), float("-inf")):
        msg = f"Number {literal[:40]} is out of range."
        raise ValueError(msg)
    return value


def _reject_constant(name: str) -> Any:
    msg = f"Non-standard JSON number '{name}' is not allowed."
    raise ValueError(msg)


def _json_depth_exceeds(raw: str, limit: int) -> bool:
    depth = 0
    in_string = False
    escaped = False
    for char in raw:
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            if depth > limit:
                return True
        elif char in "]}":
            depth -= 1
    return False


def _json_path(loc: tuple[int | str, ...]) -> str:
    path = ""
    for part in loc:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    return path or "$"


def parse_request(raw: bytes) -> RunRequest:
    """Decode and validate request bytes; every refusal is a :class:`FlowdropError`.

    ``invalid_json`` for bytes that are not one JSON object (bad UTF-8, syntax, duplicate keys,
    NaN/Infinity, nesting deeper than :data:`MAX_JSON_DEPTH`); ``unsupported_schema_version``
    for a ``schemaVersion`` other than 1; ``invalid_request`` with pydantic's error locations in
    ``details.errors`` for everything else.
    """
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        msg = f"Request is not valid UTF-8 (byte {exc.start})."
        raise FlowdropError(ErrorCode.INVALID_JSON, msg, position=exc.start) from None
    if text.startswith("\ufeff"):
        text = text[1:]
    if _json_depth_exceeds(text, MAX_JSON_DEPTH):
        msg = f"Request JSON is nested deeper than {MAX_JSON_DEPTH} levels."
        raise FlowdropError(ErrorCode.INVALID_JSON, msg, maxDepth=MAX_JSON_DEPTH)
    try:
        document = json.loads(
            text,
            object_pairs_hook=_reject_duplicate_keys,
            parse_constant=_reject_constant,
            parse_float=_finite_float,
        )
    except _DuplicateKeyError as exc:
        raise FlowdropError(ErrorCode.INVALID_JSON, str(exc), key=exc.key) from None
    except json.JSONDecodeError as exc:
        msg = f"Request is not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})."
        raise FlowdropError(
            ErrorCode.INVALID_JSON, msg, line=exc.lineno, column=exc.colno
        ) from None
    except ValueError as exc:  # parse_constant, int too large for str conversion
        raise FlowdropError(ErrorCode.INVALID_JSON, f"Request is not valid JSON: {exc}") from None
    try:
        # A "\udXXX" escape without its pair decodes to a lone surrogate: not text, and it
        # would make any status or reason that echoes it unwritable as UTF-8.
        json.dumps(document, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        msg = "Request is not valid JSON: a \\u escape is an unpaired UTF-16 surrogate."
        raise FlowdropError(ErrorCode.INVALID_JSON, msg) from None
    if not isinstance(document, dict):
        msg = "Request must be a JSON object."
        raise FlowdropError(ErrorCode.INVALID_REQUEST, msg, type=type(document).__name__)
    version = document.get("schemaVersion", SCHEMA_VERSION)
    if version != SCHEMA_VERSION or isinstance(version, bool):
        msg = f"Unsupported schemaVersion {json.dumps(version)}; this flowdrop reads version 1."
        raise FlowdropError(
            ErrorCode.UNSUPPORTED_SCHEMA_VERSION, msg, schemaVersion=version, supported=[1]
        )
    try:
        # Validate from the text: strict JSON mode accepts enum strings but no type coercion.
        return RunRequest.model_validate_json(text)
    except ValidationError as exc:
        errors = [
            {"loc": _json_path(tuple(err["loc"])), "type": err["type"], "msg": err["msg"]}
            for err in exc.errors(include_url=False, include_input=False)
        ]
        first = errors[0]
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        msg = f"Invalid request: {first['loc']}: {first['msg']}{more}."
        raise FlowdropError(ErrorCode.INVALID_REQUEST, msg, errors=errors) from None


def json_schemas() -> dict[str, dict[str, Any]]:
    """JSON Schemas of every file in the contract, generated from the models."""
    models: dict[str, type[BaseModel]] = {
        "request": RunRequest,
        "status": StatusFile,
        "result": RunResult,
        "quarantine-reason": QuarantineReason,
    }
    return {
        name: model.model_json_schema(by_alias=True, mode="serialization")
        for name, model in models.items()
    }
