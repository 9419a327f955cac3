"""Per-class decomposition of the final node totals (FlowTime's ``ClassContributionBuilder``, §9.8).

Classes are a reporting layer: totals never depend on this pass. It walks the topological order
once (tagged nodes carry their class, expressions propagate shares, queues run the recurrence per
class), then applies router class routes, queue outflow/loss and topology served/errors
inheritance, re-walking the untouched nodes after each, exactly as the C# builder does. The
per-class CSVs, per-class edge series and the class-related run warnings all read its result.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

import numpy as np

from flowdrop.core.engine import classseries as cs
from flowdrop.core.engine.classseries import Classes, ClassSeries
from flowdrop.core.engine.graph import Graph, Node
from flowdrop.core.numerics import FloatArray
from flowdrop.core.templating.expressions import Arr, BinOp, Call, Expr, Num, Ref
from flowdrop.core.templating.syntax import references

ROUTER_TOLERANCE = 1e-6
# Graph node kinds -> the model kinds upstream's builder switches on.
_KINDS = {
    "const": "const",
    "pmf": "pmf",
    "expr": "expr",
    "queue": "serviceWithBuffer",
    "router": "router",
}


@dataclass
class Contributions:
    """Node id -> class id -> series (only nodes with class data), plus router diagnostics."""

    classes: dict[str, Classes] = field(default_factory=dict)
    diagnostics: list[tuple[str, str, str]] = field(default_factory=list)


class _Builder:
    def __init__(
        self,
        graph: Graph,
        totals: Mapping[str, FloatArray],
        seeds: Mapping[str, Mapping[str, FloatArray]],
        reuse: bool = True,
    ) -> None:
        self.graph = graph
        self.bins = graph.bins
        self.totals = totals
        self.kinds = {n.id: _KINDS[n.kind] for n in graph.nodes.values()}
        self.tags = {
            n: c.strip() for n, c in graph.class_tags.items() if c.strip() not in ("", "*")
        }
        self.seeds = seeds
        self.fixed = set(self.tags) | set(seeds)
        self.initials: dict[str, float] = {}
        for tnode in _topology_nodes(graph.topology):
            depth = str((tnode.get("semantics") or {}).get("queueDepth") or "").strip()
            if depth:
                initial = (tnode.get("initialCondition") or {}).get("queueDepth")
                self.initials[depth.lower()] = float(initial) if initial is not None else 0.0
        self.out: dict[str, ClassSeries] = {}
        # A re-walk recomputes a node only when a series it reads was stored since it was last
        # computed: the pass is deterministic, and without dispatch schedules (gating mutates
        # the stored outflow in place) a stored series never changes behind its version.
        self.reuse = reuse and all(n.schedule is None for n in graph.nodes.values())
        self.reads = {n.id: _reads(n) for n in graph.nodes.values()}
        self.versions: dict[str, int] = {}  # node -> number of the store that set it
        self.stamps: dict[str, tuple[int, ...]] = {}  # node -> its reads' versions when computed
        self.stores = 0

    def store(self, node_id: str, series: ClassSeries) -> None:
        self.out[node_id] = series
        self.stores += 1
        self.versions[node_id] = self.stores

    # -- node evaluation -------------------------------------------------------------------
    def node(self, node_id: str) -> ClassSeries:
        kind = self.kinds.get(node_id)
        node = self.graph.nodes[node_id]
        total = self.totals[node_id]
        if kind is None:
            return cs.from_totals(total)
        if kind in ("const", "pmf"):
            return cs.from_totals(total)
        if kind == "expr" and node.expr is not None:
            return self.expr(node.expr)
        if kind == "serviceWithBuffer":
            return self.queue(node)
        return cs.from_totals(total)

    def required(self, node_id: str | None) -> ClassSeries:
        """The stored series itself (not a copy: dispatch gating mutates it, as in C#)."""
        if not node_id:
            return cs.zero(self.bins)
        found = self.out.get(node_id)
        if found is not None:
            return found
        if node_id in self.totals:
            return cs.from_totals(self.totals[node_id])
        return cs.zero(self.bins)

    def queue(self, node: Node) -> ClassSeries:
        inflow = self.required(node.inflow)
        outflow = self.required(node.outflow)
        loss = self.required(node.loss) if node.loss else cs.zero(self.bins)
        if node.schedule is not None:
            period = node.schedule.period
            phase = ((node.schedule.phase % period) + period) % period
            capacity = self.required(node.schedule.capacity) if node.schedule.capacity else None
            cs.gate_outflow(outflow, capacity, period, phase)
        initial = self.initials.get(node.id.lower(), 0.0)
        return cs.backlog(self.totals[node.id], inflow, outflow, loss, initial)

    def expr(self, expr: Expr) -> ClassSeries:
        if isinstance(expr, Num):
            return ClassSeries(np.full(self.bins, expr.value))
        if isinstance(expr, Ref):
            found = self.out.get(expr.name)
            # A reference the walk has not reached (a SHIFT to a later node) makes C# throw;
            # flowdrop decomposes nothing for it instead (see docs/templates.md).
            return found.clone() if found is not None else self.required(expr.name).clone()
        if isinstance(expr, BinOp):
            left, right = self.expr(expr.left), self.expr(expr.right)
            ops = {"+": cs.add, "-": cs.subtract, "*": cs.multiply, "/": cs.divide}
            op = ops.get(expr.op)
            return op(left, right) if op else cs.zero(self.bins)
        if isinstance(expr, Call):
            return self.call(expr)
        return cs.zero(self.bins)

    def call(self, call: Call) -> ClassSeries:
        name, args = call.name.upper(), call.args
        if name in ("MIN", "MAX") and len(args) == 2:
            return cs.min_max(self.expr(args[0]), self.expr(args[1]), use_min=name == "MIN")
        if name == "CLAMP" and len(args) == 3:
            value, low, high = (self.expr(a) for a in args)
            return cs.min_max(cs.min_max(value, high, use_min=True), low, use_min=False)
        if name in ("FLOOR", "CEIL", "ROUND") and len(args) == 1:
            return cs.unary(self.expr(args[0]), name)
        if name == "STEP" and len(args) == 2:
            return cs.step(self.expr(args[0]), self.expr(args[1]))
        if name == "MOD" and len(args) == 2:
            return cs.mod(self.expr(args[0]), self.expr(args[1]))
        if name == "SHIFT" and len(args) == 2:
            lag = _whole(args[1])
            return cs.shift(self.expr(args[0]), lag) if lag is not None else cs.zero(self.bins)
        if name == "CONV" and len(args) == 2:
            kernel = args[1]
            taps = list(kernel.values) if isinstance(kernel, Arr) else None
            taps = [kernel.value] if isinstance(kernel, Num) else taps
            if not taps:
                return cs.zero(self.bins)
            return cs.convolve(self.expr(args[0]), [float(t) for t in taps])
        if name == "PULSE" and 1 <= len(args) <= 3:
            period = _whole(args[0])
            phase = _whole(args[1]) if len(args) >= 2 else 0
            if period is None or period <= 0 or phase is None:
                return cs.zero(self.bins)
            amplitude = self.expr(args[2]) if len(args) == 3 else ClassSeries(np.ones(self.bins))
            return cs.pulse(period, phase, amplitude)
        return cs.zero(self.bins)

    # -- passes ----------------------------------------------------------------------------
    def walk(self, skip: set[str] | None = None) -> None:
        for node_id in self.graph.order:
            if node_id not in self.totals:
                continue
            if skip is None:
                if node_id in self.seeds:
                    total = self.totals[node_id]
                    per_class = {
                        c: np.asarray(v, dtype=np.float64) for c, v in self.seeds[node_id].items()
                    }
                    self.store(node_id, ClassSeries(total.copy(), per_class))
                    continue
                if node_id in self.tags:
                    self.store(node_id, cs.single(self.tags[node_id], self.totals[node_id]))
                    continue
            elif node_id in self.fixed or node_id in skip or node_id not in self.kinds:
                continue
            stamp = tuple(self.versions.get(name, 0) for name in self.reads[node_id])
            if self.reuse and self.stamps.get(node_id) == stamp:
                continue  # same inputs as last time: the stored series is this walk's answer
            self.store(node_id, self.node(node_id))
            self.stamps[node_id] = stamp

    def routers(self) -> tuple[set[str], list[tuple[str, str, str]]]:
        overridden: set[str] = set()
        diagnostics: list[tuple[str, str, str]] = []
        for node in self.graph.nodes.values():  # model order, as upstream's router specs
            if node.kind != "router":
                continue
            for target, series in self.route(node, diagnostics).items():
                self.store(target, series)
                overridden.add(target)
            self.store(node.id, self.source(node.queue))
            overridden.add(node.id)
        return overridden, diagnostics

    def source(self, node_id: str) -> ClassSeries:
        found = self.out.get(node_id)
        if found is not None:
            return found.clone()
        return (
            cs.from_totals(self.totals[node_id]) if node_id in self.totals else cs.zero(self.bins)
        )

    def target_total(self, node_id: str) -> FloatArray:
        found = self.totals.get(node_id)
        return found.copy() if found is not None else np.zeros(self.bins)

    def route(self, node: Node, diagnostics: list[tuple[str, str, str]]) -> dict[str, ClassSeries]:
        result: dict[str, ClassSeries] = {}
        source = self.source(node.queue)
        remainder = {c: v.copy() for c, v in source.by_class.items()}
        for target, classes, _ in node.routes:
            if not classes:
                continue
            picked: Classes = {}
            for class_id in classes:
                found = source.by_class.get(class_id)
                picked[class_id] = found.copy() if found is not None else np.zeros(self.bins)
                remainder.pop(class_id, None)
            total = self.target_total(target)
            cs.normalize(picked, total)
            result[target] = ClassSeries(total, picked)
        weighted = [(t, w) for t, c, w in node.routes if not c]
        if weighted:
            weight_sum = sum(w for _, w in weighted)
            if weight_sum <= 0:
                weight_sum = float(len(weighted))
            for target, weight in weighted:
                fraction = weight / weight_sum
                picked = {c: v * fraction for c, v in remainder.items()}
                total = self.target_total(target)
                cs.normalize(picked, total)
                result[target] = ClassSeries(total, picked)
        _router_diagnostics(node.id, source, remainder, bool(weighted), result, diagnostics)
        return result

    def inherit(self, target: str | None, inflow: ClassSeries, updated: set[str]) -> None:
        """Give ``target`` (without classes yet) the inflow's class mix, scaled to its total."""
        if not target or target not in self.totals:
            return
        existing = self.out.get(target)
        if existing is not None and existing.by_class:
            return
        picked = {c: v.copy() for c, v in inflow.by_class.items()}
        total = self.totals[target].copy()
        cs.normalize(picked, total)
        self.store(target, ClassSeries(total, picked))
        if picked:
            updated.add(target)


def _router_diagnostics(
    router_id: str,
    source: ClassSeries,
    remainder: Classes,
    weighted: bool,
    routed: Mapping[str, ClassSeries],
    diagnostics: list[tuple[str, str, str]],
) -> None:
    if not weighted:
        missing = [c for c, v in remainder.items() if bool((np.abs(v) > ROUTER_TOLERANCE).any())]
        if missing:
            message = f"Router '{router_id}' is missing routes for classes: {', '.join(missing)}."
            diagnostics.append((router_id, "router_missing_class_route", message))
    sums: Classes = {}
    for series in routed.values():
        for class_id, values in series.by_class.items():
            sums[class_id] = sums.get(class_id, np.zeros(values.shape[0])) + values
    leaks: list[str] = []
    for class_id, values in source.by_class.items():
        diff = np.abs(values - sums.get(class_id, np.zeros(values.shape[0])))
        worst = float(np.max(np.where(np.isnan(diff), 0.0, diff))) if diff.size else 0.0
        if worst > ROUTER_TOLERANCE:
            leaks.append(f"{class_id} (max diff {_three_places(worst)})")
    if leaks:
        message = (
            f"Router '{router_id}' routed class totals that differ from source: {', '.join(leaks)}."
        )
        diagnostics.append((router_id, "router_class_leakage", message))


def _three_places(value: float) -> str:
    """.NET's ``{v:0.###}``: at most three decimals, no trailing zeros, midpoints away from 0."""
    text = format(Decimal(repr(value)).quantize(Decimal("0.001"), ROUND_HALF_UP), "f")
    return text.rstrip("0").rstrip(".") if "." in text else text


def _reads(node: Node) -> tuple[str, ...]:
    """The nodes whose stored series :meth:`_Builder.node` reads for ``node``."""
    if node.kind == "expr" and node.expr is not None:
        return tuple(references(node.expr)[0])
    if node.kind == "queue":
        capacity = node.schedule.capacity if node.schedule is not None else None
        return tuple(n for n in (node.inflow, node.outflow, node.loss, capacity) if n)
    return ()


def _whole(expr: Expr) -> int | None:
    """A non-negative whole-number literal (C#'s ``(int)v`` with a 1e-9 check), else None."""
    if not isinstance(expr, Num):
        return None
    value = int(expr.value)
    if value < 0 or abs(value - expr.value) > cs.TOLERANCE:
        return None
    return value


def _topology_nodes(topology: Mapping[str, Any]) -> list[dict[str, Any]]:
    return [n for n in topology.get("nodes") or [] if isinstance(n, dict)]


def build_contributions(
    graph: Graph,
    totals: Mapping[str, FloatArray],
    seeds: Mapping[str, Mapping[str, FloatArray]] | None = None,
    *,
    reuse: bool = True,
) -> Contributions:
    """Per-class series for every node the class pass reaches.

    ``seeds`` (node -> class -> series, telemetry replay's captured per-class files) stand in for
    the decomposition of those nodes, like upstream's class overrides; router routes still win.
    ``reuse=False`` recomputes every node on every walk, as the C# builder does (for tests).
    """
    builder = _Builder(graph, totals, seeds or {}, reuse)
    if not builder.tags and not builder.seeds:
        return Contributions()
    with np.errstate(all="ignore"):
        builder.walk()
        overridden, diagnostics = builder.routers()
        if overridden:
            builder.walk(overridden)
        updated: set[str] = set()
        for node in graph.nodes.values():
            if node.kind != "queue":
                continue
            inflow = builder.required(node.inflow)
            if inflow.by_class:
                builder.inherit(node.outflow, inflow, updated)
                builder.inherit(node.loss, inflow, updated)
        if updated:
            overridden |= updated
            builder.walk(overridden)
        updated = set()
        for tnode in _topology_nodes(graph.topology):
            semantics = tnode.get("semantics") or {}
            arrivals = str(semantics.get("arrivals") or "")
            if str(tnode.get("kind") or "").lower() != "servicewithbuffer" or not arrivals:
                continue
            if arrivals not in builder.out and arrivals not in totals:
                continue
            inflow = builder.required(arrivals)
            if inflow.by_class:
                builder.inherit(semantics.get("served"), inflow, updated)
                builder.inherit(semantics.get("errors"), inflow, updated)
        if updated:
            overridden |= updated
            builder.walk(overridden)
    classes = {n: dict(s.by_class) for n, s in builder.out.items() if s.by_class}
    return Contributions(classes, diagnostics)
