"""Run warnings (§12): negatives, conservation, queue mismatch, capacity."""

from __future__ import annotations

from typing import Any

from flowdrop.core.engine.evaluation import evaluate
from flowdrop.core.engine.invariants import analyze
from flowdrop.core.templating.model import Model


def warnings_for(
    semantics: dict[str, Any], kind: str = "service", node_id: str = "N", **extra: Any
) -> list[dict[str, Any]]:
    nodes = [
        {"id": "arr", "kind": "const", "values": [10, 10, 10, 10, 10, 10, 10]},
        {"id": "srv", "kind": "const", "values": [12, 8, 8, 8, 12, 12, 12]},
        {"id": "neg", "kind": "const", "values": [0, -1, 0, 0, 0, 0, 0]},
        {"id": "cap", "kind": "const", "values": [5, 5, 5, 5, 5, 5, 5]},
        {"id": "q", "kind": "const", "values": [0, 0, 0, 0, 0, 0, 0]},
    ]
    topology = {"nodes": [{"id": node_id, "kind": kind, "semantics": semantics, **extra}]}
    model = Model(
        {
            "schemaVersion": 1,
            "grid": {"bins": 7, "binSize": 1, "binUnit": "hours"},
            "nodes": nodes,
            "topology": topology,
        }
    )
    return analyze(topology, evaluate(model))


def test_served_exceeding_arrivals_lists_first_five_bins() -> None:
    """Bins 0, 4, 5, 6 serve 12 > 10; the worst value is the first offending difference."""
    [warning] = warnings_for({"arrivals": "arr", "served": "srv"})
    assert warning == {
        "code": "served_exceeds_arrivals",
        "message": "Node 'N' serves more than arrives in 4 bin(s).",
        "nodeId": "N",
        "bins": [0, 4, 5, 6],
        "value": 2.0,
        "severity": "warning",
        "edgeIds": None,
    }


def test_negative_errors_and_capacity() -> None:
    """errors < 0 and served > capacity x parallelism are reported."""
    codes = [
        w["code"]
        for w in warnings_for(
            {"arrivals": "arr", "served": "cap", "errors": "neg", "capacity": "cap"}
        )
    ]
    assert codes == ["errors_negative"]
    codes = [
        w["code"] for w in warnings_for({"arrivals": "srv", "served": "arr", "capacity": "cap"})
    ]
    assert codes == ["served_exceeds_arrivals", "served_exceeds_capacity"]


def test_queue_depth_mismatch() -> None:
    """A queueDepth series that ignores arrivals - served is flagged (buffered: no served>arrivals)."""
    codes = [
        w["code"]
        for w in warnings_for(
            {"arrivals": "arr", "served": "srv", "queueDepth": "q"}, "serviceWithBuffer"
        )
    ]
    assert codes == ["queue_depth_mismatch"]


def test_consistent_node_has_no_warnings() -> None:
    """served <= arrivals, no negatives -> nothing to say."""
    assert warnings_for({"arrivals": "arr", "served": "cap"}) == []


def test_braces_in_a_node_id_stay_literal_in_messages() -> None:
    """Node ids are data: a '{…}' in one is never taken for a message placeholder."""
    [warning] = warnings_for({"arrivals": "arr", "served": "srv"}, node_id="N{count}{0}")
    assert warning["message"] == "Node 'N{count}{0}' serves more than arrives in 4 bin(s)."
