"""Deserialisation-style type checks (what FlowTime reports as YAML parsing errors)."""

from __future__ import annotations

from typing import Any

import pytest

from flowdrop.core.errors import ErrorCode, FlowdropError
from flowdrop.core.templating.shapes import check_shapes


@pytest.mark.parametrize(
    ("root", "message", "path", "value"),
    [
        ({"nodes": 3}, "YAML parsing error: nodes must be a sequence.", "nodes", 3),
        (
            {"nodes": [{"kind": "const", "values": 100}]},
            "YAML parsing error: nodes[0].values must be a sequence.",
            "nodes[0].values",
            100,
        ),
        (
            {"nodes": [{"kind": "const", "values": [1, "x"]}]},
            "YAML parsing error: nodes[0].values[1] must be a number.",
            "nodes[0].values[1]",
            "x",
        ),
        (
            {"topology": {"nodes": [{"semantics": []}]}},
            "YAML parsing error: topology.nodes[0].semantics must be a mapping.",
            "topology.nodes[0].semantics",
            "list",
        ),
        (
            {"topology": {"edges": [{"weight": "heavy"}]}},
            "YAML parsing error: topology.edges[0].weight must be a number.",
            "topology.edges[0].weight",
            "heavy",
        ),
        (
            {"topology": {"nodes": [{"dispatchSchedule": {"periodBins": 1.5}}]}},
            "YAML parsing error: topology.nodes[0].dispatchSchedule.periodBins must be an integer.",
            "topology.nodes[0].dispatchSchedule.periodBins",
            1.5,
        ),
        ({"grid": [1]}, "YAML parsing error: grid must be a mapping.", "grid", "list"),
    ],
)
def test_wrong_types_are_template_invalid(
    root: dict[str, Any], message: str, path: str, value: Any
) -> None:
    """The first wrongly-typed value is reported with its path."""
    with pytest.raises(FlowdropError) as caught:
        check_shapes(root)
    assert caught.value.code is ErrorCode.TEMPLATE_INVALID
    assert caught.value.message == message
    assert caught.value.details == {"path": path, "value": value}


def test_well_typed_document_passes() -> None:
    """Optional sections may be absent."""
    check_shapes(
        {"nodes": [{"id": "a", "kind": "const", "values": [1.5, 2]}], "topology": {"nodes": []}}
    )
