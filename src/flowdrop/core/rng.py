"""FlowTime's PCG32 generator and its (dormant) PMF sampler (§11.3-11.4).

FlowTime never consults an RNG when it evaluates a run - PMF nodes are their expected value and
the seed only feeds hashes and the manifest. This port exists so seeds recorded in runs and
bundles mean the same thing here as upstream, and to match the sampler should it ever be wired.
"""

from __future__ import annotations

from collections.abc import Sequence

_MASK64 = (1 << 64) - 1
_MULTIPLIER = 6364136223846793005
_INCREMENT = 1442695040888963407


class Pcg32:
    """PCG-XSH-RR 64/32 seeded like ``FlowTime.Core.Rng.Pcg32`` (one output discarded)."""

    def __init__(self, seed: int) -> None:
        self._state = seed & _MASK64  # sign-extended for negative seeds, as (ulong)seed
        self.next_u32()

    def next_u32(self) -> int:
        old = self._state
        self._state = (old * _MULTIPLIER + _INCREMENT) & _MASK64
        xorshifted = (((old >> 18) ^ old) >> 27) & 0xFFFFFFFF
        rotation = old >> 59
        return ((xorshifted >> rotation) | (xorshifted << ((-rotation) & 31))) & 0xFFFFFFFF

    def next_double(self) -> float:
        """Uniform in [0, 1): ``next_u32() / 2**32``."""
        return self.next_u32() / 4294967296.0


def sample_pmf(
    values: Sequence[float], probabilities: Sequence[float], bins: int, seed: int = 42
) -> list[float]:
    """``PmfCompiler`` sampling: per bin, the first value whose cumulative probability >= u."""
    total = 0.0
    for p in probabilities:
        total += p
    weights = (
        [p / total for p in probabilities] if abs(total - 1.0) > 0.001 else list(probabilities)
    )
    generator = Pcg32(seed)
    out: list[float] = []
    for _ in range(bins):
        u = generator.next_double()
        cumulative, chosen = 0.0, values[-1]
        for value, weight in zip(values, weights, strict=True):
            cumulative += weight
            if cumulative >= u:
                chosen = value
                break
        out.append(chosen)
    return out
