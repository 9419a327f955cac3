"""Model -> graph: node construction, engine-side synthesis, topological order, feedback slices.

Mirrors FlowTime's ``ModelCompiler`` (§7) and ``ModelParser``/``Graph`` (§8.1-8.4).
"""

from __future__ import annotations

import copy
import math
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from flowdrop.core.errors import ErrorCode, FlowdropError
from flowdrop.core.numerics import FloatArray, format_shortest
from flowdrop.core.templating.expressions import (
    Expr,
    ExpressionError,
    SeriesFn,
    compile_series,
    parse,
    references,
    same_bin_inputs,
)
from flowdrop.core.templating.model import Model
from flowdrop.core.templating.synthesis import snake

DEFAULT_RETRY_KERNEL = (0.0, 0.6, 0.3, 0.1)


def model_error(message: str, **details: Any) -> FlowdropError:
    return FlowdropError(ErrorCode.TEMPLATE_INVALID, message, **details)


@dataclass(frozen=True)
class Schedule:
    period: int
    phase: int = 0
    capacity: str | None = None


@dataclass
class Node:
    """One evaluable node; ``inputs`` are its same-bin dependencies."""

    id: str
    kind: str  # const | pmf | expr | queue | router
    inputs: list[str] = field(default_factory=list)
    values: FloatArray | None = None
    expected: float = 0.0
    expr: Expr | None = None
    compiled: SeriesFn | None = None
    lagged: set[str] = field(default_factory=set)
    inflow: str = ""
    outflow: str = ""
    loss: str | None = None
    schedule: Schedule | None = None
    initial: float = 0.0
    wip_limit: float | str | None = None
    queue: str = ""
    routes: list[tuple[str, tuple[str, ...], float]] = field(default_factory=list)


@dataclass
class Graph:
    bins: int
    nodes: dict[str, Node]
    order: list[str]
    slices: list[list[str]]
    class_tags: dict[str, str]
    routers: list[Node]
    topology: dict[str, Any] = field(default_factory=dict)


def retry_kernel(raw: Any) -> list[float]:
    """RetryKernelPolicy: default kernel, <= 32 taps, negatives -> 0, scaled to sum <= 1."""
    values = (
        [float(v) for v in raw] if isinstance(raw, list) and raw else list(DEFAULT_RETRY_KERNEL)
    )
    values = [v if math.isfinite(v) and v >= 0 else 0.0 for v in values[:32]]
    total = sum(values)
    return [v / total for v in values] if total > 1 else values


def own_semantics(topology: Any) -> Any:
    """``topology`` with its own node and constraint ``semantics`` dicts (and the containers
    leading to them); everything else is shared.

    Compiling and writing a run edit semantics values and nothing else of a topology, so this is
    the part of a deep copy they need (a deep copy of a topology cost 25x as much).
    """
    if not isinstance(topology, dict):
        return topology
    owned = copy.copy(topology)  # copy.copy keeps a dict subclass what it is, as deepcopy did
    for key in ("nodes", "constraints"):
        items = owned.get(key)
        if isinstance(items, list):
            owned[key] = [_with_own_semantics(item) for item in items]
    return owned


def _with_own_semantics(item: Any) -> Any:
    if not isinstance(item, dict):
        return item
    owned = copy.copy(item)
    semantics = owned.get("semantics")
    if isinstance(semantics, dict):
        owned["semantics"] = copy.copy(semantics)
    return owned


def compile_document(document: dict[str, Any]) -> dict[str, Any]:
    """Engine-side synthesis (§7): missing queue nodes and retry-echo convolutions.

    ``document`` is not modified: only topology semantics are edited here, and those are the
    result's own (:func:`own_semantics`); the nodes (with their values) are shared, read-only.
    """
    if "topology" in document:
        document = {**document, "topology": own_semantics(document["topology"])}
    topology = document.get("topology") or {}
    tnodes = topology.get("nodes") or []
    if not tnodes:
        return document
    nodes: list[dict[str, Any]] = list(document.get("nodes") or [])
    for tnode in tnodes:
        semantics = tnode.get("semantics") or {}
        kind = str(tnode.get("kind") or "").lower()
        existing = {str(n.get("id")).lower() for n in nodes}
        depth = str(semantics.get("queueDepth") or "")
        buffered = kind in ("servicewithbuffer", "queue", "dlq") and not depth.startswith("file:")
        if buffered and (not depth or depth == "self" or depth.lower() not in existing):
            arrivals = str(semantics.get("arrivals") or "")
            if not arrivals:
                raise model_error(
                    f"Topology node '{tnode.get('id')}' must define semantics.arrivals to "
                    "synthesize queue depth.",
                    nodeId=str(tnode.get("id")),
                )
            if depth and depth != "self":
                queue_id = depth
            else:
                base = snake(str(tnode.get("id"))) + "_queue"
                queue_id, k = base, 0
                while queue_id.lower() in existing:
                    k += 1
                    queue_id = f"{base}_{k}"
            synthesized: dict[str, Any] = {
                "id": queue_id,
                "kind": "serviceWithBuffer",
                "inflow": arrivals,
                "outflow": semantics.get("served") or semantics.get("capacity"),
            }
            if semantics.get("errors"):
                synthesized["loss"] = semantics["errors"]
            if tnode.get("dispatchSchedule"):
                synthesized["dispatchSchedule"] = tnode["dispatchSchedule"]
            synthesized["metadata"] = {"graph.hidden": "true", "series.origin": "derived"}
            nodes.append(synthesized)
            semantics["queueDepth"] = queue_id
        echo = str(semantics.get("retryEcho") or "")
        source = semantics.get("failures") or semantics.get("errors")
        existing = {str(n.get("id")).lower() for n in nodes}
        if echo and not echo.startswith("file:") and echo.lower() not in existing and source:
            kernel = ", ".join(
                format_shortest(k) for k in retry_kernel(semantics.get("retryKernel"))
            )
            nodes.append(
                {
                    "id": echo,
                    "kind": "expr",
                    "expr": f"CONV({source}, [{kernel}])",
                    "metadata": {"graph.hidden": "true", "series.origin": "derived"},
                }
            )
    return {**document, "nodes": nodes}


def _pmf_expected(node_id: str, pmf: Mapping[str, Any]) -> float:
    values = [float(v) for v in pmf.get("values") or []]
    probabilities = [float(p) for p in pmf.get("probabilities") or []]
    if not values or len(values) != len(probabilities):
        raise model_error(
            f"Node {node_id}: pmf values and probabilities must match", nodeId=node_id
        )
    if len(set(values)) != len(values):
        duplicate = next(v for v in values if values.count(v) > 1)
        raise model_error(
            f"Node {node_id}: duplicate PMF value '{format_shortest(duplicate)}'", nodeId=node_id
        )
    total = 0.0
    for p in probabilities:
        if p < 0 or not math.isfinite(p):
            raise model_error(
                f"Node {node_id}: PMF probabilities must be non-negative", nodeId=node_id
            )
        total += p
    if not total > 0 or not math.isfinite(total):
        raise model_error(
            f"Node {node_id}: PMF probabilities must sum to a positive value", nodeId=node_id
        )
    if abs(total - 1.0) > 1e-6:
        probabilities = [p / total for p in probabilities]
    expected = 0.0
    for v, p in zip(values, probabilities, strict=True):
        expected += v * p
    return expected


def _build_node(raw: Mapping[str, Any], bins: int) -> Node:
    node_id = str(raw.get("id"))
    kind = str(raw.get("kind") or "const").lower()
    if kind == "const":
        values = raw.get("values")
        if values is None:
            raise model_error(f"Node {node_id}: const nodes require values array", nodeId=node_id)
        return Node(node_id, "const", values=np.asarray(values, dtype=np.float64))
    if kind == "pmf":
        return Node(node_id, "pmf", expected=_pmf_expected(node_id, raw.get("pmf") or {}))
    if kind == "expr":
        source = str(raw.get("expr"))
        try:
            expr = parse(source)
        except ExpressionError as exc:
            raise model_error(
                f"Node {node_id}: error parsing expression '{source}': {exc}", nodeId=node_id
            ) from None
        _, lagged = references(expr)
        return Node(
            node_id,
            "expr",
            inputs=same_bin_inputs(expr),
            expr=expr,
            compiled=compile_series(expr),
            lagged=lagged,
        )
    if kind == "servicewithbuffer":
        inflow, outflow = str(raw.get("inflow") or ""), str(raw.get("outflow") or "")
        if not inflow or not outflow:
            raise model_error(
                f"Node {node_id}: serviceWithBuffer nodes require inflow and outflow",
                nodeId=node_id,
            )
        loss = str(raw["loss"]) if raw.get("loss") else None
        schedule = _schedule(node_id, raw.get("dispatchSchedule"))
        inputs = [inflow, outflow, *([loss] if loss else [])]
        if schedule and schedule.capacity:
            inputs.append(schedule.capacity)
        wip: float | str | None = None
        if raw.get("wipLimitSeries"):
            wip = str(raw["wipLimitSeries"])
            inputs.append(wip)
        elif raw.get("wipLimit") is not None:
            wip = float(raw["wipLimit"])
        return Node(
            node_id,
            "queue",
            inputs=list(dict.fromkeys(inputs)),
            inflow=inflow,
            outflow=outflow,
            loss=loss,
            schedule=schedule,
            wip_limit=wip,
        )
    if kind == "router":
        router_inputs = raw.get("inputs") or {}
        queue = str(router_inputs.get("queue") or "")
        routes_raw = raw.get("routes") or []
        if not queue or not routes_raw:
            raise model_error(
                f"Node {node_id}: router nodes require inputs.queue and at least one route",
                nodeId=node_id,
            )
        routes = []
        for route in routes_raw:
            classes = tuple(str(c).strip() for c in route.get("classes") or [] if str(c).strip())
            weight = float(route["weight"]) if route.get("weight") is not None else 1.0
            if not classes and not weight > 0:
                raise model_error(
                    f"Node {node_id}: route to '{route.get('target')}' requires classes or a "
                    "positive weight",
                    nodeId=node_id,
                )
            routes.append((str(route.get("target")), classes, weight))
        return Node(node_id, "router", inputs=[queue], queue=queue, routes=routes)
    raise model_error(f"Unknown node kind: {raw.get('kind')}", nodeId=node_id)


def _schedule(node_id: str, raw: Any) -> Schedule | None:
    if not isinstance(raw, Mapping):
        return None
    kind = str(raw.get("kind") or "")
    if kind and kind.lower() != "time-based":
        raise model_error(
            f"Node {node_id}: dispatchSchedule.kind '{kind}' is not supported.", nodeId=node_id
        )
    period = int(raw.get("periodBins") or 0)
    if period <= 0:
        raise model_error(
            f"Node {node_id}: dispatchSchedule.periodBins must be > 0.", nodeId=node_id
        )
    capacity = raw.get("capacitySeries")
    return Schedule(period, int(raw.get("phaseOffset") or 0), str(capacity) if capacity else None)


def topological_order(nodes: dict[str, Node]) -> list[str]:
    """Kahn's algorithm in insertion order (§8.3)."""
    ids = list(nodes)
    position = {node_id: i for i, node_id in enumerate(ids)}
    indegree = {node_id: 0 for node_id in ids}
    dependents: dict[str, list[str]] = {node_id: [] for node_id in ids}
    for node_id, node in nodes.items():
        for source in dict.fromkeys(node.inputs):
            if source in nodes:
                indegree[node_id] += 1
                dependents[source].append(node_id)
    for source in dependents:
        dependents[source].sort(key=position.__getitem__)
    ready = deque(node_id for node_id in ids if indegree[node_id] == 0)
    order: list[str] = []
    while ready:
        current = ready.popleft()
        order.append(current)
        for dependent in dependents[current]:
            indegree[dependent] -= 1
            if indegree[dependent] == 0:
                ready.append(dependent)
    if len(order) != len(ids):
        stuck = [node_id for node_id in ids if indegree[node_id] > 0]
        raise model_error(
            "Graph has a cycle (same-bin algebraic cycle, not resolvable by SHIFT)",
            nodes=stuck[:20],
        )
    return order


def feedback_slices(nodes: dict[str, Node], order: list[str]) -> list[list[str]]:
    """Contiguous slices of the order closed by lagged (SHIFT) references to later nodes (§8.4)."""
    index = {node_id: i for i, node_id in enumerate(order)}
    slices: list[list[str]] = []
    consumed = -1
    for i, node_id in enumerate(order):
        node = nodes[node_id]
        if i <= consumed or node.kind != "expr":
            continue
        later = [index[name] for name in node.lagged if name in index and index[name] > i]
        if not later:
            continue
        end = max(later)
        members = order[i : end + 1]
        for member in members:
            if nodes[member].kind not in ("expr", "queue"):
                raise model_error(
                    f"Unsupported node type in feedback subgraph: {nodes[member].kind}",
                    nodeId=member,
                )
        slices.append(members)
        consumed = end
    return slices


def build_graph(model: Model) -> Graph:
    """Compile the model document and build the evaluation graph."""
    document = compile_document(model.document)
    bins = model.grid.bins
    nodes: dict[str, Node] = {}
    for raw in document.get("nodes") or []:
        node = _build_node(raw, bins)
        if node.id in nodes:
            raise model_error(
                f"An item with the same key has already been added. Key: {node.id}", nodeId=node.id
            )
        nodes[node.id] = node
    for tnode in (document.get("topology") or {}).get("nodes") or []:
        depth = (tnode.get("semantics") or {}).get("queueDepth")
        if depth and depth in nodes and nodes[depth].kind == "queue":
            initial = (tnode.get("initialCondition") or {}).get("queueDepth")
            nodes[depth].initial = float(initial) if initial is not None else 0.0
    tags: dict[str, str] = {}
    for arrival in (document.get("traffic") or {}).get("arrivals") or []:
        tags[str(arrival.get("nodeId"))] = str(arrival.get("classId") or "*")
    order = topological_order(nodes)
    slices = feedback_slices(nodes, order)
    routers = [nodes[n] for n in order if nodes[n].kind == "router"]
    return Graph(bins, nodes, order, slices, tags, routers, document.get("topology") or {})
