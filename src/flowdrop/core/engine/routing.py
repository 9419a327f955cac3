"""Router overrides (``RouterFlowMaterializer``, §9.5): one pass, then the graph is re-evaluated."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from flowdrop.core.engine.graph import Graph
from flowdrop.core.numerics import FloatArray

Classes = dict[str, FloatArray]


def route_volumes(
    graph: Graph, series: Mapping[str, FloatArray], classes: Mapping[str, Classes]
) -> tuple[dict[str, FloatArray], dict[str, Classes]]:
    """Target -> routed volume (and its class split) for every router in the graph."""
    overrides: dict[str, FloatArray] = {}
    override_classes: dict[str, Classes] = {}
    for router in graph.routers:
        source = series[router.queue]
        remaining = np.array(source, dtype=np.float64, copy=True)
        remaining_classes = {c: v.copy() for c, v in classes.get(router.queue, {}).items()}
        for target, route_classes, _ in router.routes:
            if not route_classes:
                continue
            total = np.zeros(graph.bins)
            bucket = override_classes.setdefault(target, {})
            for cls in route_classes:
                values = remaining_classes.pop(cls, None)
                if values is None:
                    continue
                total = total + values
                remaining = remaining - values
                bucket[cls] = bucket.get(cls, np.zeros(graph.bins)) + values
            overrides[target] = overrides.get(target, np.zeros(graph.bins)) + total
        weighted = [(t, w) for t, cs, w in router.routes if not cs]
        weight_sum = sum(w for _, w in weighted)
        if weight_sum <= 0:
            weight_sum = float(len(weighted))
        for target, weight in weighted:
            fraction = weight / weight_sum
            overrides[target] = overrides.get(target, np.zeros(graph.bins)) + remaining * fraction
            bucket = override_classes.setdefault(target, {})
            for cls, values in remaining_classes.items():
                bucket[cls] = bucket.get(cls, np.zeros(graph.bins)) + values * fraction
    return overrides, {t: c for t, c in override_classes.items() if c}
