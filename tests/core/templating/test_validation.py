"""TemplateValidator rules: first failure wins, FlowTime's messages, offending path in details."""

from __future__ import annotations

import pytest

from flowdrop.core.engine import generate_model, load_template
from flowdrop.core.errors import ErrorCode, FlowdropError

VALID = """\
schemaVersion: 1
generator: flowtime-sim
metadata: {id: v, title: V, version: 1.0.0}
window: {start: 2025-01-01T00:00:00Z, timezone: UTC}
grid: {bins: 2, binSize: 5, binUnit: minutes}
classes: [{id: Gold}]
traffic:
  arrivals:
    - {nodeId: a, classId: Gold, pattern: {kind: constant, ratePerBin: 1}}
rng: {kind: pcg32, seed: 1}
topology:
  nodes:
    - id: Svc
      kind: service
      semantics: {arrivals: a, served: s}
nodes:
  - id: a
    kind: const
    values: [1, 2]
  - id: s
    kind: expr
    expr: "a"
  - id: p
    kind: pmf
    pmf: {values: [1, 2], probabilities: [0.5, 0.5]}
outputs:
  - series: s
"""


def generate(text: str) -> None:
    generate_model(load_template(text), {})


def test_valid_template_generates() -> None:
    """The baseline is valid, so each case below fails for its own reason."""
    generate(VALID)


@pytest.mark.parametrize(
    ("old", "new", "message", "path"),
    [
        (
            "generator: flowtime-sim",
            "generator: other",
            "Template generator must be 'flowtime-sim'.",
            "generator",
        ),
        (
            "version: 1.0.0",
            "version: v1",
            "Template metadata.version 'v1' must be a semantic version (e.g., 1.0.0).",
            "metadata.version",
        ),
        ("title: V, ", "", "Template metadata.title is required.", "metadata.title"),
        (
            "timezone: UTC",
            "timezone: CET",
            "Template window.timezone must be 'UTC'.",
            "window.timezone",
        ),
        ("binSize: 5", "binSize: 0", "Grid binSize must be greater than zero.", "grid.binSize"),
        (
            "binUnit: minutes",
            "binUnit: ''",
            "Grid binUnit is required (e.g., 'minutes').",
            "grid.binUnit",
        ),
        ("  - id: p\n", "  - id: a\n", "Duplicate node id 'a' detected.", "nodes[2].id"),
        (
            "    kind: const\n",
            "    kind: Const\n",
            "Node 'a' has unsupported kind 'Const'.",
            "nodes[0].kind",
        ),
        (
            'expr: "a"',
            'expr: "b"',
            "Expression node 's' references unknown node 'b'.",
            "nodes[1].expr",
        ),
        ('expr: "a"', "expression: a", "Expression node 's' must define expr.", "nodes[1].expr"),
        (
            "probabilities: [0.5, 0.5]",
            "probabilities: [0.5, 0.6]",
            "PMF node 'p' probabilities must sum to 1.0 (received 1.1).",
            "nodes[2].pmf.probabilities",
        ),
        (
            "probabilities: [0.5, 0.5]",
            "probabilities: [0.5]",
            "PMF node 'p' values and probabilities must have the same length.",
            "nodes[2].pmf.probabilities",
        ),
        (
            "probabilities: [0.5, 0.5]",
            "probabilities: [1.5, -0.5]",
            "PMF node 'p' probabilities must be non-negative.",
            "nodes[2].pmf.probabilities",
        ),
        (
            "  - series: s\n",
            "  - series: zz\n",
            "Output references unknown series 'zz'.",
            "outputs[0].series",
        ),
        (
            "served: s}",
            "served: missing}",
            "Topology node 'Svc' semantics.served references unknown series 'missing'.",
            "topology.nodes[0].semantics.served",
        ),
        (
            "served: s}",
            "served: s, parallelism: 2}",
            "Topology node 'Svc' of kind service must not define semantics.parallelism.",
            "topology.nodes[0].semantics.parallelism",
        ),
        (
            "classId: Gold",
            "classId: Silver",
            "Class 'Silver' is not declared under classes.",
            "traffic.arrivals[0].classId",
        ),
        (
            "nodeId: a, classId: Gold,",
            "nodeId: a,",
            "Arrival targeting 'a' must declare classId because classes are defined.",
            "traffic.arrivals[0].classId",
        ),
        (
            "kind: pcg32",
            "kind: mt19937",
            "Unsupported RNG kind 'mt19937'. Expected 'pcg32'.",
            "rng.kind",
        ),
        ("seed: 1", "seed: ''", "RNG seed is required when rng block is specified.", "rng.seed"),
    ],
)
def test_validator_rules(old: str, new: str, message: str, path: str) -> None:
    """Each broken rule raises TEMPLATE_INVALID with the exact message and the offending path."""
    assert old in VALID
    with pytest.raises(FlowdropError) as caught:
        generate(VALID.replace(old, new, 1))
    assert caught.value.code is ErrorCode.TEMPLATE_INVALID
    assert caught.value.message == message
    assert caught.value.details["path"] == path


def test_edges_required_with_several_topology_nodes() -> None:
    """More than one topology node needs edges."""
    text = VALID.replace(
        "      semantics: {arrivals: a, served: s}\n",
        "      semantics: {arrivals: a, served: s}\n    - id: Two\n      kind: service\n"
        "      semantics: {arrivals: s, served: s}\n",
    )
    with pytest.raises(FlowdropError) as caught:
        generate(text)
    assert (
        caught.value.message
        == "Topology edges are required when more than one topology node exists."
    )


def test_queue_synthesis_needs_arrivals() -> None:
    """A buffered topology node without arrivals cannot get a queue."""
    text = VALID.replace(
        "kind: service\n      semantics: {arrivals: a, served: s}",
        "kind: queue\n      semantics: {served: s}",
    )
    with pytest.raises(FlowdropError) as caught:
        generate(text)
    assert caught.value.message == (
        "Topology node 'Svc' must define semantics.arrivals to synthesize queue behavior."
    )


def test_unknown_root_key_fails_schema_validation() -> None:
    """With schemaVersion present, unknown root keys are schema errors."""
    with pytest.raises(FlowdropError) as caught:
        generate(VALID + "profiles: []\n")
    assert caught.value.message == (
        "Template failed schema validation: #: Property 'profiles' has not been defined and the "
        "schema does not allow additional properties."
    )


def test_router_rules() -> None:
    """Routers need inputs.queue, routes and targets with classes or weight."""
    router = (
        "  - id: r\n    kind: router\n    inputs: {queue: a}\n    routes:\n      - {target: s}\n"
    )
    with pytest.raises(FlowdropError) as caught:
        generate(VALID.replace("outputs:", router + "outputs:"))
    assert (
        caught.value.message
        == "Router node 'r' route targeting 's' must specify classes or weight."
    )
    with pytest.raises(FlowdropError) as caught:
        generate(VALID.replace("outputs:", router.replace("{queue: a}", "{queue: q}") + "outputs:"))
    assert caught.value.message == "Router node 'r' references unknown queue 'q'."
