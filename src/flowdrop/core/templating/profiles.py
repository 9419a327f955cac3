"""Time-of-day profiles for ``pmf`` nodes: builtin libraries and inline weights (§1.8.2)."""

from __future__ import annotations

import math
from collections.abc import Sequence

from flowdrop.core.errors import ErrorCode, FlowdropError

BUILTIN_HOURLY: dict[str, tuple[float, ...]] = {
    "weekday-office": (
        0.18, 0.16, 0.15, 0.15, 0.2, 0.3, 0.45, 0.7, 0.95, 1.15, 1.25, 1.3,
        1.25, 1.15, 1.05, 1.0, 0.95, 0.85, 0.65, 0.5, 0.38, 0.3, 0.25, 0.2,
    ),
    "three-shift": (
        0.9, 0.9, 0.9, 0.92, 0.95, 0.98, 1.0, 1.03, 1.06, 1.1, 1.12, 1.15,
        1.12, 1.08, 1.05, 1.02, 1.0, 0.98, 0.96, 0.94, 0.92, 0.9, 0.9, 0.9,
    ),
    "hub-rush-hour": (
        0.2, 0.18, 0.17, 0.17, 0.2, 0.35, 0.7, 1.2, 1.4, 1.25, 1.0, 0.85,
        0.8, 0.85, 0.95, 1.1, 1.35, 1.5, 1.35, 1.0, 0.65, 0.4, 0.3, 0.22,
    ),
}  # fmt: skip

_SLOTS = 288  # 24 hours of 5-minute slots


def _invalid(message: str, **details: object) -> FlowdropError:
    return FlowdropError(ErrorCode.TEMPLATE_INVALID, message, **details)


def normalize(weights: Sequence[float]) -> list[float]:
    """Scale weights to mean 1 (sequential sum, as upstream)."""
    total = 0.0
    for weight in weights:
        total += weight
    average = total / len(weights) if weights else 0.0
    if not average > 0:
        raise _invalid("Profile weights must have a positive average.")
    scale = 1.0 / average
    return [w * scale for w in weights]


def builtin_slots(name: str) -> list[float]:
    """The 288-slot, mean-1 vector of a builtin profile."""
    hourly = BUILTIN_HOURLY.get(name)
    if hourly is None:
        raise _invalid(f"Unknown builtin profile '{name}'.", value=name)
    return normalize([w for w in hourly for _ in range(12)])


def resample(source: Sequence[float], bins: int) -> list[float]:
    """Linear resampling of a 288-slot vector to ``bins`` points, then re-normalised."""
    if bins == len(source):
        return normalize(list(source))
    last = len(source) - 1
    out: list[float] = []
    for i in range(bins):
        pos = (i / bins) * last
        lo = math.floor(pos)
        hi = min(lo + 1, last)
        out.append(source[lo] + (source[hi] - source[lo]) * (pos - lo))
    return normalize(out)


def resolve_profile(
    kind: str | None, name: str | None, weights: Sequence[float] | None, bins: int
) -> list[float]:
    """Resolve a pmf node's ``profile`` block to ``bins`` mean-1 weights."""
    kind_text = (kind or "builtin").strip().lower()
    if kind_text == "builtin":
        return resample(builtin_slots((name or "").strip()), bins)
    if kind_text == "inline":
        values = list(weights or [])
        if len(values) != bins:
            raise _invalid(
                f"Inline profile weights must contain exactly {bins} values to match grid.bins.",
                value=len(values),
            )
        if any(not math.isfinite(w) or w < 0 for w in values):
            raise _invalid("Inline profile weights must be non-negative.")
        return normalize(values)
    raise _invalid(
        f"Profile kind '{kind}' is not supported. Use 'builtin' or 'inline'.", value=kind
    )
