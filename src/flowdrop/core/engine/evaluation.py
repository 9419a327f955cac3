"""Graph evaluation: vectorised series mode, bin-by-bin feedback slices, queues, routers (§8-§9).

Every node is evaluated as a whole float64 array unless it sits in a SHIFT feedback slice, where
the recurrence forces bin-by-bin evaluation. Queues are a recurrence too, and run as a tight loop.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

import numpy as np

from flowdrop.core.engine.contributions import build_contributions
from flowdrop.core.engine.edges import EdgeSeries, materialize_edges
from flowdrop.core.engine.graph import Graph, Node, build_graph
from flowdrop.core.engine.queues import (
    QueueState,
    dispatch_mask,
    gate_bin,
    gate_series,
    normalise_limit,
    run_queue,
)
from flowdrop.core.engine.routing import router_overrides
from flowdrop.core.errors import ErrorCode, FlowdropError
from flowdrop.core.numerics import FloatArray
from flowdrop.core.templating.expressions import ExpressionError, evaluate_bin
from flowdrop.core.templating.model import UNEXPECTED, Model, unprocessable


@dataclass
class Evaluation(Mapping[str, FloatArray]):
    """All node series (after router overrides), per-class series and edge series."""

    series: dict[str, FloatArray]
    order: list[str]
    classes: dict[str, dict[str, FloatArray]] = field(default_factory=dict)
    edges: dict[str, FloatArray] = field(default_factory=dict)
    edge_classes: dict[str, dict[str, FloatArray]] = field(default_factory=dict)
    class_ids: list[str] = field(default_factory=list)
    graph: Graph | None = None
    # Every edge series in upstream's materializer order (``edges``/``edge_classes`` index it).
    edge_list: list[EdgeSeries] = field(default_factory=list)
    router_diagnostics: list[tuple[str, str, str]] = field(default_factory=list)

    def __getitem__(self, key: str) -> FloatArray:
        return self.series[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self.series)

    def __len__(self) -> int:
        return len(self.series)


def _error(message: str, node_id: str) -> FlowdropError:
    return FlowdropError(ErrorCode.TEMPLATE_INVALID, message, nodeId=node_id)


def _lookup(series: Mapping[str, FloatArray], name: str, node_id: str) -> FloatArray:
    try:
        return series[name]
    except KeyError:
        raise _error(
            f"The given key '{name}' was not present in the dictionary.", node_id
        ) from None


def gated_outflow(node: Node, series: Mapping[str, FloatArray], bins: int) -> FloatArray:
    """The outflow a queue actually subtracts, in series mode (dispatch schedule applied, §9.4)."""
    outflow = _lookup(series, node.outflow, node.id)
    if node.schedule is None:
        return outflow
    mask = dispatch_mask(bins, node.schedule.period, node.schedule.phase)
    capacity = _lookup(series, node.schedule.capacity, node.id) if node.schedule.capacity else None
    return gate_series(outflow, mask, capacity)


def _wip_limit(node: Node, series: Mapping[str, FloatArray]) -> float | FloatArray | None:
    if isinstance(node.wip_limit, str):
        return _lookup(series, node.wip_limit, node.id)
    return node.wip_limit


def _evaluate_node(node: Node, series: Mapping[str, FloatArray], bins: int) -> FloatArray:
    if node.kind == "const":
        assert node.values is not None
        if node.values.shape[0] != bins:
            raise _error(
                f"ConstSeriesNode {node.id}: values length {node.values.shape[0]} != grid length "
                f"{bins}",
                node.id,
            )
        return node.values
    if node.kind == "pmf":
        return np.full(bins, node.expected)
    if node.kind == "expr":
        assert node.compiled is not None
        try:
            return node.compiled(series, bins)
        except ExpressionError as exc:
            raise _error(f"Node {node.id}: {exc}", node.id) from None
    if node.kind == "queue":
        loss = _lookup(series, node.loss, node.id) if node.loss else None
        inflow = _lookup(series, node.inflow, node.id)
        outflow = gated_outflow(node, series, bins)
        depth, _ = run_queue(node.initial, inflow, outflow, loss, _wip_limit(node, series))
        return depth
    return _lookup(series, node.queue, node.id)


def _evaluate_slice(
    graph: Graph,
    members: list[str],
    series: dict[str, FloatArray],
    overrides: Mapping[str, FloatArray],
) -> None:
    bins = graph.bins
    columns = {m: np.zeros(bins) for m in members if m not in overrides}
    for m in members:
        if m in overrides:
            series[m] = overrides[m]

    def lookup(name: str, t: int) -> float:
        if t < 0:
            return 0.0
        column = columns.get(name)
        if column is not None:
            return float(column[t])
        return float(_lookup(series, name, name)[t])

    queues = {
        m: QueueState(graph.nodes[m].initial) for m in columns if graph.nodes[m].kind == "queue"
    }
    masks = {
        m: dispatch_mask(bins, schedule.period, schedule.phase)
        for m in queues
        if (schedule := graph.nodes[m].schedule) is not None
    }
    for t in range(bins):
        for member in columns:
            node = graph.nodes[member]
            if node.kind == "expr":
                assert node.expr is not None
                try:
                    columns[member][t] = evaluate_bin(node.expr, t, lookup)
                except ExpressionError as exc:
                    raise _error(f"Node {member}: {exc}", member) from None
                continue
            out = lookup(node.outflow, t)
            if node.schedule is not None:
                capacity = lookup(node.schedule.capacity, t) if node.schedule.capacity else None
                out = gate_bin(out, bool(masks[member][t]), capacity)
            loss = lookup(node.loss, t) if node.loss else 0.0
            limit = None
            if isinstance(node.wip_limit, str):
                limit = normalise_limit(lookup(node.wip_limit, t))
            elif node.wip_limit is not None:
                limit = normalise_limit(node.wip_limit)
            queues[member].step(lookup(node.inflow, t), out, loss, limit)
            columns[member][t] = queues[member].depth
    series.update(columns)


def evaluate_graph(
    graph: Graph, overrides: Mapping[str, FloatArray] | None = None
) -> dict[str, FloatArray]:
    """Evaluate every node in topological order; overridden nodes take the given arrays."""
    with np.errstate(all="ignore"):
        return _evaluate_all(graph, overrides or {})


def _evaluate_all(graph: Graph, overrides: Mapping[str, FloatArray]) -> dict[str, FloatArray]:
    series: dict[str, FloatArray] = {}
    slice_of = {member: members for members in graph.slices for member in members}
    done: set[str] = set()
    for node_id in graph.order:
        if node_id in done:
            continue
        if node_id in slice_of:
            members = slice_of[node_id]
            _evaluate_slice(graph, members, series, overrides)
            done.update(members)
            continue
        if node_id in overrides:
            series[node_id] = overrides[node_id]
        else:
            series[node_id] = _evaluate_node(graph.nodes[node_id], series, graph.bins)
        done.add(node_id)
    return series


def evaluate(
    model: Model, *, class_seeds: Mapping[str, Mapping[str, FloatArray]] | None = None
) -> Evaluation:
    """Evaluate the model: initial pass, router overrides, re-evaluation, classes and edges.

    ``class_seeds`` (node id -> class id -> series) replaces the class pass's decomposition of
    those nodes in both passes, as upstream's class overrides do; telemetry replay seeds the
    captured per-class series with it. Router-derived classes win over a seed for the same node.
    """
    seeds = {node: dict(per_class) for node, per_class in (class_seeds or {}).items()}
    try:
        graph = build_graph(model)
        with np.errstate(all="ignore"):  # NaN/inf follow IEEE by design; no RuntimeWarnings
            return _evaluate_model(model, graph, seeds)
    except UNEXPECTED as exc:
        raise unprocessable(exc) from exc


def _evaluate_model(
    model: Model, graph: Graph, seeds: dict[str, dict[str, FloatArray]]
) -> Evaluation:
    series = evaluate_graph(graph)
    if graph.routers:
        # Class routes split the router source by the class pass of the initial totals, as
        # upstream's RouterFlowMaterializer does (seeds stand in for captured classes on replay).
        initial = build_contributions(graph, series, seeds)
        overrides = router_overrides(graph, series, initial.classes)
        if overrides:
            series = evaluate_graph(graph, overrides)
    contributions = build_contributions(graph, series, seeds)
    edge_list = materialize_edges(graph.topology, graph, series, contributions.classes)
    edges: dict[str, FloatArray] = {}
    edge_classes: dict[str, dict[str, FloatArray]] = {}
    for item in edge_list:
        if item.class_id is None:
            edges[item.key] = item.values
        else:
            edge_classes.setdefault(item.key, {})[item.class_id] = item.values
    return Evaluation(
        series=series,
        order=list(graph.order),
        classes=contributions.classes,
        edges=edges,
        edge_classes=edge_classes,
        class_ids=[str(c.get("id")) for c in model.classes],
        graph=graph,
        edge_list=edge_list,
        router_diagnostics=contributions.diagnostics,
    )
