"""Reading a claimed request file: what it is, how big, whether it parses, which requestId.

Nothing here writes. A file that is not a plain, single-linked, small enough, valid request
comes back with the error that rejects it and the requestId to reject it under (the file's stem
when that is a valid id, so the submitter finds a result by the name they used).
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path

from flowdrop.core.contract import RunRequest, parse_request
from flowdrop.core.errors import ErrorCode, FlowdropError
from flowdrop.daemon.claim import read_limited
from flowdrop.daemon.ledger import content_hash
from flowdrop.daemon.spool import display_name, valid_request_id


@dataclass(frozen=True)
class Intake:
    """A parsed request (``request``, ``digest``) or the ``error`` that rejects the file."""

    request_id: str | None
    request: RunRequest | None = None
    digest: str = ""
    error: FlowdropError | None = None


def read_claimed(path: Path, limit: int) -> Intake | None:
    """Read ``path`` without following links; None when it is gone."""
    name = display_name(path.name)  # for messages: file names may hold undecodable bytes
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return None
    stem = path.name[: -len(".json")] if path.name.endswith(".json") else path.name
    guess = stem if valid_request_id(stem) else None
    if not stat.S_ISREG(info.st_mode):
        kind = _kind(info.st_mode)
        msg = f"'{name}' is a {kind}, not a regular file; it was not followed or read."
        error = FlowdropError(ErrorCode.PATH_VIOLATION, msg, fileName=name, kind=kind)
        return Intake(guess, error=error)
    if info.st_nlink > 1:
        # Another name for the same inode may live outside the spool (os.link needs no read
        # access to the target's directory): refuse it like a symlink, unread.
        msg = (
            f"'{name}' is a hard link ({info.st_nlink} links), not a file of its own; "
            "it was not read. Copy the request instead of linking it."
        )
        error = FlowdropError(
            ErrorCode.PATH_VIOLATION, msg, fileName=name, kind="hard link", links=info.st_nlink
        )
        return Intake(guess, error=error)
    if info.st_size > limit:
        return Intake(guess, error=_too_large(name, info.st_size, limit))
    try:
        raw = read_limited(path, limit + 1)
    except OSError as exc:
        msg = f"Could not read '{name}': {exc.strerror or exc}."
        return Intake(guess, error=FlowdropError(ErrorCode.PATH_VIOLATION, msg, fileName=name))
    if len(raw) > limit:
        return Intake(guess, error=_too_large(name, len(raw), limit))
    try:
        request = parse_request(raw)
    except FlowdropError as exc:
        return Intake(guess, error=exc)
    request_id = request.request_id or stem
    if not valid_request_id(request_id):
        msg = (
            f"The file name '{name}' is not a valid requestId and the request has no "
            "requestId field; add one ([A-Za-z0-9][A-Za-z0-9._-]{0,127})."
        )
        return Intake(None, error=FlowdropError(ErrorCode.INVALID_REQUEST, msg, fileName=name))
    return Intake(request_id, request, content_hash(raw))


def _too_large(name: str, size: int, limit: int) -> FlowdropError:
    msg = f"'{name}' is larger than max_request_bytes ({size} > {limit} bytes); it was not parsed."
    return FlowdropError(ErrorCode.REQUEST_TOO_LARGE, msg, size=size, limit=limit)


def _kind(mode: int) -> str:
    if stat.S_ISLNK(mode):
        return "symbolic link"
    if stat.S_ISDIR(mode):
        return "directory"
    if stat.S_ISFIFO(mode):
        return "FIFO"
    if stat.S_ISSOCK(mode):
        return "socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "device"
    return "special file"
