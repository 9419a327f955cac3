"""The run warning record (FlowTime's ``InvariantWarning``) and the helpers every check shares.

A warning is written to ``run.json`` as ``{code, message, nodeId, bins, value, severity,
edgeIds}`` in that order; ``bins`` is always a list (empty when the rule names no bins).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from flowdrop.core.numerics import FloatArray

TOLERANCE = 1e-6
MAX_BINS = 5

Warning = dict[str, Any]


def warning(
    node_id: str,
    code: str,
    message: str,
    bins: list[int] | None = None,
    value: float | None = None,
    severity: str = "warning",
    edge_ids: list[str] | None = None,
) -> Warning:
    return {
        "code": code,
        "message": message,
        "nodeId": node_id,
        "bins": list(bins or []),
        "value": value if value is None or math.isfinite(value) else None,
        "severity": severity,
        "edgeIds": edge_ids,
    }


class SeriesLookup:
    """``TryGetSeries``: a semantics reference (trimmed) resolved in the evaluated series."""

    def __init__(self, series: Mapping[str, FloatArray]) -> None:
        self.series = series

    def get(self, ref: Any) -> FloatArray | None:
        if not isinstance(ref, str) or not ref.strip():
            return None
        return self.series.get(ref.strip())


def text(mapping: Mapping[str, Any], key: str) -> str:
    """A string field, ``""`` when absent or not a string."""
    value = mapping.get(key)
    return value.strip() if isinstance(value, str) else ""
