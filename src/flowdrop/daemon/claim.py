"""Claiming inbox files by rename, and recovering the claimed work of dead instances.

A claim is ``rename(inbox/<name>, work/<instance>/<name>)``: atomic on one filesystem, so when
several instances (or hosts over a shared filesystem) race for a file exactly one wins and the
others get ``ENOENT``. Before claiming a regular file we look at it without following links:

- names starting with ``.`` or ending in ``.tmp`` are never looked at (writers' temp names);
- a file larger than ``max_request_bytes`` is claimed (and then rejected) without being parsed;
- a *young* file (modified less than ``stale_after`` ago) whose bytes are not yet valid JSON is
  left alone and retried: it is probably still being written in place. Once it is older than
  ``stale_after`` it is claimed and rejected as ``invalid_json``;
- symlinks, FIFOs, directories and other non-regular files are claimed (the rename moves the
  link, never its target) and then quarantined;
- a claimed request's bytes are synced by the handler together with the first status that
  acknowledges them (the client may not have synced them: ``cp`` + ``mv``), not here.

Liveness: every instance holds ``flock`` on ``state/instances/<instance>.lock`` while it runs.
A ``work/<name>/`` directory whose lock can be taken belongs to a dead instance; its files are
renamed into the live instance's own work directory (again one winner per file) and resumed.
"""

from __future__ import annotations

import contextlib
import enum
import errno
import os
import stat
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import structlog

from flowdrop.core.contract import parse_request
from flowdrop.core.errors import ErrorCode, FlowdropError
from flowdrop.core.fs.failpoints import failpoint
from flowdrop.core.fs.locking import try_flock
from flowdrop.core.fs.storage import fsync_dir, sweep_stale_temps
from flowdrop.daemon.config import Settings
from flowdrop.daemon.spool import Spool, is_request_name

log = structlog.get_logger("flowdrop.daemon")


class Decision(enum.Enum):
    CLAIMED = "claimed"
    DEFERRED = "deferred"  # young and incomplete: look again later
    GONE = "gone"  # vanished or claimed by someone else
    IGNORED = "ignored"  # not a request name


@dataclass(frozen=True)
class ClaimOutcome:
    decision: Decision
    path: Path | None = None  # the claimed file in work/<instance>/


def read_limited(path: Path, limit: int) -> bytes:
    """Read at most ``limit`` bytes of a regular file, never following a symlink."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(errno.EINVAL, "not a regular file")
        chunks: list[bytes] = []
        remaining = limit
        while remaining > 0:
            chunk = os.read(fd, min(remaining, 1 << 20))
            if not chunk:
                break
            chunks.append(chunk)
            remaining -= len(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


def _incomplete(path: Path, max_bytes: int) -> bool:
    """True when the bytes do not (yet) form a JSON document."""
    try:
        raw = read_limited(path, max_bytes + 1)
    except OSError:
        return False  # let the worker classify it
    if not raw.strip():
        return True
    try:
        parse_request(raw)
    except FlowdropError as exc:
        return exc.code is ErrorCode.INVALID_JSON
    return False


def claim(
    spool: Spool,
    name: str,
    *,
    max_bytes: int,
    stale_after: float,
    wall_clock: Callable[[], float] = time.time,
) -> ClaimOutcome:
    """Inspect ``inbox/<name>`` and claim it into ``work/<instance>/`` unless it must wait."""
    if not is_request_name(name) or "/" in name:
        return ClaimOutcome(Decision.IGNORED)
    source = spool.inbox / name
    try:
        info = os.lstat(source)
    except FileNotFoundError:
        return ClaimOutcome(Decision.GONE)
    # An mtime more than stale_after in the future is a wrong clock, not a writer at work:
    # waiting for the wall clock to pass it could take forever (Postfix's future-mtime guard).
    age = wall_clock() - info.st_mtime
    young = stat.S_ISREG(info.st_mode) and -stale_after < age < stale_after
    # A second link is usually a writer publishing by link() that has not yet unlinked its
    # temporary name; bytes that are not JSON yet are still being written.
    if young and (
        info.st_nlink > 1 or (info.st_size <= max_bytes and _incomplete(source, max_bytes))
    ):
        return ClaimOutcome(Decision.DEFERRED)
    target = spool.work / name
    try:
        os.rename(source, target)
    except FileNotFoundError:
        if not os.path.lexists(source):
            return ClaimOutcome(Decision.GONE)
        # Our work dir vanished (removed by hand, or recovered while we were not yet locked).
        spool.work.mkdir(parents=True, exist_ok=True)
        try:
            os.rename(source, target)
        except FileNotFoundError:
            return ClaimOutcome(Decision.GONE)
    # The rename itself is not fsynced: a power cut that undoes it puts the file back in the
    # inbox, and the next start claims it again; the ledger and the result decide whether it
    # resumes, ends as a duplicate or runs.
    failpoint("after_claim")
    return ClaimOutcome(Decision.CLAIMED, target)


def recover_dead_instances(spool: Spool) -> list[Path]:
    """Move the claimed files of dead instances into our work dir; return what was moved."""
    moved: list[Path] = []
    try:
        others = sorted(p for p in spool.work_root.iterdir() if p.name != spool.instance)
    except FileNotFoundError:
        return moved
    for directory in others:
        if not directory.is_dir() or directory.is_symlink():
            continue
        lock = spool.instances / f"{directory.name}.lock"
        with try_flock(lock) as held:
            if not held:
                continue  # that instance is alive
            for entry in sorted(directory.iterdir()):
                target = spool.work / entry.name
                if os.path.lexists(target):
                    target = spool.work / f"{entry.stem}.recovered-{time.time_ns()}{entry.suffix}"
                with contextlib.suppress(FileNotFoundError):
                    os.rename(entry, target)
                    moved.append(target)
            if moved:
                fsync_dir(spool.work)
            # The lock file is never deleted: a waiter could lock the unlinked inode while a
            # newcomer locks a fresh one, and both would think they own the instance.
            with contextlib.suppress(OSError):
                directory.rmdir()
    return moved


def list_inbox(spool: Spool) -> list[str]:
    """Request names in the inbox, oldest first (by mtime; ties by name)."""
    entries: list[tuple[float, str]] = []
    try:
        with os.scandir(spool.inbox) as scan:
            for entry in scan:
                if not is_request_name(entry.name):
                    continue
                try:
                    mtime = entry.stat(follow_symlinks=False).st_mtime
                except FileNotFoundError:
                    continue
                entries.append((mtime, entry.name))
    except FileNotFoundError:
        return []
    return [name for _mtime, name in sorted(entries)]


def list_work(spool: Spool) -> list[str]:
    try:
        return sorted(p.name for p in spool.work.iterdir())
    except FileNotFoundError:
        return []


def sweep_debris(spool: Spool, settings: Settings) -> None:
    """Remove temporaries a crash (ours or a peer's) left in the outbox, spool and roots."""
    places = (
        spool.outbox,
        spool.quarantine,
        spool.done,
        spool.ledger,
        spool.state,
        settings.runs_root,
        settings.telemetry_root,
    )
    for place in places:
        removed = sweep_stale_temps(place, older_than=settings.temp_max_age)
        if removed:
            log.warning("temp_debris_removed", directory=place.name, names=removed)
