"""Prerequisite, dispatch, latency and DLQ rules of FlowTime's ``InvariantAnalyzer`` (§12).

Mostly ``info``: a series a view needs is missing, a dispatch gate never opens, latency cannot be
computed while work waits, or a DLQ is wired with non-terminal edges.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from flowdrop.core.engine.edgechecks import is_effort, is_terminal, label
from flowdrop.core.engine.graph import Schedule
from flowdrop.core.engine.warningtypes import TOLERANCE, SeriesLookup, Warning, text, warning
from flowdrop.core.numerics import FloatArray

INFO = {
    "missing_capacity_series": "Capacity series was not available; utilization cannot be computed.",
    "capacity_all_zero": "Effective capacity series is zero for all bins; utilization will be unavailable.",
    "missing_dependency_arrivals": "Dependency arrivals series was not available; dependency load cannot be computed.",
    "missing_dependency_served": "Dependency served series was not available; dependency utilization cannot be computed.",
    "missing_served_series": "Served/output series was not available; utilization cannot be computed.",
    "dependency_missing_effort_edges": "Dependency has no incoming effort edges; attempt pressure cannot be represented.",
    "dependency_retry_pressure_missing": "Dependency errors are defined but upstream attempt series are missing; retry pressure will be invisible.",
    "missing_queue_depth_series": "Queue depth series was not available; queue overlays may be incomplete.",
    "missing_processing_time_series": "Processing time series was not available; service time cannot be computed.",
    "missing_served_count_series": "Served count series was not available; service time cannot be computed.",
    "dispatch_missing_served_series": "Dispatch schedule configured but served/output series was not available.",
    "dispatch_never_releases": "Dispatch schedule never released inventory across the simulated window; check period and phase alignment.",
}  # fmt: skip


def _sum_positive(values: FloatArray) -> float:
    total = 0.0
    for value in values.tolist():
        if np.isfinite(value):
            total += max(0.0, value)
    return total


def prerequisites(
    has_attempts: Callable[[Mapping[str, Any]], bool],
    node_id: str,
    kind: str,
    semantics: Mapping[str, Any],
    tnode: Mapping[str, Any],
    arrivals: FloatArray | None,
    served: FloatArray | None,
    queue: FloatArray | None,
    capacity: FloatArray | None,
    effective: FloatArray | None,
    exhausted: FloatArray | None,
    budget: FloatArray | None,
    incoming: list[Mapping[str, Any]],
) -> list[Warning]:
    service, dependency = kind in ("service", "router"), kind == "dependency"
    out: list[Warning] = []

    def info(code: str) -> None:
        out.append(warning(node_id, code, INFO[code], severity="info"))

    if (service or text(semantics, "capacity")) and capacity is None:
        info("missing_capacity_series")
    max_attempts = semantics.get("maxAttempts") is not None
    if max_attempts and exhausted is None:
        out.append(
            warning(
                node_id,
                "missing_exhausted_failures_series",
                "maxAttempts was configured but exhaustedFailures series was not produced.",
            )
        )
    if max_attempts and budget is None:
        out.append(
            warning(
                node_id,
                "missing_retry_budget_series",
                "maxAttempts was configured but retryBudgetRemaining series was not produced.",
            )
        )
    elif effective is not None and bool((np.abs(effective) <= TOLERANCE).all()):
        info("capacity_all_zero")
    if dependency and arrivals is None:
        info("missing_dependency_arrivals")
    if dependency and served is None:
        info("missing_dependency_served")
    elif (service or text(semantics, "served")) and served is None:
        info("missing_served_series")
    if dependency:
        effort = [e for e in incoming if is_effort(e)]
        if not effort:
            info("dependency_missing_effort_edges")
        if text(semantics, "errors") and effort and not any(has_attempts(e) for e in effort):
            info("dependency_retry_pressure_missing")
    if (kind in ("queue", "dlq") or text(semantics, "queueDepth")) and queue is None:
        info("missing_queue_depth_series")
    return out


def dispatch(
    lookup: SeriesLookup,
    node_id: str,
    schedule: Schedule,
    arrivals: FloatArray | None,
    served: FloatArray | None,
) -> list[Warning]:
    out: list[Warning] = []
    if schedule.capacity and lookup.get(schedule.capacity) is None:
        message = f"Dispatch schedule references capacity series '{schedule.capacity}' but it was not produced."
        out.append(warning(node_id, "dispatch_capacity_missing", message))
    if served is None:
        code = "dispatch_missing_served_series"
        return [*out, warning(node_id, code, INFO[code], severity="info")]
    if arrivals is None or _sum_positive(arrivals) <= TOLERANCE:
        return out
    if _sum_positive(served) <= TOLERANCE:
        out.append(
            warning(
                node_id,
                "dispatch_never_releases",
                INFO["dispatch_never_releases"],
                severity="info",
            )
        )
    return out


def latency(
    node_id: str,
    queue: FloatArray,
    served: FloatArray,
    arrivals: FloatArray | None,
    gated: bool,
) -> list[Warning]:
    length = min(queue.shape[0], arrivals.shape[0]) if arrivals is not None else queue.shape[0]
    q, s = queue[:length], served[:length]
    with np.errstate(all="ignore"):
        bad = np.isfinite(q) & np.isfinite(s) & (s <= TOLERANCE) & (np.abs(q) > TOLERANCE)
    if not bad.any():
        return []
    bins = [int(i) for i in np.flatnonzero(bad)]  # upstream lists every bin here
    if gated:
        message = "Dispatch gate was closed while backlog was present; latency will display as Paused (gate closed)."
        return [warning(node_id, "queue_latency_gate_closed", message, bins, severity="info")]
    message = (
        "Queue latency could not be computed where served was zero and queue depth was positive."
    )
    return [warning(node_id, "queue_latency_unreported", message, bins, severity="info")]


def dlq(
    node_id: str, incoming: list[Mapping[str, Any]], outgoing: list[Mapping[str, Any]]
) -> list[Warning]:
    out: list[Warning] = []
    bad_in = [label(e) for e in incoming if not is_terminal(e)]
    if bad_in:
        message = f"DLQ nodes must only receive terminal edges ({', '.join(bad_in)})."
        out.append(warning(node_id, "dlq_non_terminal_inbound", message))
    bad_out = [label(e) for e in outgoing if not is_terminal(e)]
    if bad_out:
        message = f"DLQ nodes must emit terminal edges ({', '.join(bad_out)})."
        out.append(warning(node_id, "dlq_non_terminal_outbound", message))
    return out
