"""Bundle files verified once per identity: what was hashed and counted is not hashed again.

A replay validates its bundle first (hashes, header, rows). Hashing every CSV on every request is
the cost of a fresh replay, yet a file whose identity (device, inode, size, mtime, ctime) is
unchanged since it passed has the same bytes: ctime moves on every write and cannot be set back.
So a file is verified again only when its identity, its manifest hash or point count, or the
grid it is checked against change. The memo is per process and bounded.
"""

from __future__ import annotations

import os
from pathlib import Path

from flowdrop.core.memo import Memo

MAX_ENTRIES = 4096
Fact = tuple[str, int, int, int, int, int, str, int, int]

_verified: Memo[Fact, bool] = Memo(MAX_ENTRIES)


def fact(path: Path, digest: str, points: int, bins: int) -> Fact:
    """What a successful check of ``path`` against (``digest``, ``points``, ``bins``) rests on."""
    return fact_of(path, os.stat(path), digest, points, bins)


def fact_of(path: Path, info: os.stat_result, digest: str, points: int, bins: int) -> Fact:
    """:func:`fact` from a ``stat`` of ``path`` the caller already has."""
    return (
        str(path),
        info.st_dev,
        info.st_ino,
        info.st_size,
        info.st_mtime_ns,
        info.st_ctime_ns,
        digest,
        points,
        bins,
    )


def same_file(known: Fact, info: os.stat_result) -> bool:
    """Whether ``info`` (a later stat) shows the file identity ``known`` rests on."""
    identity = (info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns, info.st_ctime_ns)
    return known[1:6] == identity


def is_verified(known: Fact) -> bool:
    return _verified.get(known) is not None


def remember(known: Fact) -> None:
    _verified.put(known, True)


def forget_all() -> None:
    """Verify everything again (tests)."""
    _verified.clear()
