"""Per-class series algebra (FlowTime's ``ClassContributionBuilder.ClassSeries``, §9.8).

A :class:`ClassSeries` is a node's total plus its split by class. The operations follow the C#
code bin for bin, in its order of operations, because the per-class CSVs are compared with
FlowTime's to the last bit: sums run class by class in insertion order, non-finite samples are
skipped where C# skips them, and class dictionaries keep C#'s insertion order (it is the order in
which the per-class CSVs are written).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from flowdrop.core import numerics as nx
from flowdrop.core.engine.queues import dispatch_mask, run_queue
from flowdrop.core.numerics import FloatArray

TOLERANCE = 1e-9
Classes = dict[str, FloatArray]


@dataclass
class ClassSeries:
    total: FloatArray
    by_class: Classes = field(default_factory=dict)

    def clone(self) -> ClassSeries:
        return ClassSeries(self.total.copy(), {c: v.copy() for c, v in self.by_class.items()})


def from_totals(total: FloatArray) -> ClassSeries:
    return ClassSeries(np.array(total, dtype=np.float64, copy=True))


def single(class_id: str, total: FloatArray) -> ClassSeries:
    values = np.array(total, dtype=np.float64, copy=True)
    return ClassSeries(values, {class_id: values.copy()})


def zero(bins: int) -> ClassSeries:
    return ClassSeries(np.zeros(bins))


def _finite_sum(classes: Classes, bins: int) -> FloatArray:
    total = np.zeros(bins)
    for values in classes.values():
        total = total + np.where(np.isfinite(values), values, 0.0)
    return total


def normalize(classes: Classes, totals: FloatArray) -> None:
    """Rescale, in place, the bins whose positive class sum differs from the total by > 1e-9."""
    if not classes:
        return
    summed = _finite_sum(classes, totals.shape[0])
    with np.errstate(all="ignore"):
        # A NaN total fails C#'s ``<= tolerance`` test, so it is "different" and rescales.
        fix = (summed > 0.0) & ~(np.abs(summed - totals) <= TOLERANCE)
        if not fix.any():
            return
        scale = totals / np.where(fix, summed, 1.0)
        for class_id, values in classes.items():
            classes[class_id] = np.where(fix, values * scale, values)


def _merge(left: Classes, right: Classes, sign: float, bins: int) -> Classes:
    merged: Classes = {}
    zero_row = np.zeros(bins)
    for class_id, values in left.items():
        other = right.get(class_id, zero_row)
        merged[class_id] = 0.0 + (values + other if sign > 0 else values - other)
    for class_id, values in right.items():
        if class_id not in merged:
            merged[class_id] = 0.0 + (0.0 + values if sign > 0 else 0.0 - values)
    return merged


def add(left: ClassSeries, right: ClassSeries) -> ClassSeries:
    total = left.total + right.total
    classes = _merge(left.by_class, right.by_class, 1.0, total.shape[0])
    normalize(classes, total)
    return ClassSeries(total, classes)


def subtract(left: ClassSeries, right: ClassSeries) -> ClassSeries:
    total = left.total - right.total
    classes = _merge(left.by_class, right.by_class, -1.0, total.shape[0])
    normalize(classes, total)
    return ClassSeries(total, classes)


def _scaled(source: Classes, multiplier: FloatArray, original: FloatArray | None = None) -> Classes:
    """``MultiplyDictionary``: scale by ``multiplier`` (or ``multiplier / original``)."""
    out: Classes = {}
    good = np.isfinite(multiplier)
    with np.errstate(all="ignore"):
        if original is not None:
            good = good & np.isfinite(original) & ~(np.abs(original) < TOLERANCE)
            factor = multiplier / np.where(good, original, 1.0)
        else:
            factor = multiplier
        for class_id, values in source.items():
            out[class_id] = np.where(good, values * factor, 0.0)
    return out


def multiply(left: ClassSeries, right: ClassSeries) -> ClassSeries:
    total = left.total * right.total
    if left.by_class:
        return ClassSeries(total, _scaled(left.by_class, right.total))
    if right.by_class:
        return ClassSeries(total, _scaled(right.by_class, left.total))
    return ClassSeries(total)


def divide(left: ClassSeries, right: ClassSeries) -> ClassSeries:
    total = nx.divide(left.total, right.total)
    if not left.by_class:
        return ClassSeries(total)
    return ClassSeries(total, _scaled(left.by_class, total, left.total))


def shift(source: ClassSeries, lag: int) -> ClassSeries:
    if lag <= 0:
        return source.clone()
    return ClassSeries(
        nx.shift(source.total, lag), {c: nx.shift(v, lag) for c, v in source.by_class.items()}
    )


def convolve(source: ClassSeries, kernel: list[float]) -> ClassSeries:
    return ClassSeries(
        nx.convolve(source.total, kernel),
        {c: nx.convolve(v, kernel) for c, v in source.by_class.items()},
    )


def min_max(left: ClassSeries, right: ClassSeries, *, use_min: bool) -> ClassSeries:
    """The operand that produced the result lends its class mix, scaled to the result.

    Per bin (upstream's loop, done for all bins at once with the same arithmetic): the operand
    whose total equals the result (within 1e-9) and has classes lends them, else the left one if
    it has any; its finite class samples are summed left to right; a positive finite sum scales
    every sample by ``result / sum`` (0 for a result <= 0) and finite products are kept. Classes
    appear in the order upstream's loop first touches them.
    """
    result = (nx.minimum if use_min else nx.maximum)(left.total, right.total)
    bins = result.shape[0]
    if not left.by_class and not right.by_class:
        return ClassSeries(result, {})
    with np.errstate(all="ignore"):
        left_matches = np.abs(left.total - result) < TOLERANCE
        right_matches = np.abs(right.total - result) < TOLERANCE
        has_left, has_right = bool(left.by_class), bool(right.by_class)
        use_left = has_left & (left_matches | ~(right_matches & has_right))
        rows: dict[str, FloatArray] = {}
        first: dict[str, tuple[int, int, int]] = {}
        for side, chosen in ((0, use_left), (1, ~use_left)):
            source = (left, right)[side].by_class
            if not source or not chosen.any():
                continue
            total = np.zeros(bins)
            for values in source.values():
                total = total + np.where(np.isfinite(values), values, 0.0)
            valid = chosen & (total > 0.0) & np.isfinite(total)
            invalid = chosen & ~valid
            scale = np.where(result <= 0.0, 0.0, result / np.where(valid, total, 1.0))
            for order, (class_id, values) in enumerate(source.items()):
                scaled = values * scale
                kept = valid & np.isfinite(scaled)
                touched = np.flatnonzero(kept | invalid)
                if touched.size == 0:
                    continue
                row = rows.get(class_id, np.zeros(bins))
                rows[class_id] = row + np.where(kept, scaled, 0.0)
                at = (int(touched[0]), side, order)
                first[class_id] = min(first.get(class_id, at), at)
    ordered = sorted(rows, key=lambda class_id: first[class_id])
    classes = {class_id: rows[class_id] for class_id in ordered}
    normalize(classes, result)
    return ClassSeries(result, classes)


def unary(source: ClassSeries, name: str) -> ClassSeries:
    def op(values: FloatArray) -> FloatArray:
        if name == "FLOOR":
            return np.floor(values)
        return np.ceil(values) if name == "CEIL" else nx.round_half_away(values)

    return ClassSeries(op(source.total), {c: op(v) for c, v in source.by_class.items()})


def step(value: ClassSeries, threshold: ClassSeries) -> ClassSeries:
    return ClassSeries(np.where(nx.safe(value.total) >= nx.safe(threshold.total), 1.0, 0.0))


def _modulo(a: FloatArray, b: FloatArray) -> FloatArray:
    with np.errstate(all="ignore"):
        r = np.fmod(a, b)
        fixed = np.where((r != 0.0) & (np.sign(r) != np.sign(b)), r + b, r)
    return np.where(np.abs(b) <= TOLERANCE, 0.0, fixed)


def mod(dividend: ClassSeries, divisor: ClassSeries) -> ClassSeries:
    total = _modulo(dividend.total, divisor.total)
    if not dividend.by_class or divisor.by_class:
        return ClassSeries(total)
    classes = {c: _modulo(v, divisor.total) for c, v in dividend.by_class.items()}
    normalize(classes, total)
    return ClassSeries(total, classes)


def pulse(period: int, phase: int, amplitude: ClassSeries) -> ClassSeries:
    bins = amplitude.total.shape[0]
    t = np.arange(bins)
    fire = (t - phase >= 0) & ((t - phase) % period == 0)
    return ClassSeries(
        np.where(fire, nx.safe(amplitude.total), 0.0),
        {c: np.where(fire, nx.safe(v), 0.0) for c, v in amplitude.by_class.items()},
    )


def gate_outflow(
    outflow: ClassSeries, capacity: ClassSeries | None, period: int, phase: int
) -> None:
    """Apply a dispatch schedule to ``outflow`` **in place** (C# mutates the outflow node's own
    class series here, so the outflow node's per-class CSVs show the gating too)."""
    total = outflow.total
    caps = capacity.total if capacity is not None else None
    dispatch = dispatch_mask(total.shape[0], period, phase).tolist()
    for i in range(total.shape[0]):
        if not dispatch[i]:
            total[i] = 0.0
            for values in outflow.by_class.values():
                values[i] = 0.0
            continue
        requested = float(total[i]) if math.isfinite(total[i]) else 0.0
        allowed = float(caps[i]) if caps is not None and i < caps.shape[0] else requested
        if not math.isfinite(allowed):
            allowed = requested
        allowed = min(requested, allowed)
        if abs(allowed - requested) <= TOLERANCE:
            total[i] = requested
            continue
        current = float(total[i])
        if current <= TOLERANCE:
            for values in outflow.by_class.values():
                values[i] = 0.0
            total[i] = allowed
            continue
        scale = allowed / current
        total[i] = allowed
        for values in outflow.by_class.values():
            values[i] *= scale


def _initial_share(class_id: str, initial: float, ids: list[str], inflow: ClassSeries) -> float:
    portions: dict[str, float] = {}
    total = 0.0
    for cid in ids:
        series = inflow.by_class.get(cid)
        first = float(series[0]) if series is not None and series.shape[0] else 0.0
        value = first if math.isnan(first) else max(0.0, first)
        total += value
        portions[cid] = value
    if total <= 0.0 or not math.isfinite(total):
        return initial / max(1, len(ids))
    return initial * (portions[class_id] / total)


def backlog(
    totals: FloatArray,
    inflow: ClassSeries,
    outflow: ClassSeries,
    loss: ClassSeries,
    initial: float,
) -> ClassSeries:
    """The queue recurrence run class by class, then rescaled to the queue's total.

    A zero seed with positive bin-0 inflow becomes that inflow (an upstream quirk, kept).
    """
    bins = totals.shape[0]
    ids: list[str] = []
    for class_id in [*inflow.by_class, *outflow.by_class, *loss.by_class]:
        if class_id.lower() not in (i.lower() for i in ids):
            ids.append(class_id)
    seed = initial
    first = 0.0
    for values in inflow.by_class.values():
        first += float(values[0]) if values.shape[0] else 0.0
    if abs(seed) < TOLERANCE and first > 0:
        seed = first
    zero_row = np.zeros(bins)
    classes: Classes = {}
    for class_id in ids:
        classes[class_id], _ = run_queue(
            _initial_share(class_id, seed, ids, inflow),
            inflow.by_class.get(class_id, zero_row),
            outflow.by_class.get(class_id, zero_row),
            loss.by_class.get(class_id, zero_row),
        )
    normalize(classes, totals)
    return ClassSeries(np.array(totals, dtype=np.float64, copy=True), classes)
