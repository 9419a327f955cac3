"""Run warnings (a subset of FlowTime's ``InvariantAnalyzer``, §12).

Checks conservation-style invariants per topology node on the final series; warnings never fail a
run. Only the first five offending bins are listed.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import numpy.typing as npt

from flowdrop.core.engine.edges import edge_identifier
from flowdrop.core.engine.evaluation import Evaluation
from flowdrop.core.engine.queues import dispatch_mask, gate_series, run_queue
from flowdrop.core.numerics import FloatArray, format_shortest

TOLERANCE = 1e-6
_NEGATIVE = (
    ("arrivals", "arrivals_negative"),
    ("served", "served_negative"),
    ("errors", "errors_negative"),
    ("attempts", "attempts_negative"),
    ("failures", "failures_negative"),
    ("exhaustedFailures", "exhausted_failures_negative"),
    ("queueDepth", "queue_negative"),
    ("retryEcho", "retry_echo_negative"),
    ("retryBudgetRemaining", "retry_budget_negative"),
)


def _warning(
    code: str, message: str, node_id: str | None, bins: list[int] | None, value: float | None
) -> dict[str, Any]:
    return {
        "code": code,
        "message": message,
        "nodeId": node_id,
        "bins": bins,
        "value": value,
        "severity": "warning",
        "edgeIds": None,
    }


def _offending(mask: npt.NDArray[np.bool_]) -> list[int]:
    return [int(i) for i in np.flatnonzero(mask)[:5]]


def _flag(
    warnings: list[dict[str, Any]],
    bad: npt.NDArray[np.bool_],
    code: str,
    message: str,
    node_id: str,
    values: FloatArray,
) -> None:
    """Append one warning when any bin is ``bad``.

    ``message`` is a template: ``{node}`` is the node id, ``{count}`` the number of bad bins.
    """
    if not bad.any():
        return
    first = _offending(bad)
    text = message.format(node=node_id, count=int(bad.sum()))
    warnings.append(_warning(code, text, node_id, first, float(values[first[0]])))


def analyze(topology: Mapping[str, Any], evaluation: Evaluation) -> list[dict[str, Any]]:
    """Warnings for the run, in topology node order then edge order."""
    warnings: list[dict[str, Any]] = []
    series = evaluation.series
    for tnode in topology.get("nodes") or []:
        tid = str(tnode.get("id"))
        kind = str(tnode.get("kind") or "service").lower()
        semantics = tnode.get("semantics") or {}

        def get(field: str, sem: Mapping[str, Any] = semantics) -> FloatArray | None:
            ref = sem.get(field)
            return series.get(str(ref)) if isinstance(ref, str) and ref else None

        for field, code in _NEGATIVE:
            values = get(field)
            if values is None:
                continue
            bad = values < -TOLERANCE
            message = "Node '{node}' has negative " + field + " values."
            _flag(warnings, bad, code, message, tid, values)
        arrivals, served, errors = get("arrivals"), get("served"), get("errors")
        buffered = kind in ("servicewithbuffer", "queue", "dlq") or bool(
            semantics.get("queueDepth")
        )
        if arrivals is not None and served is not None and not buffered and kind != "dependency":
            bad = served - arrivals > TOLERANCE
            _flag(
                warnings,
                bad,
                "served_exceeds_arrivals",
                "Node '{node}' serves more than arrives in {count} bin(s).",
                tid,
                served - arrivals,
            )
        capacity = get("capacity")
        if (
            served is not None
            and capacity is not None
            and kind in ("service", "router", "servicewithbuffer")
        ):
            parallelism = semantics.get("parallelism")
            factor: FloatArray | float = 1.0
            if isinstance(parallelism, int | float) and not isinstance(parallelism, bool):
                factor = float(parallelism)
            elif isinstance(parallelism, str) and parallelism in series:
                factor = np.where(np.isfinite(series[parallelism]), series[parallelism], 1.0)
            bad = served - capacity * factor > TOLERANCE
            _flag(
                warnings,
                bad,
                "served_exceeds_capacity",
                "Node '{node}' serves more than its capacity in {count} bin(s).",
                tid,
                served,
            )
        if arrivals is not None and errors is not None:
            bad = errors - arrivals > TOLERANCE
            _flag(
                warnings,
                bad,
                "errors_exceed_arrivals",
                "Node '{node}' reports more errors than arrivals in {count} bin(s).",
                tid,
                errors,
            )
        queue = get("queueDepth")
        if queue is not None and arrivals is not None and served is not None:
            outflow = served
            schedule = tnode.get("dispatchSchedule")
            if isinstance(schedule, Mapping) and int(schedule.get("periodBins") or 0) > 0:
                mask = dispatch_mask(
                    len(served), int(schedule["periodBins"]), int(schedule.get("phaseOffset") or 0)
                )
                cap_ref = schedule.get("capacitySeries")
                capacity = series[str(cap_ref)] if cap_ref and str(cap_ref) in series else None
                outflow = gate_series(served, mask, capacity)
            seed = float((tnode.get("initialCondition") or {}).get("queueDepth") or 0.0)
            expected, _ = run_queue(seed, arrivals, outflow, errors)
            bad = np.abs(expected - queue) > TOLERANCE
            _flag(
                warnings,
                bad,
                "queue_depth_mismatch",
                "Queue depth for node '{node}' does not match arrivals, served and errors.",
                tid,
                queue,
            )
    for edge in topology.get("edges") or []:
        lag = edge.get("lag")
        if isinstance(lag, int | float) and lag > 0:
            eid = edge_identifier(edge)
            item = _warning(
                "edge_behavior_violation_lag",
                f"Edge '{eid}' applies a lag of {format_shortest(float(lag))} bin(s). Model "
                "transit as an explicit node instead of edge behavior.",
                "engine",
                None,
                float(lag),
            )
            item["edgeIds"] = [eid]
            warnings.append(item)
    return warnings
