"""Derived metrics and constraint allocation (§9.7, §9.12, §16.2, §16.4)."""

from __future__ import annotations

import pytest

from flowdrop.core.engine.metrics import (
    allocate,
    cycle_time,
    flow_efficiency,
    kingman_ms,
    latency_minutes,
    service_time_ms,
    utilization,
)


def test_values_from_nan_policy_tests() -> None:
    """Utilization 5/10, no capacity -> None, latency 10/5 x 60 min = 120, efficiency 50/100."""
    assert utilization(5, 10) == 0.5
    assert utilization(5, 0) is None and utilization(5, None) is None
    assert utilization(5, 5, 2) == 0.5
    assert latency_minutes(10, 5, 60) == 120
    assert latency_minutes(10, 0, 60) is None
    assert flow_efficiency(50, 100) == 0.5


def test_service_and_cycle_time() -> None:
    """Cycle time is None only when both parts are None."""
    assert service_time_ms(600, 3) == 200
    assert service_time_ms(600, 0) is None
    assert cycle_time(None, 200) == 200
    assert cycle_time(None, None) is None
    assert flow_efficiency(None, 100) is None


def test_kingman_is_defined_for_rho_between_zero_and_one() -> None:
    """rho/(1-rho) x (Ca^2+Cs^2)/2 x mean service."""
    assert kingman_ms(0.5, 1, 1, 100) == pytest.approx(100)
    assert kingman_ms(1.0, 1, 1, 100) is None


@pytest.mark.parametrize(
    ("demands", "capacity", "expected"),
    [
        ([60, 60], 80, [40, 40]),  # constraint-proportional
        ([20, 30], 80, [20, 30]),  # constraint-below-capacity
        ([45, 30], 50, [30, 20]),  # router-with-constraint caps [30, 20]
        ([10, -5, float("nan")], 100, [10, 0, 0]),
        ([10, 10], 0, [0, 0]),
    ],
)
def test_constraint_allocation(
    demands: list[float], capacity: float, expected: list[float]
) -> None:
    """ConstraintAllocator: demands within capacity pass, otherwise a proportional share."""
    assert allocate(demands, capacity) == expected
