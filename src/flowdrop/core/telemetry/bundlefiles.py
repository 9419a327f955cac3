"""Bundle files read once per verified identity: the bytes and values a replay takes from them.

A fresh replay reads every bundle CSV twice (its values for the plan, its bytes for the copy
under ``model/telemetry/``), request after request, though :func:`.bundle.validate_bundle` has
just found each file's identity unchanged (:mod:`.trust`). Both are remembered under that trust
fact (path, device, inode, size, mtime, ctime + manifest hash, points, grid bins), so a file that
moved in any of these is read again. Bytes are remembered only when the file still has the fact's
identity after the read (ctime moves on every write), so what is kept is what was verified.
Bounded by entries and by bytes; per process. Values are read-only arrays, shared.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from flowdrop.core.engine.runreader import series_from_bytes, unreadable
from flowdrop.core.memo import Memo
from flowdrop.core.numerics import FloatArray
from flowdrop.core.telemetry.trust import Fact, same_file

MAX_ENTRIES = 1024
MAX_BYTES = 32 * 1024 * 1024


@dataclass
class _Contents:
    data: bytes
    values: FloatArray | None = None


_memo: Memo[Fact, _Contents] = Memo(MAX_ENTRIES, MAX_BYTES)


def read_bytes(known: Fact) -> bytes:
    """The bytes of the file ``known`` was verified for (its first item is the file's path);
    raises ``OSError`` as reading does."""
    return _contents(known).data


def read_values(known: Fact, points: int) -> FloatArray:
    """The values of the series CSV ``known`` was verified for: a shared read-only array.

    Errors are :func:`flowdrop.core.engine.runreader.read_series_csv`'s.
    """
    name = os.path.basename(known[0])
    try:
        contents = _contents(known)
    except OSError as exc:
        raise unreadable(name, exc) from None
    if contents.values is None:
        values = series_from_bytes(contents.data, name, points)
        values.flags.writeable = False
        contents.values = values  # the same for every reader: parsed from the same bytes
    return contents.values


def _contents(known: Fact) -> _Contents:
    found = _memo.get(known)
    if found is not None:
        return found
    # The path the fact was taken on (not rebuilt by the caller: a hit needs no path at all).
    with open(known[0], "rb") as handle:
        data = handle.read()
        after = os.fstat(handle.fileno())
    contents = _Contents(data)
    if same_file(known, after):
        _memo.put(known, contents, len(data))
    return contents


def forget_all() -> None:
    """Read everything again (tests)."""
    _memo.clear()
