"""Edge series (FlowTime's ``EdgeFlowMaterializer``, §9.9): flow, attempts, failures and retry
volumes per topology edge, each total followed by its per-class variants.

The passes and their order are upstream's, because the order is the order of the edge CSVs in
``series/index.json``: router routes (class routes, then weight routes), throughput edges grouped
by source, effort edges' flow (when not already set), effort ``attemptsVolume``, terminal
``failuresVolume``, then ``retryVolume`` per retrying target. Per-class variants come from a fresh
class pass over the final totals, as upstream builds them.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from flowdrop.core.engine.classseries import Classes
from flowdrop.core.engine.graph import Graph
from flowdrop.core.numerics import FloatArray

_UNSAFE = re.compile(r"[^A-Za-z0-9_.\-]")
THROUGHPUT = ("throughput", "topology")
EFFORT = ("effort", "dependency")
FAILURE_FIELDS = {
    "errors": "errors",
    "failures": "failures",
    "exhaustedfailures": "exhaustedFailures",
}


@dataclass(frozen=True)
class EdgeSeries:
    """One edge CSV: ``class_id`` None is the total (written as ``DEFAULT``)."""

    edge_id: str
    metric: str
    values: FloatArray
    class_id: str | None = None

    @property
    def key(self) -> str:
        return edge_key(self.edge_id, self.metric)


def normalize_part(text: str) -> str:
    """Edge id / metric normalisation for series ids."""
    return _UNSAFE.sub("_", text.strip()).strip("_")


def edge_key(edge_id: str, metric: str) -> str:
    """``edge_<E>_<M>`` (the node part of an edge series id)."""
    return f"edge_{normalize_part(edge_id)}_{normalize_part(metric)}"


def node_of(endpoint: Any) -> str:
    text = str(endpoint or "").strip()
    return text.split(":", 1)[0]


def port_of(endpoint: Any) -> str:
    text = str(endpoint or "").strip()
    return text.split(":", 1)[1] if ":" in text else ""


def edge_identifier(edge: Mapping[str, Any]) -> str:
    raw = str(edge.get("id") or "")
    return raw if raw.strip() else f"{edge.get('from')}->{edge.get('to')}"


def edge_type(edge: Mapping[str, Any]) -> str:
    raw = str(edge.get("type") or "").strip().lower()
    return raw or "throughput"


def edge_measure(edge: Mapping[str, Any]) -> str:
    raw = str(edge.get("measure") or "").strip()
    if raw:
        return raw.lower()
    port = port_of(edge.get("from")).strip()
    return port.lower() if port and port.lower() != "out" else "served"


def _plain_port(edge: Mapping[str, Any]) -> bool:
    port = port_of(edge.get("from")).strip()
    return not port or port.lower() == "out"


def is_throughput(edge: Mapping[str, Any]) -> bool:
    """A throughput edge whose flow is the source's served series (``ShouldEmitThroughputEdge``)."""
    return edge_type(edge) in THROUGHPUT and edge_measure(edge) == "served" and _plain_port(edge)


def _weight(edge: Mapping[str, Any]) -> float:
    raw = edge.get("weight")
    weight = float(raw) if raw is not None else 1.0
    return 1.0 if weight <= 0 else weight


def _multiplier(edge: Mapping[str, Any]) -> float:
    raw = edge.get("multiplier")
    if raw is None:
        raw = edge.get("weight")
    value = float(raw) if raw is not None else 1.0
    return value if math.isfinite(value) else 1.0


def shared_arrivals(topology: Mapping[str, Any]) -> list[tuple[str, list[str]]]:
    """Arrivals series named by more than one topology node (upstream's edge pass throws)."""
    owners: dict[str, list[str]] = {}
    for tnode in topology.get("nodes") or []:
        arrivals = str((tnode.get("semantics") or {}).get("arrivals") or "")
        if arrivals.strip():
            owners.setdefault(arrivals.lower(), []).append(str(tnode.get("id")))
    return [(key, ids) for key, ids in owners.items() if len(ids) > 1]


class _Materializer:
    def __init__(
        self,
        topology: Mapping[str, Any],
        totals: Mapping[str, FloatArray],
        classes: Mapping[str, Classes],
    ) -> None:
        self.totals = totals
        self.classes = classes
        self.nodes: dict[str, Mapping[str, Any]] = {}
        self.arrivals: dict[str, str] = {}
        for tnode in topology.get("nodes") or []:
            node_id = str(tnode.get("id") or "")
            if node_id.strip():
                self.nodes.setdefault(node_id.lower(), tnode)
            arrivals = str((tnode.get("semantics") or {}).get("arrivals") or "")
            if arrivals.strip():
                # Upstream's ToDictionary throws on a shared arrivals series; flowdrop keeps the
                # first owner and warns (see invariants and docs/templates.md).
                self.arrivals.setdefault(arrivals.lower(), node_id)
        self.candidates = [
            e
            for e in topology.get("edges") or []
            if node_of(e.get("from")) and node_of(e.get("to"))
        ]
        self.out: list[EdgeSeries] = []
        self.flows: dict[str, FloatArray] = {}
        self.incoming: dict[str, list[Mapping[str, Any]]] = {}

    def semantic(self, node_id: str, field: str) -> str | None:
        tnode = self.nodes.get(node_id.lower())
        if tnode is None:
            return None
        ref = str((tnode.get("semantics") or {}).get(field) or "")
        return ref if ref.strip() else None

    def add(
        self, edge: Mapping[str, Any], metric: str, values: FloatArray, by_class: Classes | None
    ) -> None:
        eid = edge_identifier(edge)
        self.out.append(EdgeSeries(eid, metric, values))
        for class_id, series in (by_class or {}).items():
            self.out.append(EdgeSeries(eid, metric, series, class_id))

    def register(self, edge: Mapping[str, Any], values: FloatArray) -> None:
        eid = edge_identifier(edge)
        self.flows[eid.lower()] = values
        bucket = self.incoming.setdefault(node_of(edge.get("to")).lower(), [])
        if all(edge_identifier(e).lower() != eid.lower() for e in bucket):
            bucket.append(edge)

    def routers(self, graph: Graph) -> set[tuple[str, str]]:
        lookup: dict[tuple[str, str], Mapping[str, Any]] = {}
        for edge in self.candidates:
            if is_throughput(edge):
                key = (node_of(edge.get("from")).lower(), node_of(edge.get("to")).lower())
                lookup.setdefault(key, edge)
        handled: set[tuple[str, str]] = set()
        for router in graph.routers:
            source = self.totals.get(router.queue)
            if source is None:
                continue

            def resolve(target: str, router_id: str = router.id) -> Mapping[str, Any] | None:
                owner = self.arrivals.get(target.lower())
                return lookup.get((router_id.lower(), owner.lower())) if owner else None

            remaining = np.array(source, dtype=np.float64, copy=True)
            classes = self.classes.get(router.queue)
            left = {c: v.copy() for c, v in classes.items()} if classes is not None else None
            for target, route_classes, _ in router.routes:
                edge = resolve(target) if route_classes else None
                if edge is None:
                    continue
                total = np.zeros(remaining.shape[0])
                picked: Classes | None = {} if left is not None else None
                if left is not None and picked is not None:
                    for class_id in route_classes:
                        series = left.pop(class_id, None)
                        if series is not None:
                            total = total + series
                            remaining = remaining - series
                            picked[class_id] = series.copy()
                self.register(edge, total)
                self.add(edge, "flowVolume", total, picked)
                handled.add((node_of(edge.get("from")).lower(), node_of(edge.get("to")).lower()))
            weighted = [(t, w) for t, c, w in router.routes if not c]
            weight_sum = sum(w for _, w in weighted)
            if weight_sum <= 0:
                weight_sum = float(len(weighted))
            for target, weight in weighted:
                edge = resolve(target)
                if edge is None:
                    continue
                fraction = 0.0 if weight_sum <= 0 else weight / weight_sum
                total = remaining * fraction
                picked = {c: v * fraction for c, v in left.items()} if left is not None else None
                self.register(edge, total)
                self.add(edge, "flowVolume", total, picked)
                handled.add((node_of(edge.get("from")).lower(), node_of(edge.get("to")).lower()))
        return handled

    def grouped_flows(
        self, edges: list[Mapping[str, Any]], handled: set[tuple[str, str]], *, effort: bool
    ) -> None:
        groups: dict[str, list[Mapping[str, Any]]] = {}
        for edge in edges:
            groups.setdefault(node_of(edge.get("from")).lower(), []).append(edge)
        for source, group in groups.items():
            served_id = self.semantic(source, "served")
            base = self.totals.get(served_id) if served_id else None
            if base is None:
                continue
            served_classes = self.classes.get(served_id) if served_id else None
            weight_sum = sum(_weight(e) for e in group)
            if weight_sum <= 0:
                weight_sum = float(len(group))
            for edge in group:
                pair = (node_of(edge.get("from")).lower(), node_of(edge.get("to")).lower())
                if (effort and edge_identifier(edge).lower() in self.flows) or (
                    not effort and pair in handled
                ):
                    continue
                fraction = 0.0 if weight_sum <= 0 else _weight(edge) / weight_sum
                series = base * fraction
                by_class = (
                    {c: v * fraction for c, v in served_classes.items()}
                    if served_classes is not None
                    else None
                )
                if effort:
                    self.flows[edge_identifier(edge).lower()] = series
                else:
                    self.register(edge, series)
                self.add(edge, "flowVolume", series, by_class)

    def scaled_metric(self, edge: Mapping[str, Any], field: str, metric: str) -> None:
        series_id = self.semantic(node_of(edge.get("from")), field)
        values = self.totals.get(series_id) if series_id else None
        if values is None or series_id is None:
            return
        factor = _multiplier(edge)
        per_class = self.classes.get(series_id)
        by_class = {c: v * factor for c, v in per_class.items()} if per_class is not None else None
        self.add(edge, metric, values * factor, by_class)

    def retries(self) -> None:
        for target, incoming in self.incoming.items():
            echo_id = self.semantic(target, "retryEcho")
            retry = self.totals.get(echo_id) if echo_id else None
            if retry is None or not incoming:
                continue
            flows = [self.flows.get(edge_identifier(e).lower()) for e in incoming]
            per_edge = [[0.0] * retry.shape[0] for _ in incoming]
            for i, value in enumerate(retry.tolist()):
                if not math.isfinite(value) or value <= 0:
                    continue
                samples = [float(f[i]) if f is not None else 0.0 for f in flows]
                positive = [s if math.isfinite(s) and s > 0 else 0.0 for s in samples]
                total = 0.0
                for sample in positive:
                    total += sample
                for k, sample in enumerate(positive):
                    if total <= 0:
                        per_edge[k][i] = value / len(incoming)
                    elif sample > 0:
                        per_edge[k][i] = value * (sample / total)
            for edge, row in zip(incoming, per_edge, strict=True):
                if any(v > 0 for v in row):
                    self.add(edge, "retryVolume", np.asarray(row, dtype=np.float64), None)


def materialize_edges(
    topology: Mapping[str, Any],
    graph: Graph,
    totals: Mapping[str, FloatArray],
    classes: Mapping[str, Classes],
) -> list[EdgeSeries]:
    """Every edge series of the run, in upstream's materializer order."""
    if not topology.get("edges"):
        return []
    m = _Materializer(topology, totals, classes)
    with np.errstate(all="ignore"):
        handled = m.routers(graph)
        router_ids = {r.id.lower() for r in graph.routers}
        unrouted = [e for e in m.candidates if node_of(e.get("from")).lower() not in router_ids]
        m.grouped_flows([e for e in unrouted if is_throughput(e)], handled, effort=False)
        m.grouped_flows([e for e in unrouted if edge_type(e) in EFFORT], handled, effort=True)
        for edge in m.candidates:
            effortful = edge_type(edge) in EFFORT and edge_measure(edge) in ("attempts", "load")
            if effortful and _plain_port(edge):
                m.scaled_metric(edge, "attempts", "attemptsVolume")
        for edge in m.candidates:
            field = FAILURE_FIELDS.get(edge_measure(edge))
            if edge_type(edge) == "terminal" and field is not None:
                m.scaled_metric(edge, field, "failuresVolume")
        m.retries()
    return m.out
