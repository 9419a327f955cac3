"""The queue kernel: dispatch gating and the backlog recurrence, in FlowTime's two modes (§9.4).

Every queue in flowdrop runs through here — the vectorised series path, the bin-by-bin path of a
SHIFT feedback slice, the per-class decomposition and the invariant check — so the recurrence is
written once.

The two modes differ where C# differs: in *series* mode a non-finite dispatch capacity lets the
outflow pass; in *bin* mode (feedback slices) it counts as 0. The reference calls this "a minor
divergence"; it is C#'s behaviour and both modes keep it. ``wipLimit`` is flowdrop's own (C#
cannot read it from YAML) and behaves the same in both modes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from flowdrop.core.numerics import FloatArray, minimum, safe

BoolArray = npt.NDArray[np.bool_]


def dispatch_mask(bins: int, period: int, phase: int) -> BoolArray:
    """True on dispatch bins: ``t >= phase'`` and ``(t - phase') % period == 0``."""
    phase = ((phase % period) + period) % period
    t = np.arange(bins)
    mask: BoolArray = (t >= phase) & ((t - phase) % period == 0)
    return mask


def gate_series(outflow: FloatArray, mask: BoolArray, capacity: FloatArray | None) -> FloatArray:
    """Series mode: ``O'`` is 0 off dispatch bins, else ``min(O, C)`` where C is finite, else O."""
    released = outflow
    if capacity is not None:
        released = np.where(np.isfinite(capacity), minimum(outflow, capacity), outflow)
    gated: FloatArray = np.where(mask, released, 0.0)
    return gated


def gate_bin(outflow: float, dispatch: bool, capacity: float | None) -> float:
    """Bin mode: ``O'[t]`` is 0 off dispatch bins, else ``min(O, C)`` with non-finite C as 0."""
    if not dispatch:
        return 0.0
    if capacity is None:
        return outflow
    return min(outflow, capacity if math.isfinite(capacity) else 0.0)


def normalise_limit(limit: float) -> float:
    """A WIP limit value as the queue applies it: ``max(0, v)`` for finite v, else 0."""
    return max(limit, 0.0) if math.isfinite(limit) else 0.0


@dataclass
class QueueState:
    """The depth of one queue between bins; :meth:`step` advances it by one bin."""

    depth: float

    def step(self, inflow: float, outflow: float, loss: float, limit: float | None = None) -> float:
        """Advance one bin; return the WIP overflow of this bin (0 without a limit).

        ``Q = max(0, Q + safe(I) - safe(O') - safe(L))``, summed left to right as C# does, then
        capped at the (already normalised) limit.
        """
        depth = self.depth + _finite(inflow) - _finite(outflow) - _finite(loss)
        if not depth > 0.0:
            depth = 0.0
        overflow = 0.0
        if limit is not None and depth > limit:
            overflow = depth - limit
            depth = limit
        self.depth = depth
        return overflow


def run_queue(
    initial: float,
    inflow: FloatArray,
    outflow: FloatArray,
    loss: FloatArray | None = None,
    limit: float | FloatArray | None = None,
) -> tuple[FloatArray, FloatArray]:
    """The whole recurrence over a series (``outflow`` already gated); returns (depth, overflow)."""
    bins = len(inflow)
    ins = safe(inflow).tolist()
    outs = safe(outflow).tolist()
    losses = safe(loss).tolist() if loss is not None else [0.0] * bins
    limits: list[float] | list[None] = [None] * bins
    if limit is not None:
        raw = np.broadcast_to(np.asarray(limit, dtype=np.float64), (bins,))
        limits = np.where(np.isfinite(raw), np.maximum(raw, 0.0), 0.0).tolist()
    # QueueState.step inlined: the inputs are already finite (safe), so the recurrence is the
    # same arithmetic in the same order without a method call and three checks per bin.
    q = initial
    depth, overflow = [0.0] * bins, [0.0] * bins
    if limit is None:
        for t in range(bins):
            q = q + ins[t] - outs[t] - losses[t]
            if not q > 0.0:
                q = 0.0
            depth[t] = q
    else:
        for t in range(bins):
            q = q + ins[t] - outs[t] - losses[t]
            if not q > 0.0:
                q = 0.0
            cap = limits[t]
            if cap is not None and q > cap:
                overflow[t] = q - cap
                q = cap
            depth[t] = q
    return np.asarray(depth, dtype=np.float64), np.asarray(overflow, dtype=np.float64)


def _finite(value: float) -> float:
    return value if math.isfinite(value) else 0.0
