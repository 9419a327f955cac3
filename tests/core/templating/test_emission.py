"""Emission of model nodes and topology (§4.1)."""

from __future__ import annotations

from flowdrop.core.templating.emission import emit_node, emit_topology


def test_pmf_without_profile_stays_pmf_and_drops_authoring_keys() -> None:
    """source, dependencies and unknown keys are not emitted."""
    node = {
        "id": "p",
        "kind": "pmf",
        "pmf": {"values": [1, 2], "probabilities": [0.5, 0.5]},
        "source": "file://x.csv",
        "policy": "repeat",
    }
    assert emit_node(node, 3, "nodes[0]") == {
        "id": "p",
        "kind": "pmf",
        "pmf": {"values": [1, 2], "probabilities": [0.5, 0.5]},
    }


def test_topology_semantics_order_and_renames() -> None:
    """served is always emitted, blank errors dropped, external_demand -> externalDemand."""
    topology = {
        "nodes": [
            {
                "id": "A",
                "kind": "service",
                "semantics": {
                    "external_demand": "d",
                    "arrivals": "a",
                    "errors": " ",
                    "slaMin": None,
                },
                "initialCondition": {"queueDepth": None},
            }
        ],
        "edges": [{"from": "A", "to": "B"}],
    }
    assert emit_topology(topology) == {
        "nodes": [
            {
                "id": "A",
                "kind": "service",
                "semantics": {"arrivals": "a", "served": "", "externalDemand": "d"},
            }
        ],
        "edges": [{"from": "A", "to": "B", "weight": 1.0}],
    }
