"""Router overrides (``RouterFlowMaterializer``, §9.5): one pass, then the graph is re-evaluated.

Class routes take their classes out of the router source's class split (the class pass of the
initial totals); weight routes share what remains. Several routes to one target accumulate.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from flowdrop.core.engine.graph import Graph
from flowdrop.core.numerics import FloatArray

Classes = dict[str, FloatArray]


def router_overrides(
    graph: Graph, series: Mapping[str, FloatArray], classes: Mapping[str, Classes]
) -> dict[str, FloatArray]:
    """Target -> routed volume for every router in the graph."""
    overrides: dict[str, FloatArray] = {}

    def accumulate(target: str, values: FloatArray) -> None:
        found = overrides.get(target)
        overrides[target] = values.copy() if found is None else found + values

    for router in graph.routers:
        source = series.get(router.queue)
        if source is None:
            continue
        remaining = np.array(source, dtype=np.float64, copy=True)
        remaining_classes = {c: v.copy() for c, v in classes.get(router.queue, {}).items()}
        for target, route_classes, _ in router.routes:
            if not route_classes:
                continue
            total = np.zeros(graph.bins)
            for cls in route_classes:
                values = remaining_classes.pop(cls, None)
                if values is None:
                    continue
                total = total + values
                remaining = remaining - values
            accumulate(target, total)
        weighted = [(t, w) for t, cs, w in router.routes if not cs]
        weight_sum = sum(w for _, w in weighted)
        if weight_sum <= 0:
            weight_sum = float(len(weighted))
        for target, weight in weighted:
            accumulate(target, remaining * (0.0 if weight_sum <= 0 else weight / weight_sum))
    return overrides
