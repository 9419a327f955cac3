"""Template-side synthesis: snake-case ids, hidden queues, sink served series, outputs (§4)."""

from __future__ import annotations

from typing import Any

import pytest

from flowdrop.core.templating.synthesis import semantics_outputs, snake, synthesize_queues


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("IngressQueue", "ingress_queue"),
        ("HubQueue", "hub_queue"),
        ("PickerWave", "picker_wave"),
        ("API_Gateway", "a_p_i_gateway"),
        ("AirportDlq", "airport_dlq"),
        ("My Node-2", "my_node_2"),
    ],
)
def test_snake(name: str, expected: str) -> None:
    """Upstream snake-casing of topology ids (§4.4)."""
    assert snake(name) == expected


def test_queue_ids_avoid_collisions_case_insensitively() -> None:
    """An existing HUB_QUEUE_QUEUE node pushes the synthesized id to hub_queue_queue_1."""
    root: dict[str, Any] = {
        "nodes": [{"id": "a"}, {"id": "s"}, {"id": "HUB_QUEUE_QUEUE"}],
        "topology": {
            "nodes": [
                {"id": "HubQueue", "kind": "queue", "semantics": {"arrivals": "a", "served": "s"}}
            ]
        },
    }
    synthesize_queues(root)
    assert root["nodes"][-1]["id"] == "hub_queue_queue_1"
    assert root["topology"]["nodes"][0]["semantics"]["queueDepth"] == "hub_queue_queue_1"


def test_semantics_outputs_are_appended_once() -> None:
    """Semantics series not already output (case-insensitive) are appended without ``as``."""
    root = {
        "outputs": [{"series": "Served", "as": "s.csv"}],
        "topology": {
            "nodes": [{"semantics": {"arrivals": "a", "served": "served", "capacity": "a"}}]
        },
    }
    assert semantics_outputs(root) == [{"series": "Served", "as": "s.csv"}, {"series": "a"}]
