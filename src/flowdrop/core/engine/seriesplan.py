"""Which series a run writes, and in which order (FlowTime's ``RunArtifactWriter``, §10.6).

1. the outputs' selection, then the series topology semantics name (§10.3), each DEFAULT series
   followed by its per-class series (only those with some finite value);
2. then the edge series in materializer order, each total followed by its per-class variants.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from flowdrop.core.engine.classseries import Classes
from flowdrop.core.engine.edges import EdgeSeries
from flowdrop.core.engine.rundocs import series_id
from flowdrop.core.numerics import FloatArray

DEFAULT_CLASS = "DEFAULT"


@dataclass(frozen=True)
class PlannedSeries:
    series_id: str
    values: FloatArray
    kind: str  # "flow" | "edge"
    component: str
    class_id: str


def plan_series(
    selected: list[str],
    context: Mapping[str, FloatArray],
    classes: Mapping[str, Classes],
    edges: list[EdgeSeries],
) -> list[PlannedSeries]:
    """The written series, in FlowTime's order."""
    planned: list[PlannedSeries] = []
    for node_id in selected:
        component = node_id.upper()
        planned.append(
            PlannedSeries(series_id(node_id), context[node_id], "flow", component, DEFAULT_CLASS)
        )
        for class_id, values in classes.get(node_id, {}).items():
            if np.isfinite(values).any():
                sid = series_id(node_id, class_id)
                planned.append(PlannedSeries(sid, values, "flow", component, class_id))
    for edge in edges:
        class_id = edge.class_id or DEFAULT_CLASS
        planned.append(
            PlannedSeries(
                series_id(edge.key, class_id), edge.values, "edge", edge.key.upper(), class_id
            )
        )
    return planned
