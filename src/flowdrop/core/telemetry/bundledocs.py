"""A bundle's JSON documents (``manifest.json``, ``bundle.json``) parsed once per file identity.

A fresh replay reads ``manifest.json`` twice (its capture warnings for the result, then the
validation) and ``bundle.json`` once, each behind a realpath of every path component. Here a
file that ``lstat`` shows to be a regular file directly under the resolved bundle directory
needs no further resolution (anything else gets the sandbox's :func:`resolve_inside`), and a
parsed document is remembered under the file's identity (path, device, inode, size, mtime,
ctime, as :mod:`.trust`), so an edited or replaced file is parsed again. Documents are shared:
callers only read them. Bounded; per process.
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Any

from flowdrop.core.fs.sandbox import resolve_inside
from flowdrop.core.memo import Memo

MAX_ENTRIES = 256
MAX_BYTES = 1024 * 1024  # larger documents are parsed every time

_Identity = tuple[str, str, int, int, int, int, int]
_memo: Memo[_Identity, Any] = Memo(MAX_ENTRIES)


def bundle_file(
    bundle_dir: Path, name: str, *, field: str, real_root: Path | None = None
) -> tuple[Path, os.stat_result | None]:
    """``bundle_dir/name`` checked to stay inside the bundle (``path_violation`` otherwise), and
    its ``stat`` when it is a regular file (``None``: missing or not a file, as ``is_file``).

    ``name`` is a checked bare file name; ``real_root`` is ``realpath(bundle_dir)`` when the
    caller has it. A regular file (``lstat``: not a symlink) directly under the resolved root is
    inside it, which is resolve_inside's verdict without a realpath of every component.
    """
    path = (real_root or Path(os.path.realpath(bundle_dir))) / name
    try:
        info: os.stat_result | None = os.lstat(path)
    except OSError:
        info = None
    if info is not None and stat.S_ISREG(info.st_mode):
        return path, info
    path = resolve_inside(bundle_dir, name, field=field)
    try:
        info = os.stat(path)
    except OSError:
        return path, None
    return path, info if stat.S_ISREG(info.st_mode) else None


def load_json(path: Path, info: os.stat_result, encoding: str) -> Any:
    """``json.loads(path.read_text(encoding))`` of the file ``info`` describes; shared, read-only.

    Raises what reading and parsing raise (``OSError``, ``ValueError``); errors are not kept.
    """
    key = (str(path), encoding, *_identity(info))
    found = _memo.get(key)
    if found is not None:
        return found
    with open(path, "rb") as handle:
        data = handle.read()
        after = os.fstat(handle.fileno())
    try:
        # read_text's newline translation, so a parsed value is what it would have been.
        value = json.loads(data.decode(encoding).replace("\r\n", "\n").replace("\r", "\n"))
    except ValueError:
        # A bad document: read_text's own exception (its message is the caller's).
        return json.loads(path.read_text(encoding=encoding))
    if _identity(after) == key[2:] and len(data) <= MAX_BYTES:
        _memo.put(key, value)
    return value


def _identity(info: os.stat_result) -> tuple[int, int, int, int, int]:
    return (info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns, info.st_ctime_ns)


def forget_all() -> None:
    """Parse everything again (tests)."""
    _memo.clear()
