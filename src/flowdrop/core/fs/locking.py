"""Per-capture-key mutual exclusion across threads, processes and hosts.

``capture_lock(telemetry_root, key)`` holds two locks, always in this order:

1. an in-process :class:`threading.Lock` per lock file, because ``flock`` locks belong to an
   *open file description*: two threads of one process that each open the file get two
   descriptions and would exclude each other, but a thread re-using a shared descriptor would
   not, and POSIX ``fcntl`` locks would not exclude threads of one process at all;
2. ``flock(LOCK_EX)`` on a freshly opened descriptor of ``TelemetryRoot/.locks/<key>.lock``,
   which excludes other processes on this host and, on Linux NFS clients (where ``flock`` is
   emulated with byte-range locks, kernel >= 2.6.12), other hosts sharing the roots.

The lock file is never deleted (deleting it would let a waiter lock an unlinked inode while a
newcomer locks a fresh one). A dead holder's lock is released by the kernel with its descriptor.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from flowdrop.core.errors import ErrorCode, FlowdropError
from flowdrop.core.fs.sandbox import check_id, resolve_inside

LOCKS_DIR = ".locks"

_registry_guard = threading.Lock()
_thread_locks: dict[str, threading.Lock] = {}


def _thread_lock(path: Path) -> threading.Lock:
    key = os.path.realpath(path)
    with _registry_guard:
        lock = _thread_locks.get(key)
        if lock is None:
            lock = _thread_locks[key] = threading.Lock()
        return lock


def lock_path(telemetry_root: Path, capture_key: str) -> Path:
    """Where the lock file of ``capture_key`` lives (validated, inside the root)."""
    check_id(capture_key, "captureKey")
    return resolve_inside(telemetry_root, LOCKS_DIR, f"{capture_key}.lock", field="captureKey")


def acquire_flock(path: Path, *, timeout: float | None, shared: bool = False) -> int | None:
    """Open ``path`` (created if missing, never followed) and ``flock(LOCK_EX)`` it.

    ``timeout`` None waits as long as the holder works, 0 tries once, otherwise retries with
    back-off for that many seconds. Returns the held descriptor (release it with
    :func:`release_flock`), or None when the lock stayed busy. I/O errors raise ``OSError``.
    This is the one flock helper of the project: capture locks, request locks and instance
    locks all go through it. ``shared`` takes ``LOCK_SH`` instead (many holders, no ``LOCK_EX``).
    """
    mode = fcntl.LOCK_SH if shared else fcntl.LOCK_EX
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o644)
    try:
        if timeout is None:
            fcntl.flock(fd, mode)
            return fd
        started, delay = time.monotonic(), 0.005
        while True:
            try:
                fcntl.flock(fd, mode | fcntl.LOCK_NB)
                return fd
            except BlockingIOError:
                if time.monotonic() - started >= timeout:
                    os.close(fd)
                    return None
                time.sleep(min(delay, max(0.0, timeout - (time.monotonic() - started))))
                delay = min(delay * 2, 0.2)
    except BaseException:
        with contextlib.suppress(OSError):
            os.close(fd)
        raise


def release_flock(fd: int) -> None:
    with contextlib.suppress(OSError):
        fcntl.flock(fd, fcntl.LOCK_UN)
    with contextlib.suppress(OSError):
        os.close(fd)


@contextlib.contextmanager
def try_flock(path: Path) -> Iterator[bool]:
    """Hold the lock on ``path`` if it is free right now; yields whether it is held."""
    fd = acquire_flock(path, timeout=0)
    try:
        yield fd is not None
    finally:
        if fd is not None:
            release_flock(fd)


@contextlib.contextmanager
def capture_lock(
    telemetry_root: Path, capture_key: str, *, timeout: float | None = None
) -> Iterator[float]:
    """Hold the capture lock of ``capture_key``; yields the seconds spent waiting.

    ``timeout`` (seconds) bounds the wait; ``None`` waits for as long as the holder works.
    A timeout or an I/O error is ``storage_error``.
    """
    path = lock_path(telemetry_root, capture_key)
    started = time.monotonic()
    local = _thread_lock(path)
    if not local.acquire(timeout=-1 if timeout is None else timeout):
        raise _timeout(capture_key, timeout)
    try:
        try:
            path.parent.mkdir(exist_ok=True)
            remaining = (
                None if timeout is None else max(0.0, timeout - (time.monotonic() - started))
            )
            fd = acquire_flock(path, timeout=remaining)
        except OSError as exc:
            msg = f"Could not take the capture lock for '{capture_key}': {exc.strerror or exc}."
            raise FlowdropError(
                ErrorCode.STORAGE_ERROR, msg, captureKey=capture_key, errno=exc.errno
            ) from exc
        if fd is None:
            raise _timeout(capture_key, timeout)
        try:
            yield time.monotonic() - started
        finally:
            release_flock(fd)
    finally:
        local.release()


def _timeout(capture_key: str, timeout: float | None) -> FlowdropError:
    msg = f"Timed out after {timeout} s waiting for the capture lock of '{capture_key}'."
    return FlowdropError(ErrorCode.STORAGE_ERROR, msg, captureKey=capture_key, timeout=timeout)
