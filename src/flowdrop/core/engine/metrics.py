"""Derived metrics and constraint allocation (§9.7, §9.12).

FlowTime computes these in its state API (not in run CSVs); they are exposed here for status
views and reports. ``None`` means "not defined" (a denominator <= 0), as upstream's nulls.
"""

from __future__ import annotations

import math
from collections.abc import Sequence


def utilization(served: float, capacity: float | None, parallelism: float = 1.0) -> float | None:
    """served / (capacity x parallelism); None without positive capacity."""
    if capacity is None:
        return None
    effective = capacity * (parallelism if math.isfinite(parallelism) else 1.0)
    return served / effective if effective > 0 else None


def latency_minutes(queue: float, served: float, bin_minutes: float) -> float | None:
    """queue / served x bin minutes (Little's law per bin); None when nothing is served."""
    return queue / served * bin_minutes if served > 0 else None


def service_time_ms(processing_time_ms_sum: float, served_count: float) -> float | None:
    """Mean service time; None when nothing was counted."""
    return processing_time_ms_sum / served_count if served_count > 0 else None


def cycle_time(queue_time: float | None, service_time: float | None) -> float | None:
    """queue time + service time; None only when both are None."""
    if queue_time is None and service_time is None:
        return None
    return (queue_time or 0.0) + (service_time or 0.0)


def flow_efficiency(service_time: float | None, cycle: float | None) -> float | None:
    """service time / cycle time."""
    if service_time is None or cycle is None or cycle <= 0:
        return None
    return service_time / cycle


def kingman_ms(rho: float, ca: float, cs: float, mean_service_ms: float) -> float | None:
    """Kingman's approximation of queueing delay; defined for 0 < rho < 1."""
    if not 0 < rho < 1:
        return None
    return rho / (1 - rho) * (ca * ca + cs * cs) / 2 * mean_service_ms


def allocate(demands: Sequence[float], capacity: float) -> list[float]:
    """``ConstraintAllocator``: proportional share of capacity when demand exceeds it."""
    if not capacity > 0:
        return [0.0] * len(demands)
    clean = [d if math.isfinite(d) and d > 0 else 0.0 for d in demands]
    total = 0.0
    for d in clean:
        total += d
    if total <= 0:
        return [0.0] * len(demands)
    if total <= capacity:
        return clean
    return [capacity * d / total for d in clean]
