"""Per-class decomposition of node totals (``ClassContributionBuilder``, §9.8).

Classes are a reporting layer: totals never depend on them. Tagged nodes (``traffic.arrivals``)
carry one class; expressions propagate shares symbolically; queues run the recurrence per class
with outflow and loss split by the inflow's class mix. After each node, class values are rescaled
to sum to the node's total.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from flowdrop.core import numerics as nx
from flowdrop.core.engine.graph import Graph, Node
from flowdrop.core.engine.queues import dispatch_mask, gate_series, run_queue
from flowdrop.core.numerics import FloatArray
from flowdrop.core.templating.expressions import Arr, BinOp, Call, Expr, Num, Ref

Classes = dict[str, FloatArray]


def _scaled(classes: Classes, result: FloatArray, base: FloatArray) -> Classes:
    ratio = nx.divide(result, base)
    return {c: v * ratio for c, v in classes.items()}


def _expr_classes(
    expr: Expr, series: Mapping[str, FloatArray], known: Mapping[str, Classes], bins: int
) -> tuple[FloatArray, Classes]:
    if isinstance(expr, Num):
        return np.full(bins, expr.value), {}
    if isinstance(expr, Arr):
        return np.zeros(bins), {}
    if isinstance(expr, Ref):
        return series[expr.name], dict(known.get(expr.name, {}))
    if isinstance(expr, BinOp):
        lt, lc = _expr_classes(expr.left, series, known, bins)
        rt, rc = _expr_classes(expr.right, series, known, bins)
        with np.errstate(all="ignore"):
            if expr.op in "+-":
                sign = 1.0 if expr.op == "+" else -1.0
                names = list(dict.fromkeys([*lc, *rc]))
                zero = np.zeros(bins)
                total = lt + sign * rt
                return total, {c: lc.get(c, zero) + sign * rc.get(c, zero) for c in names}
            if expr.op == "*":
                total = lt * rt
                if lc:
                    return total, {c: v * rt for c, v in lc.items()}
                return total, {c: v * lt for c, v in rc.items()}
            total = nx.divide(lt, rt)
            return total, _scaled(lc, total, lt)
    return _call_classes(expr, series, known, bins)


def _call_classes(
    node: Call, series: Mapping[str, FloatArray], known: Mapping[str, Classes], bins: int
) -> tuple[FloatArray, Classes]:
    from flowdrop.core.templating.expressions import evaluate_series

    total = evaluate_series(node, series, bins)
    name = node.name.upper()
    args = [_expr_classes(a, series, known, bins) for a in node.args if not isinstance(a, Arr)]
    if name == "SHIFT":
        lag = int(node.args[1].value) if isinstance(node.args[1], Num) else 0
        return total, {c: nx.shift(v, lag) for c, v in args[0][1].items()}
    if name == "CONV":
        kernel = node.args[1]
        taps = list(kernel.values) if isinstance(kernel, Arr) else [getattr(kernel, "value", 0.0)]
        return total, {c: nx.convolve(v, taps) for c, v in args[0][1].items()}
    if name in ("MIN", "MAX") and len(args) == 2:
        (at, ac), (bt, bc) = args
        # The operand that produced the result lends its class mix; an operand without class
        # data (a literal) defers to the other one so classes still sum to the total.
        use_a = (total == at) if (ac and bc) else np.full(bins, bool(ac))
        names = list(dict.fromkeys([*ac, *bc]))
        zero = np.zeros(bins)
        picked = {
            c: np.where(
                use_a,
                ac.get(c, zero) * nx.divide(total, at),
                bc.get(c, zero) * nx.divide(total, bt),
            )
            for c in names
        }
        return total, picked
    source = args[-1] if name == "PULSE" and args else (args[0] if args else None)
    if source is None or not source[1]:
        return total, {}
    return total, _scaled(source[1], total, source[0])


def _queue_classes(
    node: Node, series: Mapping[str, FloatArray], known: Mapping[str, Classes], total: FloatArray
) -> Classes:
    inflow_classes = known.get(node.inflow, {})
    if not inflow_classes:
        return {}
    inflow = series[node.inflow]
    outflow = series[node.outflow]
    if node.schedule is not None:
        mask = dispatch_mask(len(total), node.schedule.period, node.schedule.phase)
        capacity = series[node.schedule.capacity] if node.schedule.capacity else None
        outflow = gate_series(outflow, mask, capacity)
    loss = series[node.loss] if node.loss else None
    first = float(nx.safe(inflow)[0]) if len(inflow) else 0.0
    out: Classes = {}
    for c, values in inflow_classes.items():
        share = nx.divide(values, inflow)
        seed = node.initial * (float(values[0]) / first if first > 0 else 1 / len(inflow_classes))
        out[c], _ = run_queue(
            seed, values, nx.safe(outflow) * share, None if loss is None else nx.safe(loss) * share
        )
    return out


def rescale(classes: Classes, total: FloatArray) -> Classes:
    """Scale class values to sum to ``total`` where their sum is positive and differs (> 1e-9)."""
    if not classes:
        return classes
    summed = np.sum(np.stack(list(classes.values())), axis=0)
    fix = (summed > 0) & (np.abs(summed - total) > 1e-9)
    if not fix.any():
        return classes
    factor = np.where(fix, nx.divide(total, summed), 1.0)
    return {c: v * factor for c, v in classes.items()}


def class_contributions(
    graph: Graph,
    series: Mapping[str, FloatArray],
    seeded: Mapping[str, Classes] | None = None,
) -> dict[str, Classes]:
    """Per-class series for every node that carries class information."""
    tags = {n: c for n, c in graph.class_tags.items() if c and c != "*"}
    if not tags and not seeded:
        return {}
    known: dict[str, Classes] = {}
    for node_id in graph.order:
        node = graph.nodes[node_id]
        total = series[node_id]
        classes: Classes
        if seeded and node_id in seeded:
            classes = dict(seeded[node_id])
        elif node_id in tags:
            classes = {tags[node_id]: total}
        elif node.kind == "expr" and node.expr is not None:
            with np.errstate(all="ignore"):
                _, classes = _expr_classes(node.expr, series, known, graph.bins)
        elif node.kind == "queue":
            classes = _queue_classes(node, series, known, total)
        elif node.kind == "router":
            classes = dict(known.get(node.queue, {}))
        else:
            classes = {}
        if classes:
            known[node_id] = rescale(classes, total)
    return known
