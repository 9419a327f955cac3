"""A series' canonical CSV (``bin_index,value``) and its hash, rendered once per distinct array.

The bytes of a series CSV are a function of the array's float64 bits alone (its length is the
number of rows), so they are remembered under those bits: a fresh replay of an unchanged bundle
renders the same few dozen series request after request, and so do repeated simulations. The
memo is content-addressed (no file or model identity involved, nothing to invalidate), bounded
by entries and by bytes, and per process.
"""

from __future__ import annotations

import functools

import numpy as np

from flowdrop.core.hashing import sha256_bytes
from flowdrop.core.memo import Memo
from flowdrop.core.numerics import FloatArray, format_shortest

BOM = b"\xef\xbb\xbf"
MAX_ENTRIES = 4096
MAX_BYTES = 16 * 1024 * 1024

_memo: Memo[bytes, tuple[bytes, str]] = Memo(MAX_ENTRIES, MAX_BYTES)


def csv_bytes(values: FloatArray) -> bytes:
    """``bin_index,value`` CSV, UTF-8 with BOM, LF line endings."""
    # A run's series hold few distinct values (about 1 in 12 here): each distinct bit pattern
    # (so -0.0 apart from 0.0) is formatted once and the rows are filled by one % operation.
    bits = np.ascontiguousarray(values, dtype=np.float64).view(np.int64)
    distinct, inverse = np.unique(bits, return_inverse=True)
    texts = np.array(list(map(format_shortest, distinct.view(np.float64).tolist())), dtype=object)
    cells = tuple(texts[inverse.reshape(-1)].tolist())
    return BOM + ("bin_index,value\n" + _rows_template(len(cells)) % cells).encode("utf-8")


@functools.lru_cache(maxsize=8)
def _rows_template(points: int) -> str:
    return "".join([f"{t},%s\n" for t in range(points)])


def rendered(values: FloatArray) -> tuple[bytes, str]:
    """``csv_bytes(values)`` and its ``sha256:`` digest, from the memo when seen before."""
    key = np.ascontiguousarray(values, dtype=np.float64).tobytes()
    found = _memo.get(key)
    if found is not None:
        return found
    data = csv_bytes(values)
    made = (data, sha256_bytes(data))
    _memo.put(key, made, len(key) + len(data))
    return made


def forget_all() -> None:
    """Render everything again (tests)."""
    _memo.clear()
