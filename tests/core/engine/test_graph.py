"""Graph construction: engine-side synthesis, topological order, feedback slices (§7, §8)."""

from __future__ import annotations

from typing import Any

import pytest

from flowdrop.core.engine.graph import build_graph, compile_document, own_semantics, retry_kernel
from flowdrop.core.errors import ErrorCode, FlowdropError
from flowdrop.core.templating.model import Model


def model(nodes: list[dict[str, Any]], topology: dict[str, Any] | None = None) -> Model:
    return Model(
        {
            "schemaVersion": 1,
            "grid": {"bins": 3, "binSize": 1, "binUnit": "hours"},
            "nodes": nodes,
            "topology": topology or {"nodes": []},
        }
    )


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (None, [0.0, 0.6, 0.3, 0.1]),
        ([], [0.0, 0.6, 0.3, 0.1]),
        ([-1.0, 0.5, float("nan")], [0.0, 0.5, 0.0]),
        ([1.0, 1.0], [0.5, 0.5]),
        ([0.01] * 40, [0.01] * 32),
    ],
)
def test_retry_kernel_policy(raw: list[float] | None, expected: list[float]) -> None:
    """Default kernel, negatives/non-finite -> 0, at most 32 taps, scaled when the sum exceeds 1."""
    assert retry_kernel(raw) == expected


def test_order_follows_insertion_among_ready_nodes() -> None:
    """Kahn's algorithm keeps model order among nodes that are ready together."""
    nodes = [
        {"id": "c", "kind": "expr", "expr": "a + b"},
        {"id": "b", "kind": "const", "values": [1, 1, 1]},
        {"id": "a", "kind": "const", "values": [1, 1, 1]},
        {"id": "d", "kind": "expr", "expr": "SHIFT(c, 1)"},
    ]
    graph = build_graph(model(nodes))
    assert graph.order == ["b", "a", "d", "c"]
    assert graph.slices == [["d", "c"]]


def test_feedback_slice_spans_from_lagged_reader_to_target() -> None:
    """An expr that SHIFT-reads a later node opens a contiguous bin-by-bin slice."""
    nodes = [
        {"id": "x", "kind": "const", "values": [1, 1, 1]},
        {"id": "a", "kind": "expr", "expr": "x + SHIFT(c, 1)"},
        {"id": "b", "kind": "expr", "expr": "a * 2"},
        {"id": "c", "kind": "expr", "expr": "b + 1"},
    ]
    graph = build_graph(model(nodes))
    assert graph.slices == [["a", "b", "c"]]


def test_feedback_slice_rejects_const_members() -> None:
    """Only expr and serviceWithBuffer nodes may sit inside a feedback slice."""
    nodes = [
        {"id": "a", "kind": "expr", "expr": "SHIFT(c, 1)"},
        {"id": "k", "kind": "const", "values": [1, 1, 1]},
        {"id": "c", "kind": "expr", "expr": "k + a"},
    ]
    with pytest.raises(FlowdropError) as caught:
        build_graph(model(nodes))
    assert caught.value.message == "Unsupported node type in feedback subgraph: const"


def test_compile_synthesises_queue_without_mutating_the_model() -> None:
    """queueDepth: self on a queue topology node gets <snake>_queue; the source doc is untouched."""
    source = model(
        [{"id": "i", "kind": "const", "values": [1, 1, 1]}],
        {
            "nodes": [
                {
                    "id": "Inbox",
                    "kind": "queue",
                    "semantics": {"arrivals": "i", "served": "i", "queueDepth": "self"},
                }
            ]
        },
    )
    compiled = compile_document(source.document)
    assert compiled["nodes"][-1]["id"] == "inbox_queue"
    assert compiled["topology"]["nodes"][0]["semantics"]["queueDepth"] == "inbox_queue"
    assert source.document["topology"]["nodes"][0]["semantics"]["queueDepth"] == "self"


def test_own_semantics_copies_what_compiling_and_writing_edit() -> None:
    """Node and constraint semantics (and their containers) are new; the rest is shared."""

    class Ordered(dict[str, Any]):
        pass

    aliases = {"queue": "Backlog"}
    semantics = Ordered(arrivals="i", aliases=aliases)
    topology = {
        "nodes": [{"id": "A", "semantics": semantics}, {"id": "B"}, "odd"],
        "constraints": [{"id": "C", "semantics": {"arrivals": "i"}}],
        "edges": [{"from": "A", "to": "B"}],
    }
    owned = own_semantics(topology)
    assert owned == topology
    first = owned["nodes"][0]["semantics"]
    assert first is not semantics and type(first) is Ordered and first["aliases"] is aliases
    assert owned["nodes"] is not topology["nodes"] and owned["nodes"][1] is not topology["nodes"][1]
    assert owned["constraints"][0]["semantics"] is not topology["constraints"][0]["semantics"]
    assert owned["edges"] is topology["edges"]
    first["arrivals"] = "j"
    owned["constraints"][0]["semantics"]["arrivals"] = "j"
    assert (
        semantics["arrivals"] == "i" and topology["constraints"][0]["semantics"]["arrivals"] == "i"
    )
    assert own_semantics(None) is None


@pytest.mark.parametrize(
    ("node", "message"),
    [
        ({"id": "n", "kind": "const"}, "Node n: const nodes require values array"),
        ({"id": "n", "kind": "wobble"}, "Unknown node kind: wobble"),
        (
            {"id": "n", "kind": "expr", "expr": "1 +"},
            "Node n: error parsing expression '1 +': Parse error at position 3: Unexpected end of expression",
        ),
        (
            {"id": "n", "kind": "serviceWithBuffer", "inflow": "x"},
            "Node n: serviceWithBuffer nodes require inflow and outflow",
        ),
    ],
)
def test_node_construction_errors(node: dict[str, Any], message: str) -> None:
    """Malformed model nodes are TEMPLATE_INVALID with ModelParser's wording."""
    with pytest.raises(FlowdropError) as caught:
        build_graph(model([node]))
    assert caught.value.code is ErrorCode.TEMPLATE_INVALID
    assert caught.value.message == message


def test_duplicate_node_ids_are_rejected() -> None:
    """Two nodes with one id cannot both be added to the graph."""
    nodes = [{"id": "a", "kind": "const", "values": [1, 1, 1]}] * 2
    with pytest.raises(FlowdropError) as caught:
        build_graph(model(nodes))
    assert caught.value.message == "An item with the same key has already been added. Key: a"
