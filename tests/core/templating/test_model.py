"""Template -> model generation: synthesis, profiles, outputs, provenance (§4, §16.3)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml

from flowdrop.core.engine import evaluate, generate_model, load_template
from flowdrop.core.errors import ErrorCode, FlowdropError

BASE = """\
schemaVersion: 1
generator: flowtime-sim
metadata: {id: gen, title: Gen, version: 1.0.0}
window: {start: 2025-01-01T00:00:00Z, timezone: UTC}
parameters:
  - name: bins
    type: integer
    default: 3
grid: {bins: ${bins}, binSize: 5, binUnit: minutes}
topology:
  nodes:
    - id: HubQueue
      kind: serviceWithBuffer
      semantics: {arrivals: arrivals, served: served, errors: lost, queueDepth: self}
      initialCondition: {queueDepth: 2}
nodes:
  - id: arrivals
    kind: const
    values: [10, 10, 10]
  - id: served
    kind: expr
    expr: "MIN(arrivals, 8)"
  - id: lost
    kind: expr
    expr: "0"
outputs:
  - series: served
    as: served.csv
"""
NOW = datetime(2026, 5, 4, 7, 16, 46, 123456, tzinfo=UTC)


def test_queue_synthesis_and_semantics_outputs() -> None:
    """queueDepth: self -> hidden hub_queue_queue; semantics series are auto-added to outputs."""
    model = generate_model(load_template(BASE), {}, now=NOW)
    queue = model.nodes[-1]
    assert queue == {
        "id": "hub_queue_queue",
        "kind": "serviceWithBuffer",
        "inflow": "arrivals",
        "outflow": "served",
        "loss": "lost",
        "metadata": {"graph.hidden": "true"},
    }
    assert model.topology["nodes"][0]["semantics"]["queueDepth"] == "hub_queue_queue"
    assert [o["series"] for o in model.outputs] == ["served", "arrivals", "lost", "hub_queue_queue"]
    assert evaluate(model)["hub_queue_queue"].tolist() == [4, 6, 8]


def test_explicit_queue_id_is_honoured() -> None:
    """A queueDepth naming a missing node becomes that node's id."""
    text = BASE.replace("queueDepth: self}", "queueDepth: dispatch_queue_depth}")
    model = generate_model(load_template(text), {})
    assert "dispatch_queue_depth" in model.node_ids


def test_model_document_shape_and_yaml_round_trip() -> None:
    """Field order, grid.start from window.start, provenance; to_yaml parses back to the document."""
    model = generate_model(load_template(BASE), {"bins": 3}, now=NOW)
    assert list(model.document) == [
        "schemaVersion",
        "grid",
        "nodes",
        "outputs",
        "topology",
        "provenance",
    ]
    assert model.document["grid"] == {
        "bins": 3,
        "binSize": 5,
        "binUnit": "minutes",
        "start": "2025-01-01T00:00:00Z",
    }
    provenance = model.provenance
    assert provenance["generator"] == "flowtime-sim/0.6.0"
    assert provenance["generatedAt"] == "2026-05-04T07:16:46.1234560Z"
    assert provenance["parameters"] == {"bins": 3}
    assert len(provenance["modelId"]) == 64
    assert yaml.safe_load(model.to_yaml()) == model.document
    assert (model.grid.bins, model.grid.bin_minutes) == (3, 5)


def test_inline_profile_expands_pmf_to_const() -> None:
    """pmf [20,40]/[0.5,0.5] with weights [0.5,1.5,1.0] -> const [15,45,30] (§16.3)."""
    text = BASE.replace(
        '  - id: lost\n    kind: expr\n    expr: "0"\n',
        "  - id: lost\n    kind: pmf\n    pmf: {values: [20, 40], probabilities: [0.5, 0.5]}\n"
        "    profile: {kind: inline, weights: [0.5, 1.5, 1.0]}\n",
    )
    node = next(n for n in generate_model(load_template(text), {}).nodes if n["id"] == "lost")
    assert node["kind"] == "const"
    assert node["values"] == pytest.approx([15, 45, 30], abs=1e-6)
    assert node["metadata"] == {
        "origin.kind": "pmf",
        "profile.kind": "inline",
        "pmf.expected": "30",
    }


def test_builtin_profile_keeps_mean_and_exact_values() -> None:
    """weekday-office, 12 bins, E=80: mean 80 ± 0.01, derived exact values (§16.3)."""
    text = (
        BASE.replace("default: 3", "default: 12")
        .replace("values: [10, 10, 10]", "values: [10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10]")
        .replace(
            '  - id: lost\n    kind: expr\n    expr: "0"\n',
            "  - id: lost\n    kind: pmf\n    pmf: {values: [50, 100], probabilities: [0.4, 0.6]}\n"
            "    profile: {kind: builtin, name: weekday-office}\n",
        )
    )
    node = next(n for n in generate_model(load_template(text), {}).nodes if n["id"] == "lost")
    assert node["values"] == [
        21.729016032694126, 18.2081106570261, 23.13737818296131, 49.79566174159071,
        104.62118830556405, 145.8660798491042, 153.91386356491677, 133.79440427538492,
        118.70480980823656, 96.57340458975168, 57.94404275385074, 35.7120402389187,
    ]  # fmt: skip
    assert sum(node["values"]) / 12 == pytest.approx(80, abs=0.01)
    assert node["metadata"]["profile.name"] == "weekday-office"


def test_sink_synthesis_serves_arrivals_minus_errors() -> None:
    """SinkNodeTemplateTests: arrivals [10,10,10], errors [2,0,5] -> served [8,10,5]."""
    text = BASE.replace(
        "    - id: HubQueue\n      kind: serviceWithBuffer\n"
        "      semantics: {arrivals: arrivals, served: served, errors: lost, queueDepth: self}\n"
        "      initialCondition: {queueDepth: 2}\n",
        "    - id: Terminal\n      kind: sink\n      nodeRole: sink\n"
        "      semantics: {arrivals: arrivals, errors: lost}\n",
    ).replace('expr: "0"', 'expr: "PULSE(3, 0, 2) + PULSE(3, 2, 5)"')
    model = generate_model(load_template(text), {})
    assert model.topology["nodes"][0]["semantics"]["served"] == "terminal_served"
    assert evaluate(model)["terminal_served"].tolist() == [8, 10, 5]


def test_sink_with_different_served_is_rejected() -> None:
    """A sink must serve exactly its arrivals when it has no errors."""
    text = BASE.replace(
        "kind: serviceWithBuffer\n      semantics: {arrivals: arrivals, served: served, errors: lost, queueDepth: self}",
        "kind: sink\n      semantics: {arrivals: arrivals, served: served}",
    )
    with pytest.raises(FlowdropError) as caught:
        generate_model(load_template(text), {})
    assert caught.value.message == (
        "Topology node 'HubQueue' of kind sink must map semantics.served to the same series as "
        "semantics.arrivals."
    )


def test_transportation_arrivals_north_profile(flowtime_templates: Path) -> None:
    """arrivals_north = 16.9 x hub-rush-hour: bin 0 and bin 100 (§5 derived)."""
    template = load_template(flowtime_templates / "transportation-basic.yaml")
    node = next(n for n in generate_model(template, {}).nodes if n["id"] == "arrivals_north")
    assert node["metadata"]["pmf.expected"] == "16.899999999999999"
    assert float(node["metadata"]["pmf.expected"]) == 16.9
    assert node["values"][0] == 4.4718853362734166
    assert node["values"][100] == 31.303197353913916


@pytest.mark.parametrize(
    ("overrides", "code", "message"),
    [
        ({"bins": 4}, ErrorCode.TEMPLATE_INVALID, "ConstSeriesNode"),
        ({"bins": 0}, ErrorCode.TEMPLATE_INVALID, "Grid bins must be greater than zero."),
        ({"bins": 20000}, ErrorCode.TEMPLATE_INVALID, "Grid bins must be between 1 and 10000."),
        (
            {"bins": "x"},
            ErrorCode.TEMPLATE_INVALID,
            'Template failed schema validation: #/grid/bins: Value is "string" but should be "integer"',
        ),
    ],
)
def test_grid_parameter_errors(overrides: dict[str, object], code: ErrorCode, message: str) -> None:
    """Bad grid values fail generation (or, for const length, evaluation)."""
    with pytest.raises(FlowdropError) as caught:
        evaluate(generate_model(load_template(BASE), overrides))
    assert caught.value.code is code
    assert caught.value.message.startswith(message)


def test_const_length_check_names_parameter_and_node() -> None:
    """An array parameter feeding const values must have grid.bins items (§1.4)."""
    text = BASE.replace("values: [10, 10, 10]", "values: ${pattern}").replace(
        "    default: 3\n",
        "    default: 3\n  - name: pattern\n    type: array\n    default: [1, 2]\n",
    )
    with pytest.raises(FlowdropError) as caught:
        generate_model(load_template(text), {})
    assert caught.value.code is ErrorCode.PARAMETER_INVALID
    assert caught.value.message == (
        "Parameter 'pattern' provides 2 values but grid.bins is 3; const node 'arrivals' "
        "requires matching length."
    )
    assert caught.value.details == {"path": "parameters.pattern", "value": 2}


def test_set_values_turns_node_into_const() -> None:
    """Telemetry replay injects captured series by overwriting node values."""
    model = generate_model(load_template(BASE), {})
    clone = model.copy()
    clone.set_values("served", [1, 2, 3])
    assert evaluate(clone)["served"].tolist() == [1, 2, 3]
    assert evaluate(model)["served"].tolist() == [8, 8, 8]
    with pytest.raises(FlowdropError) as caught:
        clone.set_values("nope", [1])
    assert caught.value.message == "Node 'nope' does not exist in the model."


def test_unsupported_mode() -> None:
    """Only simulation and telemetry modes exist."""
    with pytest.raises(FlowdropError) as caught:
        generate_model(load_template(BASE), {}, mode="replay")
    assert (
        caught.value.message
        == "Unsupported template mode 'replay'. Expected 'simulation' or 'telemetry'."
    )


def test_real_templates_synthesise_expected_queue_ids(flowtime_templates: Path) -> None:
    """TemplateParserTests-style ids (the dlq here is AirportStrandedDlq); queues are hidden."""
    expectations = {
        "transportation-basic.yaml": ["hub_queue_queue", "airport_stranded_dlq_queue"],
        "warehouse-picker-waves.yaml": ["picker_wave_queue"],
    }
    for name, queue_ids in expectations.items():
        model = generate_model(load_template(flowtime_templates / name), {})
        nodes = {n["id"]: n for n in model.nodes}
        for queue_id in queue_ids:
            assert nodes[queue_id]["kind"] == "serviceWithBuffer"
            assert nodes[queue_id]["metadata"] == {"graph.hidden": "true"}
    classes = generate_model(
        load_template(flowtime_templates / "transportation-basic-classes.yaml"), {}
    )
    assert any(n["id"].endswith("_dispatch_queue_depth") for n in classes.nodes)
