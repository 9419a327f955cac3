"""Per-class series algebra: upstream's ClassSeries operations, bin for bin."""

from __future__ import annotations

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from flowdrop.core.engine import classseries as cs
from flowdrop.core.engine.classseries import ClassSeries, min_max


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


def _reference_min_max(left: ClassSeries, right: ClassSeries, *, use_min: bool) -> ClassSeries:
    """Upstream's per-bin loop as it was ported first (the vectorised min_max must match it)."""
    import math

    from flowdrop.core import numerics as nx
    from flowdrop.core.engine.classseries import TOLERANCE, normalize

    def pick(lv: float, rv: float, value: float) -> dict[str, np.ndarray]:
        if abs(lv - value) < TOLERANCE and left.by_class:
            return left.by_class
        if abs(rv - value) < TOLERANCE and right.by_class:
            return right.by_class
        return left.by_class or right.by_class

    result = (nx.minimum if use_min else nx.maximum)(left.total, right.total)
    bins = result.shape[0]
    lt, rt, values = left.total.tolist(), right.total.tolist(), result.tolist()
    rows: dict[str, list[float]] = {}
    for i in range(bins):
        source = pick(lt[i], rt[i], values[i])
        if not source:
            continue
        samples = [float(v[i]) for v in source.values()]
        total = 0.0
        for sample in samples:
            if math.isfinite(sample):
                total += sample
        if not total > 0.0 or not math.isfinite(total):
            for class_id in source:
                rows.setdefault(class_id, [0.0] * bins)
            continue
        scale = 0.0 if values[i] <= 0.0 else values[i] / total
        for class_id, sample in zip(source, samples, strict=True):
            scaled = sample * scale
            if math.isfinite(scaled):
                rows.setdefault(class_id, [0.0] * bins)[i] += scaled
    classes = {c: np.asarray(v, dtype=np.float64) for c, v in rows.items()}
    normalize(classes, result)
    return ClassSeries(result, classes)


_sample = st.one_of(
    st.floats(-50, 50),
    st.sampled_from([0.0, -0.0, float("nan"), float("inf"), -float("inf"), 1e-10]),
)


@st.composite
def _class_series(draw: st.DrawFn, bins: int) -> ClassSeries:
    names = draw(st.lists(st.sampled_from(["a", "b", "c", "d"]), unique=True, max_size=3))
    row = st.lists(_sample, min_size=bins, max_size=bins)
    total = np.asarray(draw(row), dtype=np.float64)
    return ClassSeries(total, {n: np.asarray(draw(row), dtype=np.float64) for n in names})


@given(st.data(), st.integers(1, 12), st.booleans())
def test_min_max_matches_the_per_bin_loop_bit_for_bit(
    data: st.DataObject, bins: int, use_min: bool
) -> None:
    left = data.draw(_class_series(bins))
    right = data.draw(_class_series(bins))
    if data.draw(st.booleans()):  # often the result equals an operand exactly
        right = ClassSeries(left.total.copy(), right.by_class)
    got = min_max(left, right, use_min=use_min)
    want = _reference_min_max(left, right, use_min=use_min)
    assert list(got.by_class) == list(want.by_class)
    for class_id, values in want.by_class.items():
        assert np.array_equal(got.by_class[class_id], values, equal_nan=True), class_id
        assert np.array_equal(np.signbit(got.by_class[class_id]), np.signbit(values))
