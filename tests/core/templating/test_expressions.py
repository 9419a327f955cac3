"""The expression language: §16.1's asserted values, parse and evaluation errors."""

from __future__ import annotations

import math

import numpy as np
import pytest

from flowdrop.core.templating.expressions import (
    ExpressionError,
    evaluate_bin,
    evaluate_series,
    parse,
)


def run(expr: str, bins: int = 4, **inputs: list[float]) -> list[float]:
    series = {k: np.asarray(v, dtype=np.float64) for k, v in inputs.items()}
    result: list[float] = evaluate_series(parse(expr), series, bins).tolist()
    return result


@pytest.mark.parametrize(
    ("expr", "inputs", "expected"),
    [
        ("42.5", {}, [42.5] * 4),
        ("a + b", {"a": [1, 2, 3, 4], "b": [10, 20, 30, 40]}, [11, 22, 33, 44]),
        ("SHIFT(demand, 1)", {"demand": [10, 20, 30, 40]}, [0, 10, 20, 30]),
        (
            "(a + b) * 2 + SHIFT(c, 1)",
            {"a": [1, 2, 3, 4], "b": [2, 3, 4, 5], "c": [100, 200, 300, 400]},
            [6, 110, 214, 318],
        ),
        ("MOD(a, b)", {"a": [7, -7, 7, -7], "b": [-3, -3, 3, 3]}, [-2, -1, 1, 2]),
        ("MOD(a, b)", {"a": [10, 15, 20, 25], "b": [3, 4, 7, 6]}, [1, 3, 6, 1]),
        ("MOD(a, b)", {"a": [10, 20, 30, 40], "b": [3, 0, 7, 0]}, [1, 0, 2, 0]),
        ("FLOOR(x)", {"x": [1.2, 3.8, -2.4, -3.5]}, [1, 3, -3, -4]),
        ("CEIL(x)", {"x": [1.2, 3.8, -2.4, -3.5]}, [2, 4, -2, -3]),
        ("ROUND(x)", {"x": [1.2, 3.8, -2.4, -3.5]}, [1, 4, -2, -4]),
        ("STEP(utilization, 0.75)", {"utilization": [0.2, 0.5, 0.75, 1.1]}, [0, 0, 1, 1]),
        ("STEP(x, threshold)", {"x": [0.5, 0.8, 0.3, 1.0], "threshold": [0.6] * 4}, [0, 1, 0, 1]),
        ("STEP(x, 0.5)", {"x": [1.0, math.nan, 0.3, math.nan]}, [1, 0, 0, 0]),
        ("PULSE(2, 1, 5)", {}, [0, 5, 0, 5]),
        ("PULSE(2, 0, demand)", {"demand": [10, 20, 30, 40]}, [10, 0, 30, 0]),
        ("PULSE(1, 0, 5)", {}, [5, 5, 5, 5]),
        ("FLOOR(MOD(x, 3))", {"x": [7.5, 8.2, 3.0, 11.9]}, [1, 2, 0, 2]),
        ("CEIL(a / b)", {"a": [7, 10, 1, 0], "b": [3, 4, 3, 5]}, [3, 3, 1, 0]),
        ("a / b", {"a": [10, 20, 30, 40], "b": [2, 0, 5, 0]}, [5, 0, 6, 0]),
        ("CLAMP(x, 0, 10)", {"x": [-1, 5, 11, 10]}, [0, 5, 10, 10]),
        ("MIN(a, b) + MAX(a, b)", {"a": [1, 5, 3, 0], "b": [2, 4, 3, 1]}, [3, 9, 6, 1]),
    ],
)
def test_expression_values_from_flowtime_tests(
    expr: str, inputs: dict[str, list[float]], expected: list[float]
) -> None:
    """ExpressionIntegrationTests / NaNPolicyTests values (§16.1), exact."""
    assert run(expr, **inputs) == expected


def test_mod_fractional_within_tolerance() -> None:
    """MOD(a, 2) over [5.5, 6, 7.75, 9.1] is [1.5, 0, 1.75, 1.1] (±1e-6)."""
    assert run("MOD(a, 2)", a=[5.5, 6, 7.75, 9.1]) == pytest.approx([1.5, 0, 1.75, 1.1], abs=1e-6)


def test_round_nan_passes_through() -> None:
    """ROUND([1.5, NaN]) = [2, NaN]."""
    result = run("ROUND(x)", bins=2, x=[1.5, math.nan])
    assert result[0] == 2 and math.isnan(result[1])


def test_division_by_nan_and_infinity() -> None:
    """10/NaN = NaN; 10/+inf = 0."""
    result = run("a / b", bins=2, a=[10, 10], b=[math.nan, math.inf])
    assert math.isnan(result[0]) and result[1] == 0


def test_conv_with_kernel_array_and_scalar() -> None:
    """CONV(base, [0,0.6,0.3,0.1]) and CONV(base, 0.5) (ExprNodeConvolutionTests)."""
    assert run("CONV(base, [0.0, 0.6, 0.3, 0.1])", bins=5, base=[1, 2, 3, 4, 5]) == pytest.approx(
        [0, 0.6, 1.5, 2.5, 3.5], abs=1e-12
    )
    assert run("CONV(base, 0.5)", bins=3, base=[2, 4, 6]) == [1, 2, 3]


@pytest.mark.parametrize(
    ("expr", "message"),
    [
        (
            "CONV(base, SHIFT(other, 1))",
            "CONV kernel argument must be an array literal (e.g., [0.0, 0.6, 0.3, 0.1]).",
        ),
        ("SHIFT(a, b)", "SHIFT lag parameter must be a literal integer"),
        ("SHIFT(a, 1.5)", "SHIFT lag parameter must be a non-negative integer"),
        ("SHIFT(a)", "SHIFT function requires exactly 2 arguments: SHIFT(series, lag)"),
        ("MIN(a)", "MIN function requires exactly 2 arguments"),
        ("CLAMP(a, 1)", "CLAMP function requires exactly 3 arguments: CLAMP(value, min, max)"),
        ("MOD(a)", "MOD function requires exactly 2 arguments: MOD(value, divisor)"),
        ("FLOOR(a, a)", "FLOOR function requires exactly 1 argument"),
        ("STEP(a)", "STEP function requires 2 arguments: STEP(value, threshold)"),
        ("PULSE(a)", "PULSE period must be a literal"),
        ("PULSE(0)", "PULSE period must be a positive integer"),
        ("PULSE(2, a)", "PULSE phaseOffset must be a literal"),
        ("SQRT(a)", "Unknown function: SQRT"),
    ],
)
def test_evaluation_errors_carry_flowtime_messages(expr: str, message: str) -> None:
    """Errors surface at evaluation time with upstream's text."""
    parsed = parse(expr)
    with pytest.raises(ExpressionError) as caught:
        evaluate_series(parsed, {"a": np.ones(4), "base": np.ones(4), "other": np.ones(4)}, 4)
    assert str(caught.value) == message


def test_bin_mode_matches_series_mode() -> None:
    """Bin-by-bin evaluation gives the same values as whole-series evaluation."""
    series = {"a": np.array([1.0, 2.0, 3.0, 4.0]), "b": np.array([0.0, 2.0, 1.0, 4.0])}
    expr = parse("CONV(a, [1, 0.5]) + SHIFT(b, 1) * MOD(a, 3) / b + PULSE(2, 1, a) + ROUND(a / 3)")
    whole = evaluate_series(expr, series, 4).tolist()

    def lookup(name: str, t: int) -> float:
        return 0.0 if t < 0 else float(series[name][t])

    assert [evaluate_bin(expr, t, lookup) for t in range(4)] == whole
