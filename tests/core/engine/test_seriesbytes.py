"""Series CSVs rendered once per distinct array (issue #9: replays re-rendered the same series)."""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterator

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from flowdrop.core.engine import seriesbytes
from flowdrop.core.memo import Memo


@pytest.fixture(autouse=True)
def _fresh() -> Iterator[None]:
    seriesbytes.forget_all()
    yield
    seriesbytes.forget_all()


@given(st.lists(st.floats(allow_nan=True, allow_infinity=True), max_size=30))
def test_rendered_is_csv_bytes_and_its_hash(values: list[float]) -> None:
    array = np.asarray(values, dtype=np.float64)
    for _ in range(2):  # a miss, then a hit
        data, digest = seriesbytes.rendered(array)
        assert data == seriesbytes.csv_bytes(array)
        assert digest == "sha256:" + hashlib.sha256(data).hexdigest()


def test_equal_values_with_other_bits_are_told_apart() -> None:
    """0.0 == -0.0, but their CSVs differ: the memo's key is the bits, not the values."""
    plus, _ = seriesbytes.rendered(np.zeros(3))
    minus, _ = seriesbytes.rendered(np.array([0.0, -0.0, 0.0]))
    assert plus != minus and b"-0" in minus
    assert seriesbytes.rendered(np.array([math.nan]))[0].endswith(b"0,NaN\n")


def test_a_repeated_array_is_formatted_once(monkeypatch: pytest.MonkeyPatch) -> None:
    made: list[int] = []
    real = seriesbytes.csv_bytes
    monkeypatch.setattr(seriesbytes, "csv_bytes", lambda v: (made.append(len(v)), real(v))[1])
    for _ in range(3):
        seriesbytes.rendered(np.arange(4.0))
        seriesbytes.rendered(np.ones(4))
    assert made == [4, 4]


@pytest.mark.parametrize(("entries", "size"), [(2, 10**6), (10, 2 * (4 * 8 + 35))])
def test_the_memo_is_bounded_by_entries_and_bytes(
    monkeypatch: pytest.MonkeyPatch, entries: int, size: int
) -> None:
    """Two of three arrays fit: the least recently used one is rendered again."""
    monkeypatch.setattr(seriesbytes, "_memo", Memo(entries, size))
    made: list[float] = []
    real = seriesbytes.csv_bytes
    monkeypatch.setattr(seriesbytes, "csv_bytes", lambda v: (made.append(v[0]), real(v))[1])
    arrays = [np.full(4, float(i)) for i in range(3)]
    for array in [*arrays, arrays[1], arrays[2], arrays[0]]:
        seriesbytes.rendered(array)
    assert made == [0.0, 1.0, 2.0, 0.0]
