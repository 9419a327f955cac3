"""Per-class decomposition (§9.8): tagged nodes, expression propagation, queues, rescaling."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from flowdrop.core.engine.classes import rescale
from flowdrop.core.engine.evaluation import evaluate
from flowdrop.core.templating.model import Model


def classed(nodes: list[dict[str, Any]], bins: int = 2) -> Model:
    return Model(
        {
            "schemaVersion": 1,
            "grid": {"bins": bins, "binSize": 1, "binUnit": "hours"},
            "classes": [{"id": "A"}, {"id": "B"}],
            "traffic": {
                "arrivals": [{"nodeId": "a", "classId": "A"}, {"nodeId": "b", "classId": "B"}]
            },
            "nodes": [
                {"id": "a", "kind": "const", "values": [6, 2]},
                {"id": "b", "kind": "const", "values": [2, 2]},
                *nodes,
            ],
        }
    )


def split(model: Model, node: str) -> dict[str, list[float]]:
    return {c: v.tolist() for c, v in evaluate(model).classes[node].items()}


def test_sum_and_scaling_propagate_per_class() -> None:
    """a+b keeps each class; a product with an untagged operand scales every class."""
    model = classed([{"id": "t", "kind": "expr", "expr": "(a + b) * 0.5"}])
    assert split(model, "t") == {"A": [3, 1], "B": [1, 1]}


def test_min_takes_shares_of_the_winning_operand() -> None:
    """MIN(total, 4) scales the total's class mix down to 4."""
    model = classed(
        [
            {"id": "t", "kind": "expr", "expr": "a + b"},
            {"id": "m", "kind": "expr", "expr": "MIN(t, 4)"},
        ]
    )
    assert split(model, "m") == {"A": [3, 2], "B": [1, 2]}


def test_shift_applies_per_class() -> None:
    """SHIFT moves every class series."""
    model = classed([{"id": "s", "kind": "expr", "expr": "SHIFT(a + b, 1)"}])
    assert split(model, "s") == {"A": [0, 6], "B": [0, 2]}


def test_queue_runs_per_class_and_sums_to_total() -> None:
    """A queue's class depths follow the inflow mix and add up to the total."""
    nodes = [
        {"id": "t", "kind": "expr", "expr": "a + b"},
        {"id": "o", "kind": "const", "values": [4, 4]},
        {"id": "q", "kind": "serviceWithBuffer", "inflow": "t", "outflow": "o"},
    ]
    result = evaluate(classed(nodes))
    assert result["q"].tolist() == [4, 4]
    total = sum(v for v in result.classes["q"].values())
    assert np.allclose(total, result["q"])
    assert result.classes["q"]["A"][0] == pytest.approx(3.0)


def test_rescale_only_touches_mismatched_positive_bins() -> None:
    """Class sums are forced to the total where they are positive and differ by more than 1e-9."""
    classes = {"A": np.array([1.0, 0.0, 2.0]), "B": np.array([1.0, 0.0, 2.0])}
    fixed = rescale(classes, np.array([4.0, 5.0, 4.0]))
    assert fixed["A"].tolist() == [2.0, 0.0, 2.0]
    assert rescale({}, np.zeros(1)) == {}


def test_class_seeds_replace_a_nodes_decomposition_and_flow_downstream() -> None:
    """evaluate(class_seeds=...) takes the seeded split for that node; expressions follow it."""
    model = classed(
        [
            {"id": "t", "kind": "expr", "expr": "a + b"},
            {"id": "d", "kind": "expr", "expr": "t * 0.5"},
        ]
    )
    seeds = {"t": {"A": np.array([1.0, 3.0]), "B": np.array([7.0, 1.0])}}
    result = evaluate(model, class_seeds=seeds)
    assert {c: v.tolist() for c, v in result.classes["t"].items()} == {
        "A": [1, 3],
        "B": [7, 1],
    }
    assert {c: v.tolist() for c, v in result.classes["d"].items()} == {
        "A": [0.5, 1.5],
        "B": [3.5, 0.5],
    }
    assert split(model, "t") == {"A": [6, 2], "B": [2, 2]}
