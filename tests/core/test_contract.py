"""The request/status/result file contract: parsing, refusals and serialisation."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flowdrop.core.contract import (
    MAX_JSON_DEPTH,
    CaptureStatus,
    RunRequest,
    RunResult,
    State,
    StatusFile,
    json_schemas,
    parse_request,
)
from flowdrop.core.errors import ErrorCode, FlowdropError


def _request(**overrides: Any) -> bytes:
    body: dict[str, Any] = {"templateId": "warehouse-picker-waves", "mode": "telemetry"}
    body.update(overrides)
    return json.dumps(body).encode()


def _refusal(raw: bytes) -> FlowdropError:
    with pytest.raises(FlowdropError) as caught:
        parse_request(raw)
    return caught.value


def test_design_example_request_parses_with_camel_case_fields() -> None:
    raw = json.dumps(
        {
            "schemaVersion": 1,
            "requestId": "nightly-42",
            "templateId": "warehouse-picker-waves",
            "mode": "telemetry",
            "parameters": {"bins": 12, "waveCapacity": 90},
            "telemetry": {"captureDirectory": "warehouse-picker", "bindings": {}},
            "rng": {"kind": "pcg32", "seed": 123},
            "options": {
                "autoCapture": True,
                "forceCapture": False,
                "dryRun": False,
                "overwriteExisting": False,
                "deterministicRunId": True,
            },
        }
    ).encode()
    request = parse_request(raw)
    assert request.request_id == "nightly-42"
    assert request.parameters == {"bins": 12, "waveCapacity": 90}
    assert request.telemetry is not None
    assert request.telemetry.capture_directory == "warehouse-picker"
    assert request.rng is not None and request.rng.seed == 123


def test_options_default_to_auto_capture_and_deterministic_ids() -> None:
    options = parse_request(_request()).options
    assert options.auto_capture is True
    assert options.deterministic_run_id is True
    assert options.force_capture is False
    assert options.dry_run is False


def test_utf8_byte_order_mark_is_accepted() -> None:
    assert parse_request(b"\xef\xbb\xbf" + _request()).template_id == "warehouse-picker-waves"


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (
            b"{not json",
            "Request is not valid JSON: Expecting property name enclosed in double quotes (line 1, column 2).",
        ),
        (b"\xff\xfe", "Request is not valid UTF-8 (byte 0)."),
        (b'{"a": 1, "a": 2}', "Duplicate key 'a' in JSON object."),
        (
            b'{"x": NaN}',
            "Request is not valid JSON: Non-standard JSON number 'NaN' is not allowed.",
        ),
        (b'{"x": 1e999}', "Request is not valid JSON: Number 1e999 is out of range."),
        (b"[" * 100_000, f"Request JSON is nested deeper than {MAX_JSON_DEPTH} levels."),
    ],
)
def test_undecodable_bytes_are_invalid_json(raw: bytes, message: str) -> None:
    error = _refusal(raw)
    assert error.code is ErrorCode.INVALID_JSON
    assert error.message == message


def test_non_object_document_is_invalid_request() -> None:
    error = _refusal(b"[1, 2]")
    assert error.code is ErrorCode.INVALID_REQUEST
    assert error.message == "Request must be a JSON object."


@pytest.mark.parametrize("version", [0, 2, "1", True, None])
def test_other_schema_versions_are_unsupported(version: object) -> None:
    error = _refusal(_request(schemaVersion=version))
    assert error.code is ErrorCode.UNSUPPORTED_SCHEMA_VERSION
    assert error.message == (
        f"Unsupported schemaVersion {json.dumps(version)}; this flowdrop reads version 1."
    )


@pytest.mark.parametrize(
    ("body", "loc", "message"),
    [
        ({"mode": "telemetry"}, "templateId", "Invalid request: templateId: Field required."),
        ({"templateId": "t"}, "mode", "Invalid request: mode: Field required."),
        (
            {"templateId": "t", "mode": "replay"},
            "mode",
            "Invalid request: mode: Input should be 'simulation' or 'telemetry'.",
        ),
        (
            {"templateId": "t", "mode": "telemetry", "surprise": 1},
            "surprise",
            "Invalid request: surprise: Extra inputs are not permitted.",
        ),
        (
            {"templateId": "t", "mode": "telemetry", "rng": {"seed": "7"}},
            "rng.seed",
            "Invalid request: rng.seed: Input should be a valid integer.",
        ),
        (
            {"templateId": "t", "mode": "telemetry", "rng": {"seed": 2**40}},
            "rng.seed",
            "Invalid request: rng.seed: Input should be less than or equal to 2147483647.",
        ),
        (
            {"templateId": "t", "mode": "telemetry", "requestId": "../etc"},
            "requestId",
            "Invalid request: requestId: String should match pattern "
            "'^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$'.",
        ),
        (
            {"templateId": "t", "mode": "telemetry", "options": {"autoCapture": "yes"}},
            "options.autoCapture",
            "Invalid request: options.autoCapture: Input should be a valid boolean.",
        ),
    ],
)
def test_invalid_requests_name_the_offending_location(
    body: dict[str, Any], loc: str, message: str
) -> None:
    error = _refusal(json.dumps(body).encode())
    assert error.code is ErrorCode.INVALID_REQUEST
    assert error.message == message
    assert error.details["errors"][0]["loc"] == loc


def test_several_problems_are_all_listed_in_details() -> None:
    error = _refusal(b"{}")
    assert error.message == "Invalid request: templateId: Field required (and 1 more)."
    assert [item["loc"] for item in error.details["errors"]] == ["templateId", "mode"]


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=512))
def test_arbitrary_bytes_give_a_request_or_a_structured_refusal(raw: bytes) -> None:
    try:
        parse_request(raw)
    except FlowdropError as error:
        assert error.code in {
            ErrorCode.INVALID_JSON,
            ErrorCode.INVALID_REQUEST,
            ErrorCode.UNSUPPORTED_SCHEMA_VERSION,
        }
        assert error.message


_json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: st.lists(children) | st.dictionaries(st.text(), children),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(
    st.dictionaries(st.sampled_from(["templateId", "mode", "options", "rng", "x"]), _json_values)
)
def test_arbitrary_objects_give_a_request_or_a_structured_refusal(body: dict[str, Any]) -> None:
    try:
        request = parse_request(json.dumps(body).encode())
    except FlowdropError as error:
        assert error.code in {ErrorCode.INVALID_REQUEST, ErrorCode.UNSUPPORTED_SCHEMA_VERSION}
    else:
        assert request.template_id == body["templateId"]


def test_result_file_bytes_are_camel_case_and_stable() -> None:
    error = FlowdropError(ErrorCode.CAPTURE_MISSING, "No bundle.", captureKey="k")
    result = RunResult.from_error("r1", error)
    document = json.loads(result.to_json_bytes())
    assert document["state"] == "failed"
    assert document["error"] == {
        "code": "capture_missing",
        "message": "No bundle.",
        "details": {"captureKey": "k"},
    }
    assert result.to_json_bytes() == RunResult.from_error("r1", error).to_json_bytes()
    assert result.to_json_bytes().endswith(b"}\n")


def test_status_round_trips_through_its_json() -> None:
    now = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    status = StatusFile(
        request_id="r1", state=State.ACCEPTED, seq=1, accepted_at=now, updated_at=now, instance="i"
    )
    again = StatusFile.model_validate_json(status.to_json_bytes())
    assert again == status
    assert State.SUCCEEDED.terminal and not State.RUNNING.terminal


def test_schemas_are_generated_for_every_contract_file() -> None:
    schemas = json_schemas()
    assert set(schemas) == {"request", "status", "result", "quarantine-reason"}
    request_schema = schemas["request"]
    assert request_schema["required"] == ["templateId", "mode"]
    assert request_schema["additionalProperties"] is False
    assert CaptureStatus.NOT_REQUIRED.value in json.dumps(schemas["result"])


def test_request_model_is_immutable() -> None:
    request = RunRequest.model_validate_json(_request())
    with pytest.raises(ValueError, match="frozen"):
        request.template_id = "other"  # type: ignore[misc]
