"""The .NET number formatting and arithmetic rules FlowTime's artifacts depend on."""

from __future__ import annotations

import math
from decimal import Decimal

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from flowdrop.core.numerics import (
    clamp,
    convolve,
    divide,
    format_g17,
    format_shortest,
    maximum,
    minimum,
    mod,
    parse_float,
    round_half_away,
    step,
)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (10.0, "10"),
        (0.5, "0.5"),
        (2.0999999999999996, "2.0999999999999996"),
        (0.0001, "0.0001"),
        (0.00001, "1E-05"),
        (1.5e-7, "1.5E-07"),
        (1e15, "1E+15"),
        (123456789012345.0, "123456789012345"),
        (1234567890123456.0, "1234567890123456"),
        (-0.0, "-0"),
        (0.0, "0"),
        (math.nan, "NaN"),
        (math.inf, "Infinity"),
        (-math.inf, "-Infinity"),
        (-2.5, "-2.5"),
    ],
)
def test_format_shortest_matches_dotnet_examples(value: float, expected: str) -> None:
    """§10.7 examples, including the scientific-notation thresholds."""
    assert format_shortest(value) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [(0.1, "0.10000000000000001"), (1e-5, "1.0000000000000001E-05"), (8.0, "8"), (-0.0, "-0")],
)
def test_format_g17_uses_seventeen_digits(value: float, expected: str) -> None:
    """Capture CSVs use G17: 17 significant digits, .NET exponent style."""
    assert format_g17(value) == expected


@given(st.floats(allow_nan=False))
def test_format_shortest_round_trips(value: float) -> None:
    """Every finite double parses back to the identical value."""
    assert parse_float(format_shortest(value)) == value


def test_divide_by_zero_is_zero_and_nan_propagates() -> None:
    """x/0 = 0 (also -0), x/NaN = NaN, x/inf = 0 (§9.3)."""
    a = np.array([10.0, 20.0, 10.0, 10.0, 10.0])
    b = np.array([2.0, 0.0, -0.0, math.nan, math.inf])
    result = divide(a, b)
    assert result[:3].tolist() == [5.0, 0.0, 0.0]
    assert math.isnan(result[3])
    assert result[4] == 0.0


def test_mod_takes_sign_of_divisor() -> None:
    """MOD(7,-3) = -2, MOD(-7,-3) = -1, MOD(7,3) = 1, MOD(-7,3) = 2, MOD(x,0) = 0."""
    result = mod(np.array([7.0, -7.0, 7.0, -7.0, 5.0]), np.array([-3.0, -3.0, 3.0, 3.0, 0.0]))
    assert result.tolist() == [-2.0, -1.0, 1.0, 2.0, 0.0]


def test_mod_negative_zero_and_non_finite() -> None:
    """MOD(-4,2) is -0.0; non-finite operands give NaN."""
    result = mod(np.array([-4.0, math.inf]), np.array([2.0, 3.0]))
    assert result[0] == 0.0 and math.copysign(1.0, result[0]) < 0
    assert math.isnan(result[1])


def test_round_is_half_away_from_zero() -> None:
    """ROUND(2.5) = 3, ROUND(-3.5) = -4, ROUND(-2.4) = -2, NaN and inf pass through."""
    values = np.array([2.5, -3.5, -2.4, 0.49999999999999994, math.inf])
    assert round_half_away(values).tolist() == [3.0, -4.0, -2.0, 0.0, math.inf]
    assert math.isnan(round_half_away(np.array([math.nan]))[0])


def test_min_max_propagate_nan_and_order_signed_zero() -> None:
    """Math.Min/Max: NaN wins; MIN(-0,0) = -0, MAX(-0,0) = 0."""
    assert math.isnan(minimum(np.array([math.nan]), np.array([1.0]))[0])
    assert math.isnan(maximum(np.array([1.0]), np.array([math.nan]))[0])
    assert math.copysign(1.0, minimum(np.array([0.0]), np.array([-0.0]))[0]) < 0
    assert math.copysign(1.0, maximum(np.array([-0.0]), np.array([0.0]))[0]) > 0


def test_clamp_with_inverted_bounds_returns_lo() -> None:
    """CLAMP(v, lo, hi) with lo > hi gives lo."""
    assert clamp(np.array([5.0]), np.array([10.0]), np.array([1.0])).tolist() == [10.0]


def test_step_treats_nan_as_below() -> None:
    """STEP(x, 0.5) over [1, NaN, 0.3, NaN] is [1, 0, 0, 0]."""
    values = np.array([1.0, math.nan, 0.3, math.nan])
    assert step(values, np.full(4, 0.5)).tolist() == [1.0, 0.0, 0.0, 0.0]


def test_convolve_skips_non_finite_samples() -> None:
    """CONV ignores NaN/inf samples instead of propagating them."""
    values = np.array([1.0, math.nan, 3.0])
    assert convolve(values, [1.0, 1.0]).tolist() == [1.0, 1.0, 3.0]


def _reference_shortest(x: float) -> str:
    """The Decimal-based formulation format_shortest replaced (same rules, slower)."""
    if x != x or x in (float("inf"), float("-inf")) or x == 0.0:
        return format_shortest(x)  # specials are shared code
    sign, digit_tuple, exponent = Decimal(repr(x)).normalize().as_tuple()
    assert isinstance(exponent, int)
    digits = "".join(str(d) for d in digit_tuple)
    n, scale, prefix = len(digits), len(digits) + exponent, "-" if sign else ""
    if scale > max(n, 15) or scale < -3:
        mantissa = digits[0] + ("." + digits[1:] if n > 1 else "")
        return f"{prefix}{mantissa}E{'+' if scale - 1 >= 0 else '-'}{abs(scale - 1):02d}"
    if scale <= 0:
        return f"{prefix}0.{'0' * -scale}{digits}"
    if scale >= n:
        return f"{prefix}{digits}{'0' * (scale - n)}"
    return f"{prefix}{digits[:scale]}.{digits[scale:]}"


@given(st.floats(allow_nan=False, allow_infinity=False))
def test_format_shortest_matches_the_decimal_formulation(x: float) -> None:
    assert format_shortest(x) == _reference_shortest(x)


@pytest.mark.parametrize(
    "x", [1e15, 1e16, 999999999999999.9, 1e-4, 9.999e-5, 0.0001, 1.5e-4, 123456789012345678.0]
)
def test_format_shortest_matches_the_decimal_formulation_at_the_edges(x: float) -> None:
    assert format_shortest(x) == _reference_shortest(x)
    assert format_shortest(-x) == _reference_shortest(-x)
