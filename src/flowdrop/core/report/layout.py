"""Which series go on which chart: one panel per topology node (in topology order), then the
per-class breakdown, the edge flows, and every series nothing else drew.

Nothing here knows a fixed list of series: a node's series are found through its topology
semantics and everything else through ``series/index.json``, so series added to run directories
later (more classes, more edge metrics) land on a chart without a change here.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from flowdrop.core.engine import metrics
from flowdrop.core.engine.edges import normalize_part
from flowdrop.core.engine.runreader import RunData
from flowdrop.core.numerics import FloatArray

FLOW_FIELDS = (
    "arrivals", "served", "errors", "externalDemand", "capacity", "attempts", "failures",
    "retryEcho",
)  # fmt: skip
QUEUE_FIELDS = ("queueDepth",)
DEFAULT = "DEFAULT"
# Trace keys that are not series ids: values computed for the report (derived metrics) and the
# source run's values overlaid on a telemetry run.
DERIVED_PREFIXES = ("derived:", "source:")
REMAINING_PER_CHART = 6
CLASS_ROWS_PER_CHART = 4
AXIS_TITLE_CHARS = 28
_BIN_MINUTES = {"minutes": 1.0, "hours": 60.0, "days": 1440.0, "weeks": 10080.0}


@dataclass(frozen=True)
class Trace:
    key: str  # a series id, or a derived key ("derived:...") that is not in the index
    name: str
    dash: str = "solid"


@dataclass
class Row:
    title: str
    traces: list[Trace] = field(default_factory=list)


@dataclass
class Chart:
    section: str
    title: str
    rows: list[Row]

    @property
    def series_ids(self) -> list[str]:
        """The series ids this chart draws (derived traces excluded), in drawing order."""
        keys = (t.key for row in self.rows for t in row.traces)
        return list(dict.fromkeys(k for k in keys if not k.startswith(DERIVED_PREFIXES)))


@dataclass
class Layout:
    charts: list[Chart]
    values: dict[str, FloatArray]  # every key a trace names: series and derived values


def bin_minutes(run: RunData) -> float:
    grid = run.run.get("grid") or {}
    unit = str(grid.get("binUnit") or "minutes").lower()
    return float(grid.get("binSize") or 1) * _BIN_MINUTES.get(unit, 1.0)


def _base(series_id: str) -> str:
    return series_id.split("@", 1)[0]


def _short(text: str) -> str:
    """An axis title that fits beside a chart (the chart's title has the full name)."""
    return text if len(text) <= AXIS_TITLE_CHARS else text[: AXIS_TITLE_CHARS - 1] + "…"


class _Resolver:
    """Maps semantics references to series ids and collects the class variants of a series."""

    def __init__(self, run: RunData) -> None:
        self.run = run
        self.by_base: dict[str, list[str]] = {}
        for sid in run.series:
            self.by_base.setdefault(_base(sid), []).append(sid)

    def resolve(self, reference: Any) -> str | None:
        if not isinstance(reference, str) or not reference.strip():
            return None
        text = reference.strip()
        if text.startswith("file:"):
            text = text.rsplit("/", 1)[-1].removesuffix(".csv")
            return text if text in self.run.series else None
        for candidate in (text, f"{text}@{text.upper()}@{DEFAULT}"):
            if candidate in self.run.series:
                return candidate
        return None

    def classes(self, series_id: str) -> list[str]:
        return [s for s in self.by_base.get(_base(series_id), []) if not s.endswith(f"@{DEFAULT}")]


def _topology(run: RunData) -> dict[str, Any]:
    topology = run.model.get("topology")
    return topology if isinstance(topology, dict) else {}


def _dicts(items: Any) -> list[dict[str, Any]]:
    return [i for i in items or [] if isinstance(i, dict)]


def _per_bin(fn: Any, *columns: Iterable[float]) -> FloatArray:
    out = [fn(*args) for args in zip(*columns, strict=True)]
    return np.array([math.nan if v is None else v for v in out], dtype=np.float64)


def _parallelism(raw: Any, resolver: _Resolver, bins: int) -> FloatArray | None:
    if isinstance(raw, int | float) and not isinstance(raw, bool):
        return np.full(bins, float(raw))
    sid = resolver.resolve(raw)
    return resolver.run.series[sid] if sid else None


def _semantics(node: dict[str, Any]) -> dict[str, Any]:
    semantics = node.get("semantics")
    return semantics if isinstance(semantics, dict) else {}


def _found(resolver: _Resolver, semantics: dict[str, Any]) -> dict[str, str]:
    """Semantics field -> series id, for the fields that name a series of the run."""
    resolved = {k: resolver.resolve(v) for k, v in semantics.items()}
    return {k: v for k, v in resolved.items() if v is not None}


def node_fields(run: RunData) -> list[tuple[str, dict[str, str]]]:
    """(node id, semantics field -> series id) for each topology node, in topology order."""
    resolver = _Resolver(run)
    return [
        (str(node.get("id")), _found(resolver, _semantics(node)))
        for node in _dicts(_topology(run).get("nodes"))
    ]


class _Builder:
    def __init__(self, run: RunData) -> None:
        self.run = run
        self.resolver = _Resolver(run)
        self.values: dict[str, FloatArray] = dict(run.series)
        self.charts: list[Chart] = []
        self.bins = max((len(v) for v in run.series.values()), default=0)

    def node_panel(self, node: dict[str, Any]) -> None:
        node_id = str(node.get("id"))
        semantics = _semantics(node)
        found = _found(self.resolver, semantics)
        rows: list[Row] = []
        flows = [Trace(found[f], f) for f in FLOW_FIELDS if f in found]
        parallel = _parallelism(semantics.get("parallelism"), self.resolver, self.bins)
        capacity = self.values[found["capacity"]] if "capacity" in found else None
        if capacity is not None and parallel is not None:
            key = f"derived:{node_id}:effectiveCapacity"
            self.values[key] = capacity * np.where(np.isfinite(parallel), parallel, 1.0)
            flows.append(Trace(key, "capacity × parallelism", "dot"))
        if flows:
            rows.append(Row("entities/bin", flows))
        queue = [Trace(found[f], f) for f in QUEUE_FIELDS if f in found]
        if queue:
            rows.append(Row("queue depth", queue))
        served = self.values[found["served"]] if "served" in found else None
        if served is not None and capacity is not None:
            key = f"derived:{node_id}:utilization"
            factor = parallel if parallel is not None else np.ones(self.bins)
            self.values[key] = _per_bin(metrics.utilization, served, capacity, factor)
            rows.append(Row("utilisation", [Trace(key, "utilisation (derived)")]))
        if served is not None and "queueDepth" in found:
            key = f"derived:{node_id}:latencyMinutes"
            minutes = [bin_minutes(self.run)] * len(served)
            depth = self.values[found["queueDepth"]]
            self.values[key] = _per_bin(metrics.latency_minutes, depth, served, minutes)
            rows.append(Row("latency (min)", [Trace(key, "Little's-law latency (derived)")]))
        others = [k for k in found if k not in FLOW_FIELDS + QUEUE_FIELDS]
        if others:
            rows.append(Row("other semantics", [Trace(found[k], k) for k in others]))
        if "processingTimeMsSum" in found and "servedCount" in found:
            key = f"derived:{node_id}:serviceTimeMs"
            sums, counts = (
                self.values[found["processingTimeMsSum"]],
                self.values[found["servedCount"]],
            )
            self.values[key] = _per_bin(metrics.service_time_ms, sums, counts)
            rows.append(Row("service time (ms)", [Trace(key, "service time (derived)")]))
        if rows:
            kind = str(node.get("kind") or "service")
            self.charts.append(Chart("nodes", f"{node_id} ({kind})", rows))
        class_rows = [
            Row(f"{k} by class", [Trace(s, s.rsplit("@", 1)[-1]) for s in self.resolver.classes(v)])
            for k, v in found.items()
        ]
        class_rows = [r for r in class_rows if r.traces]
        if class_rows:
            self.charts.append(Chart("classes", f"{node_id} by class", class_rows))

    def edges(self, edges: list[dict[str, Any]]) -> None:
        by_source: dict[str, list[str]] = {}
        for edge in edges:
            edge_id = str(edge.get("id") or f"{edge.get('from')}->{edge.get('to')}")
            source = str(edge.get("from") or "").split(":", 1)[0]
            prefix = f"edge_{normalize_part(edge_id)}_"
            matched = [b for b in self.resolver.by_base if b.startswith(prefix)]
            by_source.setdefault(source, []).extend(matched)
        for source, bases in by_source.items():
            totals, classed = [], []
            for base in dict.fromkeys(bases):
                for sid in self.resolver.by_base[base]:
                    name = sid.split("@", 1)[0].removeprefix("edge_")
                    if sid.endswith(f"@{DEFAULT}"):
                        totals.append(Trace(sid, name))
                    else:
                        classed.append(Trace(sid, f"{name} · {sid.rsplit('@', 1)[-1]}", "dot"))
            rows = [r for r in (Row("flow", totals), Row("by class", classed)) if r.traces]
            if rows:
                self.charts.append(Chart("edges", f"Edges from {source}", rows))

    def other_classes(self) -> None:
        """Every classed series no node panel broke down (expression nodes built from classed
        inputs), a row per series with one line per class; their totals go to the rest."""
        drawn = {sid for c in self.charts if c.section == "classes" for sid in c.series_ids}
        bases = [
            base
            for base, ids in self.resolver.by_base.items()
            if not base.startswith("edge_")
            and any(not s.endswith(f"@{DEFAULT}") and s not in drawn for s in ids)
        ]
        for start in range(0, len(bases), CLASS_ROWS_PER_CHART):
            group = bases[start : start + CLASS_ROWS_PER_CHART]
            rows = [
                Row(
                    _short(base),
                    [Trace(s, s.rsplit("@", 1)[-1]) for s in self.resolver.classes(base + "@")],
                )
                for base in group
            ]
            self.charts.append(Chart("classes", ", ".join(group) + " by class", rows))

    def remaining(self) -> None:
        drawn = {sid for chart in self.charts for sid in chart.series_ids}
        order = [str(e.get("id")) for e in self.run.entries]
        left = [sid for sid in dict.fromkeys([*order, *self.run.series]) if sid not in drawn]
        bases = list(dict.fromkeys(_base(s) for s in left))
        for start in range(0, len(bases), REMAINING_PER_CHART):
            group = bases[start : start + REMAINING_PER_CHART]
            traces = [
                Trace(
                    s,
                    s.split("@", 1)[0]
                    + ("" if s.endswith(f"@{DEFAULT}") else " · " + s.rsplit("@", 1)[-1]),
                )
                for s in left
                if _base(s) in group
            ]
            self.charts.append(Chart("other", ", ".join(group), [Row("value", traces)]))


def build_layout(run: RunData) -> Layout:
    """The report's charts for ``run``; every series of the run is on at least one of them."""
    builder = _Builder(run)
    topology = _topology(run)
    for node in _dicts(topology.get("nodes")):
        builder.node_panel(node)
    builder.other_classes()
    builder.edges(_dicts(topology.get("edges")))
    builder.remaining()
    order = {"nodes": 0, "classes": 1, "edges": 2, "other": 3}
    charts = sorted(builder.charts, key=lambda c: order[c.section])
    return Layout(charts, builder.values)
