""".NET-compatible number formatting and the arithmetic rules of FlowTime's evaluator.

FlowTime is written in C#; its canonical CSVs, parameter substitution and hashes depend on .NET's
invariant double formatting and on a handful of deliberate numeric rules (x/0 = 0, floored MOD,
ROUND half away from zero, NaN-propagating MIN/MAX). Everything here works on scalars or numpy
arrays of float64 so the evaluator can stay vectorised.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]

_SMALLEST_SUBNORMAL = 4.9e-324


def _special(x: float) -> str | None:
    if math.isnan(x):
        return "NaN"
    if math.isinf(x):
        return "Infinity" if x > 0 else "-Infinity"
    if x == 0.0:
        return "-0" if math.copysign(1.0, x) < 0 else "0"
    return None


def format_shortest(x: float) -> str:
    """Format like .NET Core's ``double.ToString()`` ("R"/shortest round-trip, invariant)."""
    x = float(x)
    text = repr(x)  # Python's repr is the shortest round-trip digit string too
    if "e" not in text and -1e15 < x < 1e15:
        # 1e-4 <= |x| < 1e15 or ±0: positional in both, and repr has no trailing zeros but ".0"
        # (NaN and the infinities fail the comparison).
        return text[:-2] if text.endswith(".0") else text
    special = _special(x)
    if special is not None:
        return special
    sign = text.startswith("-")
    mantissa, _, exp_text = text.lstrip("-").partition("e")
    whole, _, fraction = mantissa.partition(".")
    digits = whole + fraction
    stripped = digits.lstrip("0")
    # value = 0.d1d2... x 10**scale, as Decimal(repr(x)).normalize() would give it
    scale = len(whole) - (len(digits) - len(stripped)) + (int(exp_text) if exp_text else 0)
    digits = stripped.rstrip("0")
    return _shortest_text("-" if sign else "", digits, scale)


def _shortest_text(prefix: str, digits: str, scale: int) -> str:
    n = len(digits)
    if scale > max(n, 15) or scale < -3:
        mantissa = digits[0] + ("." + digits[1:] if n > 1 else "")
        exp = scale - 1
        return f"{prefix}{mantissa}E{'+' if exp >= 0 else '-'}{abs(exp):02d}"
    if scale <= 0:
        return f"{prefix}0.{'0' * -scale}{digits}"
    if scale >= n:
        return f"{prefix}{digits}{'0' * (scale - n)}"
    return f"{prefix}{digits[:scale]}.{digits[scale:]}"


def format_g17(x: float) -> str:
    """Format like .NET ``double.ToString("G17", InvariantCulture)`` (used by telemetry capture)."""
    x = float(x)
    special = _special(x)
    if special is not None:
        return special
    text = f"{x:.17g}"
    if "e" not in text:
        return text
    mantissa, exp_text = text.split("e")
    exp = int(exp_text)
    return f"{mantissa}E{'+' if exp >= 0 else '-'}{abs(exp):02d}"


def parse_float(text: str) -> float:
    """Parse a number written by :func:`format_shortest` or :func:`format_g17`."""
    stripped = text.strip()
    if stripped in ("", "NaN"):
        return math.nan
    if stripped == "Infinity":
        return math.inf
    if stripped == "-Infinity":
        return -math.inf
    return float(stripped.replace(",", ""))


def safe(values: FloatArray) -> FloatArray:
    """Non-finite samples count as 0 (queue inputs, CONV samples)."""
    return np.where(np.isfinite(values), values, 0.0)


def divide(a: FloatArray, b: FloatArray) -> FloatArray:
    """``a / b`` with division by (signed) zero giving 0; NaN and infinity follow IEEE."""
    if a.shape != b.shape:
        a, b = np.broadcast_arrays(a, b)
    out = np.zeros(a.shape, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        np.divide(a, b, out=out, where=b != 0.0)
    return out


def mod(a: FloatArray, d: FloatArray) -> FloatArray:
    """Floored modulo with the sign of the divisor; divisor of ±0 (or ±tiny) gives 0."""
    a, d = np.broadcast_arrays(np.asarray(a, dtype=np.float64), np.asarray(d, dtype=np.float64))
    with np.errstate(invalid="ignore"):
        r = np.fmod(a, d)
        fixed = np.where((r != 0.0) & (np.signbit(r) != np.signbit(d)), r + d, r)
    fixed = np.where(np.isfinite(a) & np.isfinite(d), fixed, np.nan)
    return np.where(np.abs(d) <= _SMALLEST_SUBNORMAL, 0.0, fixed)


def round_half_away(x: FloatArray) -> FloatArray:
    """.NET ``Math.Round(x, MidpointRounding.AwayFromZero)`` computed exactly."""
    with np.errstate(invalid="ignore"):
        whole = np.trunc(x)
        frac = x - whole
        rounded = whole + np.where(np.abs(frac) >= 0.5, np.sign(frac), 0.0)
    return np.where(np.isfinite(x), rounded, x)


def minimum(a: FloatArray, b: FloatArray) -> FloatArray:
    """``Math.Min``: NaN wins and MIN(-0, 0) is -0."""
    if a.shape != b.shape:
        a, b = np.broadcast_arrays(a, b)
    result = np.minimum(a, b)
    zero = result == 0.0
    if zero.any():  # only signed zeros can differ from numpy; keep the common path one pass
        result[zero] = np.where(np.signbit(a[zero]) | np.signbit(b[zero]), -0.0, 0.0)
    return result


def maximum(a: FloatArray, b: FloatArray) -> FloatArray:
    """``Math.Max``: NaN wins and MAX(-0, 0) is 0."""
    if a.shape != b.shape:
        a, b = np.broadcast_arrays(a, b)
    result = np.maximum(a, b)
    zero = result == 0.0
    if zero.any():
        result[zero] = np.where(np.signbit(a[zero]) & np.signbit(b[zero]), -0.0, 0.0)
    return result


def clamp(v: FloatArray, lo: FloatArray, hi: FloatArray) -> FloatArray:
    """``max(lo, min(hi, v))``; when lo > hi the result is lo."""
    return maximum(lo, minimum(hi, v))


def step(v: FloatArray, threshold: FloatArray) -> FloatArray:
    """1 where ``v >= threshold``, else 0 (NaN compares false, so gives 0)."""
    with np.errstate(invalid="ignore"):
        return np.where(np.asarray(v) >= np.asarray(threshold), 1.0, 0.0)


def convolve(x: FloatArray, kernel: list[float]) -> FloatArray:
    """Causal convolution ``sum_k x[t-k] * K[k]``; non-finite samples contribute 0."""
    clean = safe(np.asarray(x, dtype=np.float64))
    out = np.zeros_like(clean)
    n = clean.shape[-1]
    for k, weight in enumerate(kernel):
        if k >= n:
            break
        if k == 0:
            out += clean * weight
        else:
            out[..., k:] += clean[..., :-k] * weight
    return out


def shift(x: FloatArray, lag: int) -> FloatArray:
    """``t < lag ? 0 : x[t - lag]``."""
    out = np.zeros_like(np.asarray(x, dtype=np.float64))
    n = out.shape[-1]
    if lag == 0:
        out[...] = x
    elif lag < n:
        out[..., lag:] = x[..., :-lag]
    return out


def pulse(bins: int, period: int, phase: int, amplitude: FloatArray) -> FloatArray:
    """``(t - phase) >= 0 and (t - phase) % period == 0 ? A[t] : 0``; phase is not reduced."""
    t = np.arange(bins)
    gate = (t >= phase) & ((t - phase) % period == 0)
    return np.where(gate, amplitude, 0.0)


def sequential_sum(values: list[float]) -> float:
    """Left-to-right float sum, as C# loops accumulate (``math.fsum`` would differ)."""
    total = 0.0
    for value in values:
        total += value
    return total
