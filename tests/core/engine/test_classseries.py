"""Per-class series algebra: upstream's ClassSeries operations, bin for bin."""

from __future__ import annotations

import numpy as np

from flowdrop.core.engine import classseries as cs
from flowdrop.core.engine.classseries import ClassSeries


def arr(*values: float) -> np.ndarray:
    return np.array(values, dtype=np.float64)


def test_normalize_rescales_only_positive_sums_that_differ() -> None:
    classes = {"A": arr(1, 1, 0, 1), "B": arr(1, 1, 0, -1)}
    cs.normalize(classes, arr(4, 2 + 1e-12, 5, 3))
    assert classes["A"].tolist() == [2.0, 1.0, 0.0, 1.0]  # bin 1 within 1e-9, bins 2-3 sum <= 0
    assert classes["B"].tolist() == [2.0, 1.0, 0.0, -1.0]


def test_normalize_with_a_nan_total_rescales_to_nan() -> None:
    """C# compares |sum - total| <= tol, which is false for NaN, so the bin is rescaled."""
    classes = {"A": arr(1.0)}
    cs.normalize(classes, arr(np.nan))
    assert np.isnan(classes["A"][0])


def test_min_lends_the_mix_of_the_operand_that_produced_the_result() -> None:
    left = ClassSeries(arr(4, 1), {"A": arr(3, 0.5), "B": arr(1, 0.5)})
    right = ClassSeries(arr(2, 2))
    result = cs.min_max(left, right, use_min=True)
    assert result.total.tolist() == [2.0, 1.0]
    assert result.by_class["A"].tolist() == [1.5, 0.5]
    assert result.by_class["B"].tolist() == [0.5, 0.5]


def test_dispatch_gating_mutates_the_outflow_in_place() -> None:
    """Upstream gates the outflow node's own class series (its per-class CSVs show the gate)."""
    outflow = ClassSeries(arr(4, 4, 4, 4), {"A": arr(3, 3, 3, 3), "B": arr(1, 1, 1, 1)})
    cs.gate_outflow(outflow, ClassSeries(arr(2, 2, 2, 2)), period=2, phase=1)
    assert outflow.total.tolist() == [0.0, 2.0, 0.0, 2.0]
    assert outflow.by_class["A"].tolist() == [0.0, 1.5, 0.0, 1.5]


def test_backlog_seed_quirk_and_split() -> None:
    inflow = ClassSeries(arr(3, 3), {"A": arr(2, 2), "B": arr(1, 1)})
    none = cs.zero(2)
    queue = cs.backlog(arr(6, 9), inflow, none, none, 0.0)
    # zero seed + positive bin-0 inflow -> seed 3, split 2:1; then +inflow each bin
    assert queue.by_class["A"].tolist() == [4.0, 6.0]
    assert queue.by_class["B"].tolist() == [2.0, 3.0]


def test_add_keeps_left_classes_first_and_subtract_negates_right_only_classes() -> None:
    left = ClassSeries(arr(1.0), {"A": arr(1.0)})
    right = ClassSeries(arr(2.0), {"B": arr(2.0)})
    assert list(cs.add(left, right).by_class) == ["A", "B"]
    assert cs.subtract(left, right).by_class["B"].tolist() == [-2.0]


def test_divide_and_mod_follow_upstream_zero_rules() -> None:
    left = ClassSeries(arr(4.0, 4.0), {"A": arr(4.0, 4.0)})
    divided = cs.divide(left, ClassSeries(arr(2.0, 0.0)))
    assert divided.total.tolist() == [2.0, 0.0] and divided.by_class["A"].tolist() == [2.0, 0.0]
    moded = cs.mod(left, ClassSeries(arr(3.0, 1e-10)))
    assert moded.total.tolist() == [1.0, 0.0]
