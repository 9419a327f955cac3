"""Edge series (§9.9): throughput split by weight, effort attempts, terminal failures, retry
volumes and per-class variants, in upstream's materializer order."""

from __future__ import annotations

from typing import Any

from flowdrop.core.engine.contributions import build_contributions
from flowdrop.core.engine.edges import edge_key, materialize_edges, normalize_part, shared_arrivals
from flowdrop.core.engine.evaluation import evaluate
from flowdrop.core.templating.model import Model


def run(edges: list[dict[str, Any]]) -> dict[str, list[float]]:
    sem = {"arrivals": "arr", "served": "srv", "errors": "err", "attempts": "att"}
    model = Model(
        {
            "schemaVersion": 1,
            "grid": {"bins": 2, "binSize": 1, "binUnit": "hours"},
            "nodes": [
                {"id": "arr", "kind": "const", "values": [10, 10]},
                {"id": "srv", "kind": "const", "values": [8, 4]},
                {"id": "err", "kind": "const", "values": [2, 6]},
                {"id": "att", "kind": "const", "values": [12, 12]},
            ],
            "topology": {
                "nodes": [
                    {"id": "A", "kind": "service", "semantics": sem},
                    {
                        "id": "B",
                        "kind": "service",
                        "semantics": {"arrivals": "srv", "served": "srv"},
                    },
                    {
                        "id": "C",
                        "kind": "service",
                        "semantics": {"arrivals": "srv", "served": "srv"},
                    },
                ],
                "edges": edges,
            },
        }
    )
    return {k: v.tolist() for k, v in evaluate(model).edges.items()}


def test_throughput_edges_split_served_by_weight() -> None:
    """Served 8 split 3:1 across two throughput edges; a non-out port is not a throughput edge."""
    result = run(
        [
            {"id": "a-b", "from": "A:out", "to": "B", "weight": 3},
            {"from": "A", "to": "C", "weight": 1},
            {"id": "ported", "from": "A:served", "to": "C"},
        ]
    )
    assert result == {"edge_a-b_flowVolume": [6, 3], "edge_A-_C_flowVolume": [2, 1]}


def test_effort_and_terminal_edges() -> None:
    """attemptsVolume = attempts x multiplier; failuresVolume = errors x weight."""
    result = run(
        [
            {
                "id": "dep",
                "from": "A",
                "to": "B",
                "type": "effort",
                "measure": "attempts",
                "multiplier": 0.5,
            },
            {
                "id": "dead",
                "from": "A",
                "to": "C",
                "type": "terminal",
                "measure": "errors",
                "weight": 2,
            },
        ]
    )
    assert result["edge_dep_attemptsVolume"] == [6, 6]
    assert result["edge_dep_flowVolume"] == [8, 4]
    assert result["edge_dead_failuresVolume"] == [4, 12]


def test_edge_key_normalisation() -> None:
    """Characters outside [A-Za-z0-9_.-] become '_' and are trimmed."""
    assert normalize_part(" hub->queue ") == "hub-_queue"
    assert edge_key("x y", "flowVolume") == "edge_x_y_flowVolume"


def materialized(
    edges: list[dict[str, Any]],
    *,
    echo: list[float] | None = None,
    traffic: bool = False,
) -> list[tuple[str, str, str | None, list[float]]]:
    """(edge id, metric, class, values) in materializer order."""
    nodes = [
        {"id": "gold", "kind": "const", "values": [6, 2]},
        {"id": "blue", "kind": "const", "values": [2, 2]},
        {"id": "srv", "kind": "expr", "expr": "gold + blue"},
        {"id": "echo", "kind": "const", "values": echo or [0, 0]},
        {"id": "fail", "kind": "const", "values": [1, 1]},
    ]
    target = {"arrivals": "srv", "served": "srv", "retryEcho": "echo"}
    document: dict[str, Any] = {
        "schemaVersion": 1,
        "grid": {"bins": 2, "binSize": 1, "binUnit": "hours"},
        "nodes": nodes,
        "topology": {
            "nodes": [
                {"id": "A", "kind": "service", "semantics": {"arrivals": "srv", "served": "srv",
                                                              "failures": "fail"}},
                {"id": "B", "kind": "service", "semantics": {"arrivals": "srv", "served": "srv"}},
                {"id": "T", "kind": "service", "semantics": target},
            ],
            "edges": edges,
        },
    }  # fmt: skip
    if traffic:
        document["traffic"] = {
            "arrivals": [
                {"nodeId": "gold", "classId": "Gold"},
                {"nodeId": "blue", "classId": "Blue"},
            ]
        }
    evaluation = evaluate(Model(document))
    assert evaluation.graph is not None
    classes = build_contributions(evaluation.graph, evaluation.series).classes
    items = materialize_edges(
        evaluation.graph.topology, evaluation.graph, evaluation.series, classes
    )
    return [(i.edge_id, i.metric, i.class_id, i.values.tolist()) for i in items]


def test_retry_volume_splits_positive_retry_by_incoming_flow_or_evenly() -> None:
    """Retry echo [4, 6] into T over two incoming throughput edges with equal flow splits evenly."""
    edges = [
        {"id": "a_t", "from": "A", "to": "T", "weight": 3},
        {"id": "b_t", "from": "B", "to": "T"},
    ]
    out = materialized(edges, echo=[4, 6])
    retry = {e: v for e, m, _, v in out if m == "retryVolume"}
    assert retry == {"a_t": [2.0, 3.0], "b_t": [2.0, 3.0]}  # flows 8:8 and 4:4
    assert [m for _, m, _, _ in out][-2:] == ["retryVolume", "retryVolume"]
    assert not [m for _, m, _, _ in materialized(edges, echo=[0, 0]) if m == "retryVolume"]


def test_per_class_variants_follow_each_total() -> None:
    out = materialized([{"id": "a_b", "from": "A", "to": "B"}], traffic=True)
    assert out == [
        ("a_b", "flowVolume", None, [8.0, 4.0]),
        ("a_b", "flowVolume", "Gold", [6.0, 2.0]),
        ("a_b", "flowVolume", "Blue", [2.0, 2.0]),
    ]


def test_effort_edges_split_among_themselves_not_with_throughput_edges() -> None:
    """Upstream groups throughput and effort edges separately: each group splits served alone."""
    out = materialized(
        [
            {"id": "a_b", "from": "A", "to": "B"},
            {"id": "a_t", "from": "A", "to": "T", "type": "effort"},
        ]
    )
    flows = {e: v for e, m, _, v in out if m == "flowVolume"}
    assert flows == {"a_b": [8.0, 4.0], "a_t": [8.0, 4.0]}


def test_exhausted_failures_edges_need_the_series() -> None:
    """A terminal edge measuring a semantics field the node lacks writes nothing."""
    edges = [
        {"id": "x", "from": "A", "to": "B", "type": "terminal", "measure": "exhaustedFailures"},
        {"id": "f", "from": "A", "to": "B", "type": "terminal", "measure": "failures"},
    ]
    assert [(e, m) for e, m, _, _ in materialized(edges)] == [("f", "failuresVolume")]


def test_shared_arrivals_are_detected() -> None:
    topology = {"nodes": [{"id": "A", "semantics": {"arrivals": "x"}},
                          {"id": "B", "semantics": {"arrivals": "X"}}]}  # fmt: skip
    assert shared_arrivals(topology) == [("x", ["A", "B"])]
