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
    same = np.shape(outflow) == np.shape(inflow) == (bins,)
    if limit is None and same and (loss is None or np.shape(loss) == (bins,)):
        return _unlimited(initial, safe(inflow), safe(outflow), loss), np.zeros(bins)
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


_RESTARTS = 8  # busy periods summed by numpy before a queue that keeps emptying goes bin by bin


def _unlimited(
    initial: float, ins: FloatArray, outs: FloatArray, loss: FloatArray | None
) -> FloatArray:
    """``q = max(0, q + I - O - L)`` bin by bin, in C#'s order, mostly by ``np.add.accumulate``.

    While the queue holds something, ``q`` is a running sum of ``q0, I0, -O0, -L0, I1, ...``:
    ``add.accumulate`` adds strictly left to right and ``a + (-b)`` is ``a - b`` bit for bit, so
    the sums are the recurrence's own. At the first bin that is not > 0 the depth is 0; it stays
    0 through the bins where ``I - O - L`` (from an empty queue) is not > 0, and the sum starts
    again at the next bin that fills it. After a few busy periods the rest runs as a loop.
    """
    bins = ins.shape[0]
    # Without loss the "- 0.0" is left out: x - 0.0 is x, and a -0.0 depth becomes 0 anyway.
    terms = [ins, -outs] if loss is None else [ins, -outs, -safe(loss)]
    width = len(terms)
    flat = np.stack(terms, axis=1).reshape(-1)
    rows = flat.reshape(bins, width)
    # From an empty queue: 0 + I is I exactly, the rest as the recurrence (a zero's sign aside).
    fills = np.add.accumulate(rows, axis=1)[:, -1] > 0.0 if bins else np.zeros(0, dtype=bool)
    depth = np.zeros(bins)
    q, start = float(initial), 0
    for _ in range(_RESTARTS):
        ends = np.add.accumulate(np.concatenate(([q], flat[width * start :])))[width::width]
        empty = np.flatnonzero(~(ends > 0.0))
        if empty.size == 0:
            depth[start:] = ends
            return depth
        stop = start + int(empty[0])
        depth[start:stop] = ends[: stop - start]
        later = np.flatnonzero(fills[stop + 1 :])
        if later.size == 0:
            return depth  # empty from ``stop`` to the end
        q, start = 0.0, stop + 1 + int(later[0])
    values = rows.tolist()
    for t in range(start, bins):
        for term in values[t]:
            q = q + term
        if not q > 0.0:
            q = 0.0
        depth[t] = q
    return depth


def _finite(value: float) -> float:
    return value if math.isfinite(value) else 0.0
