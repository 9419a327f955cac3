"""Evaluation of the ``expr`` language: series mode, compiled closures, bin mode (§9.3).

Series mode evaluates whole float64 arrays with numpy; bin mode (one bin at a time) is only used
inside SHIFT feedback slices, where a recurrence forces it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from functools import lru_cache

import numpy as np

from flowdrop.core import numerics as nx
from flowdrop.core.numerics import FloatArray
from flowdrop.core.templating.syntax import (
    Arr,
    BinOp,
    Call,
    Expr,
    ExpressionError,
    Num,
    Ref,
    parse,
    references,
    same_bin_inputs,
)

__all__ = [
    "Arr",
    "BinOp",
    "Call",
    "Expr",
    "ExpressionError",
    "Num",
    "Ref",
    "SeriesFn",
    "compile_series",
    "evaluate_bin",
    "evaluate_series",
    "parse",
    "references",
    "same_bin_inputs",
]


def _shift_lag(node: Call) -> int:
    if len(node.args) != 2:
        raise ExpressionError("SHIFT function requires exactly 2 arguments: SHIFT(series, lag)")
    lag_expr = node.args[1]
    if not isinstance(lag_expr, Num):
        raise ExpressionError("SHIFT lag parameter must be a literal integer")
    if not lag_expr.value.is_integer() or lag_expr.value < 0:
        raise ExpressionError("SHIFT lag parameter must be a non-negative integer")
    return int(lag_expr.value)


def _conv_kernel(node: Call) -> list[float]:
    if len(node.args) != 2:
        raise ExpressionError("CONV function requires exactly 2 arguments: CONV(series, kernel)")
    kernel = node.args[1]
    if isinstance(kernel, Arr):
        return list(kernel.values)
    if isinstance(kernel, Num):
        return [kernel.value]
    raise ExpressionError(
        "CONV kernel argument must be an array literal (e.g., [0.0, 0.6, 0.3, 0.1])."
    )


_PULSE_USAGE = "PULSE requires 1-3 arguments: PULSE(period, [phaseOffset], [amplitude])"


def _pulse_literals(node: Call) -> tuple[int, int]:
    if not 1 <= len(node.args) <= 3:
        raise ExpressionError(_PULSE_USAGE)
    period_expr = node.args[0]
    if not isinstance(period_expr, Num):
        raise ExpressionError("PULSE period must be a literal")
    if not period_expr.value.is_integer() or period_expr.value <= 0:
        raise ExpressionError("PULSE period must be a positive integer")
    phase = 0
    if len(node.args) >= 2:
        phase_expr = node.args[1]
        if not isinstance(phase_expr, Num):
            raise ExpressionError("PULSE phaseOffset must be a literal")
        if not phase_expr.value.is_integer() or phase_expr.value < 0:
            raise ExpressionError("PULSE phaseOffset must be a non-negative integer")
        phase = int(phase_expr.value)
    return int(period_expr.value), phase


_ARITY = {
    "MIN": (2, "MIN function requires exactly 2 arguments"),
    "MAX": (2, "MAX function requires exactly 2 arguments"),
    "CLAMP": (3, "CLAMP function requires exactly 3 arguments: CLAMP(value, min, max)"),
    "MOD": (2, "MOD function requires exactly 2 arguments: MOD(value, divisor)"),
    "FLOOR": (1, "FLOOR function requires exactly 1 argument"),
    "CEIL": (1, "CEIL function requires exactly 1 argument"),
    "ROUND": (1, "ROUND function requires exactly 1 argument"),
    "STEP": (2, "STEP function requires 2 arguments: STEP(value, threshold)"),
}

_BINARY: dict[str, Callable[[FloatArray, FloatArray], FloatArray]] = {
    "+": np.add,
    "-": np.subtract,
    "*": np.multiply,
    "/": nx.divide,
}
_PLAIN_FUNCTIONS: dict[str, Callable[..., FloatArray]] = {
    "MIN": nx.minimum,
    "MAX": nx.maximum,
    "CLAMP": nx.clamp,
    "MOD": nx.mod,
    "FLOOR": np.floor,
    "CEIL": np.ceil,
    "ROUND": nx.round_half_away,
    "STEP": nx.step,
}


def evaluate_series(expr: Expr, series: Mapping[str, FloatArray], bins: int) -> FloatArray:
    """Evaluate over the whole grid; identifiers are looked up (case-sensitively) in ``series``.

    NaN and infinities follow IEEE, so callers evaluating many nodes should wrap the loop in
    ``np.errstate(all="ignore")`` once rather than per operation (it is not cheap).
    """
    if isinstance(expr, Num):
        return np.full(bins, expr.value)
    if isinstance(expr, Ref):
        try:
            return series[expr.name]
        except KeyError:
            raise ExpressionError(
                f"The given key '{expr.name}' was not present in the dictionary."
            ) from None
    if isinstance(expr, Arr):
        raise ExpressionError("Array literals can only be used as the CONV kernel argument.")
    if isinstance(expr, BinOp):
        left = evaluate_series(expr.left, series, bins)
        right = evaluate_series(expr.right, series, bins)
        return _BINARY[expr.op](left, right)
    return _call_series(expr, series, bins)


def _call_series(node: Call, series: Mapping[str, FloatArray], bins: int) -> FloatArray:
    name = node.name.upper()

    def arg(i: int) -> FloatArray:
        return evaluate_series(node.args[i], series, bins)

    if name == "SHIFT":
        lag = _shift_lag(node)
        return nx.shift(arg(0), lag)
    if name == "CONV":
        kernel = _conv_kernel(node)
        return nx.convolve(arg(0), kernel)
    if name == "PULSE":
        period, phase = _pulse_literals(node)
        amplitude = arg(2) if len(node.args) == 3 else np.ones(bins)
        return nx.pulse(bins, period, phase, amplitude)
    if name not in _ARITY:
        raise ExpressionError(f"Unknown function: {node.name}")
    count, message = _ARITY[name]
    if len(node.args) != count:
        raise ExpressionError(message)
    if name == "MIN":
        return nx.minimum(arg(0), arg(1))
    if name == "MAX":
        return nx.maximum(arg(0), arg(1))
    if name == "CLAMP":
        return nx.clamp(arg(0), arg(1), arg(2))
    if name == "MOD":
        return nx.mod(arg(0), arg(1))
    if name == "FLOOR":
        return np.floor(arg(0))
    if name == "CEIL":
        return np.ceil(arg(0))
    if name == "ROUND":
        return nx.round_half_away(arg(0))
    return nx.step(arg(0), arg(1))


SeriesFn = Callable[[Mapping[str, FloatArray], int], FloatArray]
_SCALAR_OPS: dict[str, Callable[[FloatArray, float], FloatArray]] = {
    "+": np.add,
    "-": np.subtract,
    "*": np.multiply,
    "/": np.true_divide,
}


@lru_cache(maxsize=256)
def _literal(value: float, bins: int) -> FloatArray:
    array = np.full(bins, value)
    array.flags.writeable = False  # shared between nodes; operations never write inputs
    return array


def compile_series(expr: Expr) -> SeriesFn:
    """Turn an expression into a closure with the same results as :func:`evaluate_series`.

    Dispatch happens once here instead of at every evaluation, and a literal right operand of
    ``+ - * /`` stays a scalar (numpy broadcasts it) - this is what keeps small grids cheap.
    Errors are still raised when the closure runs, as FlowTime raises them at evaluation time.
    """
    if isinstance(expr, Num):
        value = expr.value
        return lambda series, bins: _literal(value, bins)
    if isinstance(expr, Ref):
        name = expr.name

        def ref(series: Mapping[str, FloatArray], bins: int) -> FloatArray:
            try:
                return series[name]
            except KeyError:
                raise ExpressionError(
                    f"The given key '{name}' was not present in the dictionary."
                ) from None

        return ref
    if isinstance(expr, BinOp):
        left = compile_series(expr.left)
        if isinstance(expr.right, Num) and not (expr.op == "/" and expr.right.value == 0.0):
            scalar_op, constant = _SCALAR_OPS[expr.op], expr.right.value
            return lambda series, bins: scalar_op(left(series, bins), constant)
        right = compile_series(expr.right)
        binary = _BINARY[expr.op]
        return lambda series, bins: binary(left(series, bins), right(series, bins))
    if isinstance(expr, Call):
        name = expr.name.upper()
        plain = _PLAIN_FUNCTIONS.get(name)
        if plain is not None and len(expr.args) == _ARITY[name][0]:
            args = [compile_series(arg) for arg in expr.args]
            return lambda series, bins: plain(*(arg(series, bins) for arg in args))
    return lambda series, bins: evaluate_series(expr, series, bins)


Lookup = Callable[[str, int], float]


def evaluate_bin(expr: Expr, t: int, lookup: Lookup) -> float:
    """Evaluate at bin ``t`` (feedback slices); ``lookup(name, t)`` returns 0 for t < 0."""
    if isinstance(expr, Num):
        return expr.value
    if isinstance(expr, Ref):
        return lookup(expr.name, t)
    if isinstance(expr, Arr):
        return expr.values[t] if 0 <= t < len(expr.values) else 0.0
    if isinstance(expr, BinOp):
        left = evaluate_bin(expr.left, t, lookup)
        right = evaluate_bin(expr.right, t, lookup)
        vec = _BINARY[expr.op](np.array([left]), np.array([right]))
        return float(vec[0])
    return _call_bin(expr, t, lookup)


def _call_bin(node: Call, t: int, lookup: Lookup) -> float:
    name = node.name.upper()

    def arg(i: int, at: int = t) -> float:
        return evaluate_bin(node.args[i], at, lookup)

    def vec(fn: Callable[..., FloatArray], *values: float) -> float:
        with np.errstate(all="ignore"):
            return float(fn(*(np.array([v]) for v in values))[0])

    if name == "SHIFT":
        lag = _shift_lag(node)
        return arg(0, t - lag) if t - lag >= 0 else 0.0
    if name == "CONV":
        kernel = _conv_kernel(node)
        total = 0.0
        for k, weight in enumerate(kernel):
            if t - k < 0:
                break
            sample = arg(0, t - k)
            if math.isfinite(sample):
                total += sample * weight
        return total
    if name == "PULSE":
        if not 1 <= len(node.args) <= 3:
            raise ExpressionError(_PULSE_USAGE)
        period_expr = node.args[0]
        phase_expr = node.args[1] if len(node.args) >= 2 else Num(0.0)
        if not isinstance(period_expr, Num) or not isinstance(phase_expr, Num):
            return 0.0
        period, phase = _pulse_literals(node)
        if t - phase >= 0 and (t - phase) % period == 0:
            return arg(2) if len(node.args) == 3 else 1.0
        return 0.0
    if name not in _ARITY:
        raise ExpressionError(f"Unknown function: {node.name}")
    unary: dict[str, Callable[..., FloatArray]] = {
        "FLOOR": np.floor,
        "CEIL": np.ceil,
        "ROUND": nx.round_half_away,
    }
    if name in unary:
        return vec(unary[name], arg(0))
    if name == "CLAMP":
        if len(node.args) != 3:
            raise ExpressionError(_ARITY["CLAMP"][1])
        return vec(nx.clamp, arg(0), arg(1), arg(2))
    if name == "MOD":
        if len(node.args) != 2:
            raise ExpressionError(_ARITY["MOD"][1])
        return vec(nx.mod, arg(0), arg(1))
    binary: dict[str, Callable[..., FloatArray]] = {
        "MIN": nx.minimum,
        "MAX": nx.maximum,
        "STEP": nx.step,
    }
    return vec(binary[name], arg(0), arg(1))
