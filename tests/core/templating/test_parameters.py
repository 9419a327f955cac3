"""Parameter merging, formatting and textual substitution (§2)."""

from __future__ import annotations

import math
from typing import Any

import pytest

from flowdrop.core.engine import load_template
from flowdrop.core.errors import ErrorCode, FlowdropError
from flowdrop.core.templating.parameters import format_value, merge_parameters, substitute

TEMPLATE = """\
metadata: {id: p, title: P, version: 1.0.0}
parameters:
  - name: rate
    type: number
    default: 0.30
  - name: label
    type: string
    default: ""
  - name: counts
    type: array
    arrayOf: int
    minimum: 0
    maximum: 100
    default: [1, 2, 3]
  - name: weights
    type: array
"""


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (None, "null"),
        (True, "true"),
        (12, "12"),
        (2.0, "2"),
        (1e-05, "1E-05"),
        (0.3, "0.3"),
        ("", '""'),
        ("a b", '"a b"'),
        ("k:v", '"k:v"'),
        ("plain", "plain"),
        ("[1,2]", "[1,2]"),
        ("'q'", "'q'"),
        ([1, 2.5, "x"], "[1, 2.5, x]"),
        ({"b": 1, "a": "<"}, '{"b":1,"a":"\\u003C"}'),
    ],
)
def test_format_value(value: Any, text: str) -> None:
    """.NET-style formatting of each value kind (§2.2 step 2)."""
    assert format_value(value) == text


def test_defaults_are_raw_text_and_arrays_are_converted() -> None:
    """Scalar defaults keep their YAML text; array defaults become numbers; overrides win."""
    template = load_template(TEMPLATE)
    merged = merge_parameters(template, {"weights": "[0.5, 1]", "extra": 3})
    assert merged == {
        "rate": "0.30",
        "label": "",
        "counts": [1, 2, 3],
        "weights": [0.5, 1.0],
        "extra": 3,
    }


def test_substitution_unquotes_structured_values_and_keeps_unknown_placeholders() -> None:
    """Quoted placeholders of arrays lose their quotes; unknown ones stay."""
    text = "a: \"${xs}\"\nb: '${xs}'\nc: ${xs}\nd: ${r} ${missing}\n"
    assert substitute(text, {"xs": [1, 2], "r": 0.5}) == (
        "a: [1, 2]\nb: [1, 2]\nc: [1, 2]\nd: 0.5 ${missing}\n"
    )


@pytest.mark.parametrize(
    ("overrides", "message", "path"),
    [
        ({}, "Parameter 'weights' requires an array value.", "parameters.weights"),
        ({"weights": "abc"}, "Parameter 'weights' expects an array value.", "parameters.weights"),
        ({"weights": 5}, "Parameter 'weights' expects an array value.", "parameters.weights"),
        (
            {"weights": [1], "counts": [1.5]},
            "Parameter 'counts' element at index 0 must be an integer.",
            "parameters.counts[0]",
        ),
        (
            {"weights": [1], "counts": [1, -1]},
            "Parameter 'counts' element at index 1 (-1) is below minimum 0.",
            "parameters.counts[1]",
        ),
        (
            {"weights": [1], "counts": [101]},
            "Parameter 'counts' element at index 0 (101) exceeds maximum 100.",
            "parameters.counts[0]",
        ),
        (
            {"weights": ["x"]},
            "Parameter 'weights' element at index 0 must be numeric.",
            "parameters.weights[0]",
        ),
    ],
)
def test_array_parameter_errors(overrides: dict[str, Any], message: str, path: str) -> None:
    """Array parameters are checked element by element with upstream's messages."""
    with pytest.raises(FlowdropError) as caught:
        merge_parameters(load_template(TEMPLATE), overrides)
    assert caught.value.code is ErrorCode.PARAMETER_INVALID
    assert caught.value.message == message
    assert caught.value.details["path"] == path


def test_a_mapping_value_holding_an_infinity_is_parameter_invalid() -> None:
    """System.Text.Json cannot write Infinity either; found by test_robustness (hypothesis)."""
    with pytest.raises(FlowdropError) as caught:
        substitute("bins: ${bins}\n", {"bins": {"id": math.inf}})
    assert caught.value.code is ErrorCode.PARAMETER_INVALID
    assert caught.value.details == {"parameter": "bins"}
