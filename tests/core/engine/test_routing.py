"""Router volumes (§9.5): class routes first, then weight routes over the remainder."""

from __future__ import annotations

import numpy as np

from flowdrop.core.engine.graph import Graph, Node
from flowdrop.core.engine.routing import router_overrides


def graph(routes: list[tuple[str, tuple[str, ...], float]]) -> Graph:
    router = Node("r", "router", inputs=["src"], queue="src", routes=routes)
    return Graph(2, {"r": router}, ["r"], [], {}, [router])


def test_class_routes_accumulate_and_weights_split_the_rest() -> None:
    """Two routes to one target add up; weights are normalised by their sum."""
    series = {"src": np.array([10.0, 20.0])}
    classes = {
        "src": {"A": np.array([2.0, 4.0]), "B": np.array([3.0, 6.0]), "C": np.array([5.0, 10.0])}
    }
    routes = [("x", ("A",), 1.0), ("x", ("B",), 1.0), ("y", (), 3.0), ("z", (), 1.0)]
    volumes = router_overrides(graph(routes), series, classes)
    assert volumes["x"].tolist() == [5, 10]
    assert volumes["y"].tolist() == [3.75, 7.5]
    assert volumes["z"].tolist() == [1.25, 2.5]


def test_non_positive_weight_sum_splits_evenly() -> None:
    """When weights sum to <= 0 the count is used instead."""
    volumes = router_overrides(
        graph([("x", (), 0.0), ("y", (), 0.0)]), {"src": np.array([4.0, 8.0])}, {}
    )
    assert volumes["x"].tolist() == [0, 0]
    assert volumes["y"].tolist() == [0, 0]
