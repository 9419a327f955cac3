"""Edge rules of FlowTime's ``InvariantAnalyzer`` (§12): lag, flow and per-class conservation.

A node's served must equal the sum of its outgoing flow edges, its arrivals the (lagged) sum of
its incoming ones; per class the same holds against the per-class edge flows. Messages end with
the edges involved, at most three named.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from flowdrop.core.engine.edges import EdgeSeries, node_of, port_of
from flowdrop.core.engine.warningtypes import MAX_BINS, TOLERANCE, Warning, warning
from flowdrop.core.numerics import FloatArray

Edge = Mapping[str, Any]


def label(edge: Edge) -> str:
    raw = str(edge.get("id") or "")
    if raw.strip():
        return raw
    source = str(edge.get("from") or "").strip() and str(edge.get("from"))
    target = str(edge.get("to") or "").strip() and str(edge.get("to"))
    return f"{source or '?'}->{target or '?'}"


def _series_key(edge: Edge) -> str:
    raw = str(edge.get("id") or "")
    if raw.strip():
        return raw.strip().lower()
    if not str(edge.get("from") or "").strip() or not str(edge.get("to") or "").strip():
        return ""
    return f"{edge.get('from')}->{edge.get('to')}".strip().lower()


def is_flow_edge(edge: Edge) -> bool:
    measure = str(edge.get("measure") or "").strip()
    if measure and measure.lower() != "served":
        return False
    port = port_of(edge.get("from")).strip()
    return not port or port.lower() == "out"


def is_terminal(edge: Edge) -> bool:
    return str(edge.get("type") or "").strip().lower() == "terminal"


def is_effort(edge: Edge) -> bool:
    return str(edge.get("type") or "").strip().lower() in ("effort", "dependency")


def edge_ids(edges: list[Edge]) -> list[str]:
    seen: list[str] = []
    for edge in edges:
        name = label(edge)
        if name.strip() and name.lower() not in (s.lower() for s in seen):
            seen.append(name)
    return seen


def with_edges(message: str, edges: list[Edge]) -> str:
    names = edge_ids(edges)
    if not names:
        return message
    listed = ", ".join(names[:3]) + (f" (+{len(names) - 3} more)" if len(names) > 3 else "")
    trimmed = message.rstrip()
    trimmed = trimmed[:-1] if trimmed.endswith(".") else trimmed
    return f"{trimmed}. Edges: {listed}."


def lag_warnings(edges: list[Edge]) -> list[Warning]:
    out: list[Warning] = []
    for edge in edges:
        lag = edge.get("lag")
        if not isinstance(lag, int | float) or isinstance(lag, bool) or lag <= 0:
            continue
        eid = (
            label(edge)
            if str(edge.get("id") or "").strip()
            else f"{edge.get('from')}->{edge.get('to')}"
        )
        message = (
            f"Edge '{eid}' applies a lag of {int(lag)} bin(s). Model transit as an explicit "
            "node instead of edge behavior."
        )
        out.append(
            warning(
                node_of(edge.get("from")) or "engine",
                "edge_behavior_violation_lag",
                message,
                edge_ids=[eid],
            )
        )
    return out


class EdgeChecks:
    """Per-node edge conservation against the materialised edge series."""

    def __init__(self, topology_edges: list[Edge], edge_series: list[EdgeSeries]) -> None:
        self.outgoing: dict[str, list[Edge]] = {}
        self.incoming: dict[str, list[Edge]] = {}
        for edge in topology_edges:
            source, target = node_of(edge.get("from")), node_of(edge.get("to"))
            if source:
                self.outgoing.setdefault(source.lower(), []).append(edge)
            if target:
                self.incoming.setdefault(target.lower(), []).append(edge)
        self.flows: dict[str, FloatArray] = {}
        self.class_flows: dict[str, dict[str, FloatArray]] = {}
        for item in edge_series:
            if item.metric.lower() != "flowvolume" or not item.edge_id.strip():
                continue
            key = item.edge_id.strip().lower()
            if item.class_id is None or not item.class_id.strip():
                self.flows[key] = item.values
            else:
                self.class_flows.setdefault(key, {})[item.class_id.strip()] = item.values

    def _lagged(self, values: FloatArray, edge: Edge, apply_lag: bool) -> FloatArray:
        lag = edge.get("lag")
        if not apply_lag or not isinstance(lag, int | float) or lag <= 0:
            return values
        return np.concatenate([np.zeros(min(int(lag), values.shape[0])), values])[: values.shape[0]]

    def _sum(self, edges: list[Edge], length: int, apply_lag: bool) -> FloatArray | None:
        relevant = [e for e in edges if is_flow_edge(e)]
        if not relevant:
            return None
        total = np.zeros(length)
        for edge in relevant:
            series = self.flows.get(_series_key(edge))
            if series is None or series.shape[0] != length:
                return None
            total = total + self._lagged(series, edge, apply_lag)
        return total

    def conservation(
        self, node_id: str, served: FloatArray | None, arrivals: FloatArray | None
    ) -> list[Warning]:
        out: list[Warning] = []
        if not self.flows:
            return out
        checks = (
            (served, self.outgoing, False, "edge_flow_mismatch_outgoing",
             "Served does not match sum of outgoing edge flows."),
            (arrivals, self.incoming, True, "edge_flow_mismatch_incoming",
             "Arrivals do not match sum of incoming edge flows."),
        )  # fmt: skip
        for values, table, lagged, code, message in checks:
            edges = table.get(node_id.lower())
            if values is None or edges is None:
                continue
            summed = self._sum(edges, values.shape[0], lagged)
            if summed is None:
                continue
            diff = np.abs(values - summed)
            bad = diff > TOLERANCE
            if bad.any():
                bins = [int(i) for i in np.flatnonzero(bad)[:MAX_BINS]]
                worst = float(np.max(diff[bad]))
                names = edge_ids(edges)
                out.append(
                    warning(node_id, code, with_edges(message, edges), bins, worst,
                            edge_ids=names or None)
                )  # fmt: skip
        return out

    def class_conservation(
        self, node_id: str, by_class: Mapping[str, FloatArray] | None, outgoing: bool
    ) -> list[Warning]:
        table = self.outgoing if outgoing else self.incoming
        edges = table.get(node_id.lower())
        if not by_class or edges is None:
            return []
        length = next(iter(by_class.values())).shape[0]
        if length == 0:
            return []
        totals = {c: np.zeros(length) for c in by_class if c.strip()}
        covered: set[str] = set()
        has_data = False
        for edge in edges:
            per_class = self.class_flows.get(_series_key(edge)) if is_flow_edge(edge) else None
            if per_class is None:
                continue
            has_data = True
            for class_id, series in per_class.items():
                if class_id not in totals or series.shape[0] != length:
                    continue
                covered.add(class_id)
                totals[class_id] = totals[class_id] + self._lagged(series, edge, not outgoing)
        if not totals or not has_data:
            return []
        bins: list[int] = []
        worst = 0.0
        mismatched: set[str] = set()
        missing: set[str] = set()
        for class_id, values in by_class.items():
            edge_values = totals.get(class_id)
            if edge_values is None:
                missing.add(class_id)
                continue
            for i, diff in enumerate(np.abs(values - edge_values).tolist()):
                if diff > TOLERANCE:
                    mismatched.add(class_id)
                    if len(bins) < MAX_BINS:
                        bins.append(i)
                    worst = max(worst, diff)
        if not mismatched and not missing:
            return []
        missing |= {c for c in by_class if c not in covered}
        code = "edge_class_partial_coverage" if missing else "edge_class_mismatch"
        message = (
            "Per-class served does not match outgoing edge flows."
            if outgoing
            else "Per-class arrivals do not match incoming edge flows."
        )
        if mismatched:
            message += f" Classes: {', '.join(sorted(mismatched, key=str.lower))}."
        elif missing:
            message += f" Missing classes: {', '.join(sorted(missing, key=str.lower))}."
        names = edge_ids(edges)
        return [
            warning(node_id, code, with_edges(message, edges), bins, worst, edge_ids=names or None)
        ]
