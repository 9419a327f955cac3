"""Request-supplied parameter overrides against their declarations (stricter than upstream).

Every branch of :func:`flowdrop.core.orchestration.overrides.check_overrides` (code, exact message, details),
the same refusal through :func:`orchestrate` before anything is written, and in-range overrides
of every real template still accepted.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from flowdrop.core.contract import RunRequest, State
from flowdrop.core.engine import Template, load_template
from flowdrop.core.errors import ErrorCode, FlowdropError
from flowdrop.core.orchestration.orchestrator import Roots, orchestrate
from flowdrop.core.orchestration.overrides import check_overrides
from tests.realtemplates import real_template_paths

TEMPLATE = """\
metadata: {id: ov, title: Overrides, version: 1.0.0}
parameters:
  - name: bins
    type: integer
    min: 6
    max: 72
    default: 12
  - name: rate
    type: number
    minimum: 0
    maximum: 1
    default: 0.5
  - name: unbounded
    type: number
    default: 3
  - name: enabled
    type: boolean
    default: true
  - name: label
    type: string
    default: ""
  - name: counts
    type: array
    arrayOf: int
    minimum: 0
    maximum: 100
    default: [1, 2]
  - name: weights
    type: array
    default: [0.5]
"""


@pytest.fixture(name="template", scope="module")
def _template() -> Template:
    return load_template(TEMPLATE)


def _refused(template: Template, overrides: dict[str, Any]) -> FlowdropError:
    with pytest.raises(FlowdropError) as caught:
        check_overrides(template, overrides)
    assert caught.value.code is ErrorCode.PARAMETER_INVALID
    return caught.value


@pytest.mark.parametrize(
    ("overrides", "message", "details"),
    [
        (
            {"bins": "abc"},
            "Parameter 'bins' expects an integer value (got \"abc\").",
            {"parameter": "bins", "value": "abc", "rule": "type: integer"},
        ),
        (
            {"bins": 6.5},
            "Parameter 'bins' expects an integer value (got 6.5).",
            {"parameter": "bins", "value": 6.5, "rule": "type: integer"},
        ),
        (
            {"bins": True},
            "Parameter 'bins' expects an integer value (got true).",
            {"parameter": "bins", "value": True, "rule": "type: integer"},
        ),
        (
            {"bins": "12"},
            "Parameter 'bins' expects an integer value (got \"12\").",
            {"parameter": "bins", "value": "12", "rule": "type: integer"},
        ),
        (
            {"bins": 100},
            "Parameter 'bins' value 100 exceeds maximum 72.",
            {"parameter": "bins", "value": 100, "rule": "maximum: 72"},
        ),
        (
            {"bins": 3},
            "Parameter 'bins' value 3 is below minimum 6.",
            {"parameter": "bins", "value": 3, "rule": "minimum: 6"},
        ),
        (
            {"rate": "high"},
            "Parameter 'rate' expects a number value (got \"high\").",
            {"parameter": "rate", "value": "high", "rule": "type: number"},
        ),
        (
            {"rate": False},
            "Parameter 'rate' expects a number value (got false).",
            {"parameter": "rate", "value": False, "rule": "type: number"},
        ),
        (
            {"rate": [0.5]},
            "Parameter 'rate' expects a number value (got [0.5]).",
            {"parameter": "rate", "value": "[0.5]", "rule": "type: number"},
        ),
        (
            {"rate": float("inf")},
            "Parameter 'rate' expects a number value (got Infinity).",
            {"parameter": "rate", "value": "Infinity", "rule": "type: number"},
        ),
        (
            {"rate": 1.5},
            "Parameter 'rate' value 1.5 exceeds maximum 1.",
            {"parameter": "rate", "value": 1.5, "rule": "maximum: 1"},
        ),
        (
            {"rate": -0.25},
            "Parameter 'rate' value -0.25 is below minimum 0.",
            {"parameter": "rate", "value": -0.25, "rule": "minimum: 0"},
        ),
        (
            {"enabled": 1},
            "Parameter 'enabled' expects a boolean value (got 1).",
            {"parameter": "enabled", "value": 1, "rule": "type: boolean"},
        ),
        (
            {"enabled": "true"},
            "Parameter 'enabled' expects a boolean value (got \"true\").",
            {"parameter": "enabled", "value": "true", "rule": "type: boolean"},
        ),
        (
            {"label": 5},
            "Parameter 'label' expects a string value (got 5).",
            {"parameter": "label", "value": 5, "rule": "type: string"},
        ),
        (
            {"label": {"a": 1}},
            "Parameter 'label' expects a string value (got {\"a\": 1}).",
            {"parameter": "label", "value": '{"a": 1}', "rule": "type: string"},
        ),
        (
            {"weights": "abc"},
            "Parameter 'weights' expects an array value (got \"abc\").",
            {"parameter": "weights", "value": "abc", "rule": "type: array"},
        ),
        (
            {"weights": "[1, 2"},
            "Parameter 'weights' expects an array value (got \"[1, 2\").",
            {"parameter": "weights", "value": "[1, 2", "rule": "type: array"},
        ),
        (
            {"weights": 5},
            "Parameter 'weights' expects an array value (got 5).",
            {"parameter": "weights", "value": 5, "rule": "type: array"},
        ),
        (
            {"weights": [1, True]},
            "Parameter 'weights' element at index 1 expects a number value (got true).",
            {"parameter": "weights", "value": True, "rule": "type: number", "index": 1},
        ),
        (
            {"weights": [0.5, "1"]},
            "Parameter 'weights' element at index 1 expects a number value (got \"1\").",
            {"parameter": "weights", "value": "1", "rule": "type: number", "index": 1},
        ),
        (
            {"counts": [1, 2.5]},
            "Parameter 'counts' element at index 1 expects an integer value (got 2.5).",
            {"parameter": "counts", "value": 2.5, "rule": "type: integer", "index": 1},
        ),
        (
            {"counts": "[1, 101]"},
            "Parameter 'counts' element at index 1 value 101 exceeds maximum 100.",
            {"parameter": "counts", "value": 101, "rule": "maximum: 100", "index": 1},
        ),
        (
            {"counts": [-1]},
            "Parameter 'counts' element at index 0 value -1 is below minimum 0.",
            {"parameter": "counts", "value": -1, "rule": "minimum: 0", "index": 0},
        ),
    ],
)
def test_bad_override_is_parameter_invalid(
    template: Template, overrides: dict[str, Any], message: str, details: dict[str, Any]
) -> None:
    """Wrong JSON type or out of the declared range: the message names parameter, value, rule."""
    error = _refused(template, overrides)
    assert error.message == message
    assert error.details == details


def test_long_values_are_shortened_in_message_and_details(template: Template) -> None:
    """A huge value is cut to 60 characters; the error stays small."""
    error = _refused(template, {"bins": "x" * 10_000})
    shown = '"' + "x" * 58 + "…"
    assert error.message == f"Parameter 'bins' expects an integer value (got {shown})."
    assert error.details == {"parameter": "bins", "value": shown, "rule": "type: integer"}
    error = _refused(template, {"bins": 10**30})
    assert error.message == (
        "Parameter 'bins' value 1000000000000000000000000000000 exceeds maximum 72."
    )
    assert error.details["value"] == "1000000000000000000000000000000"


@pytest.mark.parametrize(
    "overrides",
    [
        {"bins": 6},
        {"bins": 72},
        {"bins": 12.0},
        {"rate": 0},
        {"rate": 1},
        {"rate": 0.25, "unbounded": -1e9},
        {"enabled": False},
        {"label": ""},
        {"counts": [0, 100]},
        {"counts": [2.0]},
        {"counts": "[3, 4]"},
        {"weights": [0.5, -3, 1e6]},
        {"weights": []},
        {"undeclared": "anything"},
    ],
)
def test_good_overrides_pass(template: Template, overrides: dict[str, Any]) -> None:
    """Bounds are inclusive; 12.0 is an integer; undeclared names are the caller's concern."""
    check_overrides(template, overrides)


def test_the_first_bad_override_is_reported(template: Template) -> None:
    """Overrides are checked in request order."""
    error = _refused(template, {"rate": 0.5, "label": 1, "bins": "x"})
    assert error.details["parameter"] == "label"


def test_template_defaults_are_not_checked() -> None:
    """Only request values are checked: an out-of-range default is upstream's business."""
    text = TEMPLATE.replace("default: 12", "default: 500")
    check_overrides(load_template(text), {})


# --- through orchestrate ---------------------------------------------------------------------

FIXED = datetime(2025, 6, 1, 12, 0, 0, tzinfo=UTC)

GRID_TEMPLATE = """\
schemaVersion: 1
metadata: {id: ov-grid, title: Grid, version: 1.0.0}
window: {start: 2025-01-01T00:00:00Z, timezone: UTC}
grid:
  bins: ${bins}
  binSize: 5
  binUnit: minutes
parameters:
  - name: bins
    type: integer
    minimum: 2
    maximum: 8
    default: 4
topology:
  nodes:
    - id: Desk
      kind: service
      semantics: {arrivals: arrivals, served: served, errors: errors}
  edges: []
nodes:
  - id: arrivals
    kind: expr
    expr: "10 + 0"
  - id: served
    kind: expr
    expr: "arrivals * 0.8"
  - id: errors
    kind: expr
    expr: "arrivals - served"
outputs:
  - series: arrivals
"""


@pytest.fixture(name="roots")
def _roots(tmp_path: Path) -> Roots:
    templates, runs, telemetry = (tmp_path / n for n in ("templates", "runs", "telemetry"))
    for folder in (templates, runs, telemetry):
        folder.mkdir()
    (templates / "grid.yaml").write_text(GRID_TEMPLATE)
    return Roots(runs=runs, telemetry=telemetry, templates=(templates,))


def _orchestrate(roots: Roots, body: dict[str, Any]) -> Any:
    request = RunRequest.model_validate_json(json.dumps(body))
    return orchestrate(request, roots, request_id="ov-1", clock=lambda: FIXED)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("abc", "Parameter 'bins' expects an integer value (got \"abc\")."),
        (6.5, "Parameter 'bins' expects an integer value (got 6.5)."),
        (100, "Parameter 'bins' value 100 exceeds maximum 8."),
    ],
)
def test_orchestrate_refuses_a_bad_override_before_writing(
    roots: Roots, value: Any, message: str
) -> None:
    """parameter_invalid (not template_invalid), and nothing under the runs root."""
    body = {"templateId": "ov-grid", "mode": "simulation", "parameters": {"bins": value}}
    result = _orchestrate(roots, body)
    assert result.state is State.FAILED
    assert (result.error.code, result.error.message) == (ErrorCode.PARAMETER_INVALID, message)
    assert result.error.details["parameter"] == "bins"
    assert list(roots.runs.iterdir()) == []


def test_orchestrate_runs_an_in_range_override(roots: Roots) -> None:
    """The same template with a good value simulates."""
    body = {"templateId": "ov-grid", "mode": "simulation", "parameters": {"bins": 8}}
    result = _orchestrate(roots, body)
    assert result.state is State.SUCCEEDED
    assert result.run is not None


REAL = real_template_paths()


def _edge_overrides(template: Template, at: float) -> dict[str, Any]:
    """Every ranged number at ``at`` of its range (integers rounded), arrays fitted to bins."""
    overrides: dict[str, Any] = {}
    for spec in template.parameters:
        if spec.type not in ("integer", "number") or spec.minimum is None or spec.maximum is None:
            continue
        value = spec.minimum + (spec.maximum - spec.minimum) * at
        overrides[spec.name] = round(value) if spec.type == "integer" else value
    bins = overrides.get("bins")
    for spec in template.parameters:
        if spec.type == "array" and isinstance(spec.default, list) and bins is not None:
            overrides[spec.name] = [spec.default[i % len(spec.default)] for i in range(bins)]
    return overrides


@pytest.mark.parametrize("path", REAL, ids=[p.stem for p in REAL])
@pytest.mark.parametrize("at", [0.0, 0.75, 1.0])
def test_real_templates_accept_in_range_overrides(path: Path, at: float, tmp_path: Path) -> None:
    """Declared bounds (inclusive) pass the check and a dry-run plan of every real template."""
    template = load_template(path)
    overrides = _edge_overrides(template, at)
    check_overrides(template, overrides)
    templates, runs, telemetry = (tmp_path / n for n in ("templates", "runs", "telemetry"))
    for folder in (templates, runs, telemetry):
        folder.mkdir()
    (templates / path.name).write_bytes(path.read_bytes())
    roots = Roots(runs=runs, telemetry=telemetry, templates=(templates,))
    body = {
        "templateId": template.id,
        "mode": "simulation",
        "parameters": overrides,
        "rng": {"kind": "pcg32", "seed": 7},
        "options": {"dryRun": True},
    }
    result = _orchestrate(roots, body)
    assert result.state is State.SUCCEEDED, result.error
