"""PCG32 and the dormant PMF sampler against the derived reference outputs (§11.3-11.4, §16.7)."""

from __future__ import annotations

import pytest

from flowdrop.core.rng import Pcg32, sample_pmf


@pytest.mark.parametrize(
    ("seed", "outputs"),
    [
        (0, [1613493245, 3894649422, 2055130073, 2315086854, 2925816488]),
        (1, [3114030964, 3308539156, 2446277621, 2609120922, 608551482]),
        (42, [1971522493, 242089394, 3457789919, 3637502659, 19596830]),
        (123, [3010882749, 1711133445, 708549532, 161668841, 445033148]),
        (12345, [1882538953, 1534987090, 1894995461, 2528358703, 4229620947]),
    ],
)
def test_pcg32_outputs(seed: int, outputs: list[int]) -> None:
    """First five outputs after the discarded one."""
    generator = Pcg32(seed)
    assert [generator.next_u32() for _ in range(5)] == outputs


def test_pcg32_doubles() -> None:
    """next_double = next_u32 / 2**32 (seed 42)."""
    generator = Pcg32(42)
    assert [generator.next_double() for _ in range(3)] == [
        0.4590308510232717,
        0.056365829426795244,
        0.8050794524606317,
    ]


def test_negative_seed_is_sign_extended() -> None:
    """(ulong)-1 is 2**64 - 1; the generator still yields 32-bit values."""
    assert 0 <= Pcg32(-1).next_u32() < 2**32


def test_pmf_sampler_reference() -> None:
    """[1,2,3]/[0.2,0.5,0.3], seed 42, 10 bins."""
    assert sample_pmf([1, 2, 3], [0.2, 0.5, 0.3], 10) == [2, 1, 3, 3, 1, 3, 2, 2, 2, 3]
