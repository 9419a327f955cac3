"""Hostile templates and parameters: only FlowdropError ever escapes the engine."""

from __future__ import annotations

import copy
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flowdrop.core.engine import evaluate, generate_model, load_template
from flowdrop.core.errors import FlowdropError
from flowdrop.core.templating.yamltext import dump

BASE: dict[str, Any] = yaml.safe_load(
    """\
schemaVersion: 1
generator: flowtime-sim
metadata: {id: fuzz, title: Fuzz, version: 1.0.0}
window: {start: "2025-01-01T00:00:00Z", timezone: UTC}
parameters:
  - {name: bins, type: integer, default: 4}
  - {name: pattern, type: array, default: [1, 2, 3, 4]}
grid: {bins: 4, binSize: 5, binUnit: minutes}
classes: [{id: Gold}]
traffic:
  arrivals: [{nodeId: a, classId: Gold, pattern: {kind: constant, ratePerBin: 1}}]
topology:
  nodes:
    - id: Svc
      kind: serviceWithBuffer
      semantics: {arrivals: a, served: s, errors: z, queueDepth: self}
      initialCondition: {queueDepth: 1}
      dispatchSchedule: {periodBins: 2, capacitySeries: s}
    - id: Sink
      kind: sink
      semantics: {arrivals: s}
  edges: [{id: e, from: "Svc:out", to: Sink, weight: 1}]
nodes:
  - {id: a, kind: const, values: [1, 2, 3, 4]}
  - {id: s, kind: expr, expr: "MIN(a, 2) + SHIFT(a, 1)"}
  - {id: z, kind: expr, expr: "0"}
  - id: p
    kind: pmf
    pmf: {values: [1, 2], probabilities: [0.5, 0.5]}
    profile: {kind: inline, weights: [1, 1, 1, 1]}
  - {id: r, kind: router, inputs: {queue: s}, routes: [{target: z, classes: [Gold]}]}
outputs: [{series: s}, {series: "*"}]
"""
)

junk = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(-5, 20_000),
        st.floats(allow_nan=True, allow_infinity=True),
        st.sampled_from(["", "self", "a", "s", "${bins}", "[1,2]", "file:x.csv", "MIN(a)", "-1"]),
    ),
    lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.dictionaries(st.sampled_from(["id", "kind", "values", "expr", "x"]), inner, max_size=3),
    ),
    max_leaves=6,
)


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [prefix] if prefix else []
    if isinstance(value, dict):
        for key, item in value.items():
            found.extend(_paths(item, (*prefix, key)))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found.extend(_paths(item, (*prefix, index)))
    return found


PATHS = _paths(BASE)


def _unanticipated(error: FlowdropError) -> bool:
    # The engine's last-resort message: the template had a shape no check anticipated.
    return error.message.startswith("Template could not be processed:")


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.sampled_from(PATHS), junk), min_size=1, max_size=3))
def test_mutated_templates_raise_only_flowdrop_errors(
    mutations: list[tuple[tuple[Any, ...], Any]],
) -> None:
    """Replace one to three values anywhere in a valid template: a model or a FlowdropError."""
    document = copy.deepcopy(BASE)
    for path, value in mutations:
        target: Any = document
        try:
            for key in path[:-1]:
                target = target[key]
            target[path[-1]] = value
        except (KeyError, IndexError, TypeError):
            continue
    try:
        evaluate(generate_model(load_template(dump(document)), {}))
    except FlowdropError as error:
        assert not _unanticipated(error), error.message


@settings(max_examples=100, deadline=None)
@given(st.dictionaries(st.sampled_from(["bins", "pattern", "other"]), junk, max_size=3))
def test_hostile_parameters_raise_only_flowdrop_errors(parameters: dict[str, Any]) -> None:
    """Any parameter values: a model or a FlowdropError."""
    text = (
        dump(BASE)
        .replace("bins: 4, ", "bins: ${bins}, ")
        .replace("  bins: 4\n", "  bins: ${bins}\n")
    )
    try:
        evaluate(generate_model(load_template(text), parameters))
    except FlowdropError as error:
        assert not _unanticipated(error), error.message


def test_unanticipated_shapes_still_become_flowdrop_errors() -> None:
    """The last-resort net turns a stray TypeError into TEMPLATE_INVALID, not a traceback."""
    from flowdrop.core.templating.model import unprocessable

    error = unprocessable(TypeError("boom"))
    assert error.code.value == "template_invalid"
    assert error.message == "Template could not be processed: TypeError: boom"
    assert error.details == {"error": "TypeError"}
