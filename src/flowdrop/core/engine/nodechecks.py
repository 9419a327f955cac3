"""Per-topology-node rules of FlowTime's ``InvariantAnalyzer`` (§12), in upstream's order.

Series are the node's semantics resolved in the evaluated context. Conservation checks list the
first five offending bins; ``CheckDiff`` rules report the worst lhs/rhs ratio as ``value``.
Prerequisite-series rules are ``info``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from flowdrop.core.engine import prereqchecks
from flowdrop.core.engine.edgechecks import EdgeChecks, is_terminal
from flowdrop.core.engine.graph import Graph, Schedule
from flowdrop.core.engine.queues import dispatch_mask, gate_series, run_queue
from flowdrop.core.engine.warningtypes import (
    MAX_BINS,
    TOLERANCE,
    SeriesLookup,
    Warning,
    text,
    warning,
)
from flowdrop.core.numerics import FloatArray

_NEGATIVE = (
    ("arrivals", "arrivals_negative", "Arrivals produced negative values"),
    ("served", "served_negative", "Served produced negative values"),
    ("errors", "errors_negative", "Errors produced negative values"),
    ("attempts", "attempts_negative", "Attempts produced negative values"),
    ("failures", "failures_negative", "Failures produced negative values"),
    ("exhaustedFailures", "exhausted_failures_negative", "Exhausted failures produced negative values"),
    ("queueDepth", "queue_negative", "Queue depth produced negative values"),
    ("retryEcho", "retry_echo_negative", "Retry echo produced negative values"),
    ("retryBudgetRemaining", "retry_budget_negative", "Retry budget remaining produced negative values"),
)  # fmt: skip


def _first(bad: np.ndarray[Any, np.dtype[np.bool_]]) -> list[int]:
    return [int(i) for i in np.flatnonzero(bad)[:MAX_BINS]]


def check_negative(
    node_id: str, code: str, message: str, values: FloatArray | None
) -> list[Warning]:
    if values is None:
        return []
    bins = _first(values < -TOLERANCE)
    return [warning(node_id, code, message, bins, float(values[bins[0]]))] if bins else []


def check_diff(
    node_id: str, code: str, message: str, lhs: FloatArray, rhs: FloatArray, greater: bool
) -> list[Warning]:
    """``lhs - rhs > tol`` (or ``< -tol``); value is the worst ``|lhs / max(|rhs|, tol)|``."""
    if lhs.shape != rhs.shape:
        return []
    with np.errstate(all="ignore"):
        diff = lhs - rhs
        bad = diff > TOLERANCE if greater else diff < -TOLERANCE
        if not bad.any():
            return []
        base = np.where(np.abs(rhs) <= TOLERANCE, TOLERANCE, np.abs(rhs))
        ratios = np.abs(lhs / base)[bad]
    worst = 0.0
    for ratio in ratios.tolist():
        if ratio > worst:
            worst = ratio
    return [warning(node_id, code, message, _first(bad), worst)]


def effective_capacity(capacity: FloatArray, parallelism: Any, lookup: SeriesLookup) -> FloatArray:
    if isinstance(parallelism, int | float) and not isinstance(parallelism, bool):
        return capacity * float(parallelism) if np.isfinite(parallelism) else capacity
    factor = lookup.get(parallelism)
    if factor is None or factor.shape != capacity.shape:
        return capacity
    return np.where(np.isfinite(factor), capacity * factor, capacity)


def check_queue(
    node_id: str,
    queue: FloatArray,
    inflow: FloatArray,
    outflow: FloatArray,
    loss: FloatArray | None,
    seed: float,
    schedule: Schedule | None,
) -> list[Warning]:
    """Recompute the recurrence from the seed with the queue kernel (dispatch gating without a
    capacity override, as upstream's check applies it) and compare bin by bin."""
    if inflow.shape != outflow.shape or queue.shape != inflow.shape:
        return []
    out = outflow
    if schedule is not None:
        out = gate_series(
            outflow, dispatch_mask(len(outflow), schedule.period, schedule.phase), None
        )
    expected, _ = run_queue(seed, inflow, out, loss)
    with np.errstate(invalid="ignore"):
        bad = np.abs(queue - expected) > TOLERANCE  # a NaN depth compares false, as in C#
    bins = _first(bad)
    message = "Queue depth series does not match derived inflow/outflow accumulation"
    return [warning(node_id, "queue_depth_mismatch", message, bins)] if bins else []


class NodeChecks:
    def __init__(
        self,
        graph: Graph,
        topology: Mapping[str, Any],
        series: Mapping[str, FloatArray],
        edges: EdgeChecks,
    ) -> None:
        self.graph = graph
        self.lookup = SeriesLookup(series)
        self.edges = edges
        tnodes = [t for t in topology.get("nodes") or [] if isinstance(t, dict)]
        self.by_id = {str(t.get("id")).lower(): t for t in tnodes if str(t.get("id") or "").strip()}
        self.seeds: dict[str, float] = {}
        for tnode in tnodes:
            depth = text(tnode.get("semantics") or {}, "queueDepth")
            if depth:
                initial = (tnode.get("initialCondition") or {}).get("queueDepth")
                self.seeds[depth] = float(initial) if initial is not None else 0.0
        self.constraints = {
            str(c.get("id")).lower(): c
            for c in topology.get("constraints") or []
            if isinstance(c, dict) and str(c.get("id") or "").strip()
        }

    def schedule(self, node_id: str, semantics: Mapping[str, Any]) -> Schedule | None:
        for candidate in (node_id, text(semantics, "queueDepth").split(":", 1)[0]):
            node = self.graph.nodes.get(candidate) if candidate else None
            if node is not None and node.schedule is not None:
                return node.schedule
        return None

    def check(
        self, tnode: Mapping[str, Any], classes: Mapping[str, Mapping[str, FloatArray]]
    ) -> list[Warning]:
        node_id = str(tnode.get("id") or "")
        semantics = tnode.get("semantics")
        if not node_id.strip() or not isinstance(semantics, Mapping):
            return []
        kind = str(tnode.get("kind") or "").strip().lower()
        swb, service, dependency = (
            kind == "servicewithbuffer",
            kind in ("service", "router"),
            kind == "dependency",
        )
        incoming = self.edges.incoming.get(node_id.lower(), [])
        outgoing = self.edges.outgoing.get(node_id.lower(), [])
        terminal_queue = (
            kind == "queue" and bool(incoming) and all(map(is_terminal, incoming)) and not outgoing
        )
        get = self.lookup.get
        arrivals, served, errors = (
            get(semantics.get("arrivals")),
            get(semantics.get("served")),
            get(semantics.get("errors")),
        )
        attempts, failures, exhausted = (
            get(semantics.get("attempts")),
            get(semantics.get("failures")),
            get(semantics.get("exhaustedFailures")),
        )
        queue, capacity, budget = (
            get(semantics.get("queueDepth")),
            get(semantics.get("capacity")),
            get(semantics.get("retryBudgetRemaining")),
        )
        out: list[Warning] = []
        for constraint_id in tnode.get("constraints") or []:
            constraint = (
                self.constraints.get(str(constraint_id).lower())
                if str(constraint_id).strip()
                else None
            )
            if constraint is None:
                continue
            c_sem = constraint.get("semantics") or {}
            for field in ("arrivals", "served"):
                if get(c_sem.get(field)) is None:
                    message = f"Constraint '{constraint_id}' {field} series was not available."
                    out.append(warning(node_id, f"constraint_missing_{field}", message))
        effective = (
            effective_capacity(capacity, semantics.get("parallelism"), self.lookup)
            if capacity is not None
            else None
        )
        for field, code, message in _NEGATIVE:
            out += check_negative(node_id, code, message, get(semantics.get(field)))
        if arrivals is not None and served is not None and not swb and not dependency:
            out += check_diff(
                node_id,
                "served_exceeds_arrivals",
                "Served volume exceeded arrivals",
                served,
                arrivals,
                True,
            )
        if served is not None and effective is not None and (service or swb):
            out += check_diff(
                node_id,
                "served_exceeds_capacity",
                "Served volume exceeded effective capacity",
                served,
                effective,
                True,
            )
        if arrivals is not None and errors is not None:
            out += check_diff(
                node_id,
                "errors_exceed_arrivals",
                "Errors exceeded arrivals",
                errors,
                arrivals,
                True,
            )
        if arrivals is not None and attempts is not None:
            out += check_diff(
                node_id,
                "attempts_below_arrivals",
                "Attempts were lower than arrivals",
                attempts,
                arrivals,
                False,
            )
        if attempts is not None and failures is not None:
            out += check_diff(
                node_id,
                "failures_exceed_attempts",
                "Failed retries exceeded total attempts",
                failures,
                attempts,
                True,
            )
        if exhausted is not None and failures is not None:
            out += check_diff(
                node_id,
                "exhausted_exceeds_failures",
                "Exhausted retries exceeded total failures",
                exhausted,
                failures,
                True,
            )
        elif exhausted is not None and errors is not None:
            out += check_diff(
                node_id,
                "exhausted_exceeds_errors",
                "Exhausted retries exceeded total errors",
                exhausted,
                errors,
                True,
            )
        schedule = self.schedule(node_id, semantics)
        if queue is not None and arrivals is not None and served is not None:
            seed = self.seeds.get(text(semantics, "queueDepth"), 0.0)
            out += check_queue(node_id, queue, arrivals, served, errors, seed, schedule)
        out += self.edges.conservation(node_id, served, arrivals)
        if classes:
            out += self.edges.class_conservation(
                node_id, classes.get(text(semantics, "served")), True
            )
            out += self.edges.class_conservation(
                node_id, classes.get(text(semantics, "arrivals")), False
            )
        out += prereqchecks.prerequisites(
            self._has_attempts,
            node_id,
            kind,
            semantics,
            tnode,
            arrivals,
            served,
            queue,
            capacity,
            effective,
            exhausted,
            budget,
            incoming,
        )
        if schedule is not None:
            out += prereqchecks.dispatch(self.lookup, node_id, schedule, arrivals, served)
        for field, code in (
            ("processingTimeMsSum", "missing_processing_time_series"),
            ("servedCount", "missing_served_count_series"),
        ):
            if (service or text(semantics, field)) and get(semantics.get(field)) is None:
                out.append(warning(node_id, code, prereqchecks.INFO[code], severity="info"))
        if (
            kind != "dlq"
            and not terminal_queue
            and not swb
            and queue is not None
            and served is not None
        ):
            out += prereqchecks.latency(node_id, queue, served, arrivals, schedule is not None)
        if kind == "dlq":
            out += prereqchecks.dlq(node_id, incoming, outgoing)
        return out

    def _has_attempts(self, edge: Mapping[str, Any]) -> bool:
        source = str(edge.get("from") or "").strip().split(":", 1)[0]
        tnode = self.by_id.get(source.lower()) if source else None
        semantics = tnode.get("semantics") if tnode is not None else None
        return isinstance(semantics, Mapping) and bool(text(semantics, "attempts"))
