"""Edge series (``EdgeFlowMaterializer``, §9.9): flow, attempts and failures volumes per edge."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

import numpy as np

from flowdrop.core.engine.graph import Graph
from flowdrop.core.engine.routing import route_volumes
from flowdrop.core.numerics import FloatArray
from flowdrop.core.templating.model import Model

_UNSAFE = re.compile(r"[^A-Za-z0-9_.\-]")
THROUGHPUT = ("throughput", "topology")
EFFORT = ("effort", "dependency")


def normalize_part(text: str) -> str:
    """Edge id / metric normalisation for series ids."""
    return _UNSAFE.sub("_", text.strip()).strip("_")


def edge_key(edge_id: str, metric: str) -> str:
    """``edge_<E>_<M>`` (the node part of an edge series id)."""
    return f"edge_{normalize_part(edge_id)}_{normalize_part(metric)}"


def _split(endpoint: Any) -> tuple[str, str | None]:
    node, _, port = str(endpoint or "").partition(":")
    return node.strip(), (port.strip() or None)


def edge_identifier(edge: Mapping[str, Any]) -> str:
    return str(edge.get("id") or f"{edge.get('from')}->{edge.get('to')}")


def _is_throughput(edge: Mapping[str, Any]) -> bool:
    kind = str(edge.get("type") or "throughput").lower()
    if kind not in THROUGHPUT:
        return False
    _, port = _split(edge.get("from"))
    measure = str(edge.get("measure") or "") or (port if port and port != "out" else "served")
    return measure.lower() == "served" and port in (None, "out")


def _weight(edge: Mapping[str, Any]) -> float:
    raw = edge.get("weight")
    weight = float(raw) if raw is not None else 1.0
    return weight if weight > 0 else 1.0


def edge_series(
    model: Model,
    graph: Graph,
    series: Mapping[str, FloatArray],
    classes: Mapping[str, dict[str, FloatArray]],
) -> tuple[dict[str, FloatArray], dict[str, dict[str, FloatArray]]]:
    """Edge volumes keyed by ``edge_<E>_<M>``; per-class variants are not produced (see docs)."""
    topology = graph.topology
    edges = topology.get("edges") or []
    if not edges:
        return {}, {}
    semantics = {str(t.get("id")): (t.get("semantics") or {}) for t in topology.get("nodes") or []}
    kinds = {
        str(t.get("id")): str(t.get("kind") or "").lower() for t in topology.get("nodes") or []
    }
    routed, _ = route_volumes(graph, series, classes) if graph.routers else ({}, {})

    def sem_series(node: str, field: str) -> FloatArray | None:
        ref = semantics.get(node, {}).get(field)
        return series.get(str(ref)) if ref else None

    out: dict[str, FloatArray] = {}
    flows: dict[int, FloatArray] = {}
    throughput_weights: dict[str, float] = {}
    for edge in edges:
        if _is_throughput(edge) or str(edge.get("type") or "").lower() in EFFORT:
            source, _ = _split(edge.get("from"))
            throughput_weights[source] = throughput_weights.get(source, 0.0) + _weight(edge)
    for index, edge in enumerate(edges):
        source, port = _split(edge.get("from"))
        target, _ = _split(edge.get("to"))
        kind = str(edge.get("type") or "throughput").lower()
        eid = edge_identifier(edge)
        if _is_throughput(edge) or kind in EFFORT:
            flow = None
            if kinds.get(source) == "router":
                arrivals_ref = str(semantics.get(target, {}).get("arrivals") or "")
                flow = routed.get(arrivals_ref)
            if flow is None:
                served = sem_series(source, "served")
                if served is not None:
                    flow = served * (_weight(edge) / throughput_weights.get(source, 1.0))
            if flow is not None:
                flows[index] = flow
                out[edge_key(eid, "flowVolume")] = flow
        measure = str(edge.get("measure") or "").lower()
        multiplier = edge.get("multiplier")
        factor = float(multiplier if multiplier is not None else edge.get("weight") or 1.0)
        if not math.isfinite(factor):
            factor = 1.0
        if kind in EFFORT and port in (None, "out") and measure in ("attempts", "load"):
            attempts = sem_series(source, "attempts")
            if attempts is not None:
                out[edge_key(eid, "attemptsVolume")] = attempts * factor
        if kind == "terminal" and measure in ("errors", "failures", "exhaustedfailures"):
            field = {"errors": "errors", "failures": "failures"}.get(measure, "exhaustedFailures")
            failures = sem_series(source, field)
            if failures is not None:
                out[edge_key(eid, "failuresVolume")] = np.asarray(failures) * factor
    return out, {}
