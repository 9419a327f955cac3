"""The per-captureKey lock excludes threads and processes."""

from __future__ import annotations

import contextlib
import multiprocessing
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from flowdrop.core.errors import ErrorCode, FlowdropError
from flowdrop.core.fs.locking import capture_lock, lock_path


def _hold_and_record(root: str, key: str, log: str, hold: float) -> None:
    with capture_lock(Path(root), key):
        with open(log, "a") as handle:
            handle.write(f"in {time.monotonic()}\n")
        time.sleep(hold)
        with open(log, "a") as handle:
            handle.write(f"out {time.monotonic()}\n")


def _assert_never_overlapped(log: Path, holders: int) -> None:
    events = log.read_text().split()
    kinds = events[0::2]
    assert kinds == ["in", "out"] * holders


def test_lock_file_lives_under_telemetry_root(tmp_path: Path) -> None:
    """The lock file is ``TelemetryRoot/.locks/<key>.lock``, created on first use, kept after."""
    with capture_lock(tmp_path, "warehouse-picker") as waited:
        assert waited >= 0
    assert lock_path(tmp_path, "warehouse-picker") == tmp_path / ".locks" / "warehouse-picker.lock"
    assert (tmp_path / ".locks" / "warehouse-picker.lock").is_file()


def test_lock_rejects_bad_key_before_creating_anything(tmp_path: Path) -> None:
    """A traversal key is refused and no ``.locks`` directory appears."""
    with pytest.raises(FlowdropError) as info, capture_lock(tmp_path, "../x"):
        pass
    assert info.value.code is ErrorCode.PATH_VIOLATION
    assert list(tmp_path.iterdir()) == []


def test_threads_are_mutually_excluded(tmp_path: Path) -> None:
    """Threads of one process never hold the same key's lock at once."""
    log = tmp_path / "log"
    threads = [
        threading.Thread(target=_hold_and_record, args=(str(tmp_path), "k", str(log), 0.02))
        for _ in range(6)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    _assert_never_overlapped(log, 6)


def test_processes_are_mutually_excluded(tmp_path: Path) -> None:
    """Separate processes (spawned, fresh interpreters) never hold the lock at once."""
    log = tmp_path / "log"
    ctx = multiprocessing.get_context("spawn")
    procs = [
        ctx.Process(target=_hold_and_record, args=(str(tmp_path), "k", str(log), 0.05))
        for _ in range(4)
    ]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(30)
        assert proc.exitcode == 0
    _assert_never_overlapped(log, 4)


def test_different_keys_do_not_block(tmp_path: Path) -> None:
    """Two keys are independent."""
    with capture_lock(tmp_path, "a"), capture_lock(tmp_path, "b", timeout=0.5):
        pass


@contextlib.contextmanager
def _held_by_a_thread(root: Path, key: str) -> Iterator[threading.Event]:
    """``key``'s capture lock held by another thread until the yielded event is set."""
    held, release = threading.Event(), threading.Event()

    def holder() -> None:
        with capture_lock(root, key):
            held.set()
            release.wait(5)

    thread = threading.Thread(target=holder)
    thread.start()
    held.wait(5)
    try:
        yield release
    finally:
        release.set()
        thread.join()


def test_timeout_is_storage_error(tmp_path: Path) -> None:
    """Waiting longer than the timeout gives ``storage_error``; the holder is unaffected."""
    with _held_by_a_thread(tmp_path, "k"):
        with pytest.raises(FlowdropError) as info, capture_lock(tmp_path, "k", timeout=0.1):
            pass
        assert info.value.code is ErrorCode.STORAGE_ERROR
        assert info.value.message == "Timed out after 0.1 s waiting for the capture lock of 'k'."


def test_one_flock_helper_tries_once_waits_or_gives_up(tmp_path: Path) -> None:
    from flowdrop.core.fs.locking import acquire_flock, release_flock, try_flock

    path = tmp_path / "x.lock"
    held = acquire_flock(path, timeout=None)
    assert held is not None
    assert acquire_flock(path, timeout=0) is None  # another open file description: excluded
    assert acquire_flock(path, timeout=0.05) is None
    with try_flock(path) as free:
        assert free is False
    release_flock(held)
    with try_flock(path) as free:
        assert free is True
