from __future__ import annotations

import math

import numpy as np

from flowdrop.core.report.compare import compare_series, diff_values, format_number, series_kind


def test_identical_series_agree_even_with_nan_and_infinity() -> None:
    values = np.array([0.0, 1.5, math.nan, math.inf])
    diff = diff_values("a@A@DEFAULT", values, values.copy())
    assert (diff.max_abs, diff.max_rel, diff.agrees) == (0.0, 0.0, True)


def test_a_changed_bin_is_measured_absolutely_and_relatively() -> None:
    diff = diff_values("a@A@DEFAULT", np.array([10.0, 20.0]), np.array([10.0, 21.0]))
    assert diff.max_abs == 1.0
    assert diff.max_rel == 1.0 / 21.0
    assert not diff.agrees


def test_tiny_noise_below_the_tolerance_agrees() -> None:
    diff = diff_values("a@A@DEFAULT", np.array([1e6]), np.array([1e6 * (1 + 1e-12)]))
    assert diff.agrees


def test_a_missing_series_never_agrees() -> None:
    diffs = compare_series({"a@A@DEFAULT": np.zeros(3)}, {})
    assert diffs[0].max_abs == math.inf and not diffs[0].agrees
    assert format_number(diffs[0].max_abs) == "missing"


def test_series_are_sorted_into_totals_classes_and_edges() -> None:
    assert series_kind("served@SERVED@DEFAULT") == "total"
    assert series_kind("served@SERVED@Airport") == "class"
    assert series_kind("edge_a_to_b_flowVolume@EDGE_A_TO_B_FLOWVOLUME@DEFAULT") == "edge"
