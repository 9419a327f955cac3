"""Bin-for-bin comparison of two runs' series (parity and the capture-vs-replay overlay)."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np

from flowdrop.core.numerics import FloatArray

RELATIVE_TOLERANCE = 1e-9
# Below this both values count as zero: a relative difference between 1e-300 and 0 says nothing.
ZERO_FLOOR = 1e-12


@dataclass(frozen=True)
class SeriesDiff:
    """How far ``actual`` is from ``expected`` for one series (``inf`` when one side is absent)."""

    series_id: str
    kind: str  # total | class | edge
    bins: int
    max_abs: float
    max_rel: float

    @property
    def agrees(self) -> bool:
        return self.max_rel <= RELATIVE_TOLERANCE


def series_kind(series_id: str) -> str:
    base, _, rest = series_id.partition("@")
    if base.startswith("edge_"):
        return "edge"
    return "total" if rest.endswith("@DEFAULT") or not rest else "class"


def diff_values(
    series_id: str, expected: FloatArray | None, actual: FloatArray | None
) -> SeriesDiff:
    kind = series_kind(series_id)
    if expected is None or actual is None or len(expected) != len(actual):
        bins = 0 if expected is None or actual is None else max(len(expected), len(actual))
        return SeriesDiff(series_id, kind, bins, math.inf, math.inf)
    with np.errstate(invalid="ignore", divide="ignore"):
        same = (expected == actual) | (np.isnan(expected) & np.isnan(actual))
        delta = np.where(same, 0.0, np.abs(expected - actual))
        delta = np.where(np.isnan(delta), math.inf, delta)  # a number against NaN
        scale = np.maximum(np.abs(expected), np.abs(actual))
        scale = np.where(np.isnan(scale), math.inf, scale)
        rel = np.where(scale > ZERO_FLOOR, delta / np.where(scale > 0, scale, 1.0), 0.0)
        rel = np.where((scale <= ZERO_FLOOR) & (delta > ZERO_FLOOR), math.inf, rel)
        rel = np.where(np.isnan(rel) | same, np.where(same, 0.0, math.inf), rel)
    max_abs = float(delta.max()) if len(delta) else 0.0
    max_rel = float(rel.max()) if len(rel) else 0.0
    return SeriesDiff(series_id, kind, len(expected), max_abs, max_rel)


def compare_series(
    expected: Mapping[str, FloatArray], actual: Mapping[str, FloatArray], order: Iterable[str] = ()
) -> list[SeriesDiff]:
    """One diff per series id found on either side, in ``order`` first, then as found."""
    ids = dict.fromkeys([*order, *expected, *actual])
    return [diff_values(sid, expected.get(sid), actual.get(sid)) for sid in ids]


def format_number(value: float) -> str:
    if math.isinf(value):
        return "missing"
    return "0" if value == 0 else f"{value:.3g}"
