"""Edge series (§9.9): throughput split by weight, effort attempts, terminal failures."""

from __future__ import annotations

from typing import Any

from flowdrop.core.engine.edges import edge_key, normalize_part
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
